"""One output folder, one run: a live holder makes a second run refuse; the lock of a
dead process is taken over; torchrun ranks other than 0 do not take it."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from recipes.config.run_lock import LOCK_NAME, RunLock, RunLockError, lock_output_folder, process_start


@pytest.fixture
def live_holder():
    """A live process (not this one) that holds no lock itself: its pid is the holder's."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def write_lock(folder, pid, host=None, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "started": "earlier",
              "proc_start": process_start(pid), **extra}
    (folder / LOCK_NAME).write_text(json.dumps(holder))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_lock_refused_while_first_held(tmp_path):
    first = RunLock(tmp_path).acquire()
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunLockError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()  # free again


def test_live_holder_refused(tmp_path, live_holder):
    write_lock(tmp_path, live_holder)
    with pytest.raises(RunLockError) as err:
        RunLock(tmp_path).acquire()
    msg = str(err.value)
    assert f"pid {live_holder}" in msg and socket.gethostname() in msg
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == live_holder  # untouched


def test_other_host_refused(tmp_path):
    write_lock(tmp_path, dead_pid(), host="another-machine")  # cannot tell: refuse
    with pytest.raises(RunLockError, match="another-machine"):
        RunLock(tmp_path).acquire()


def test_stale_lock_taken_over(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, pid)
    with caplog.at_level(logging.WARNING, logger="recipes.config.run_lock"):
        lock = RunLock(tmp_path).acquire()
    assert "stale lock" in caplog.text and str(pid) in caplog.text
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_reused_pid_is_stale(tmp_path, live_holder):
    # the recorded holder started at another time than the process now using its pid
    write_lock(tmp_path, live_holder)
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    if holder["proc_start"] is None:
        pytest.skip("no /proc on this system")
    holder["proc_start"] -= 1
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder))
    RunLock(tmp_path).acquire().release()


def test_torchrun_ranks_share_the_lock(tmp_path, live_holder, monkeypatch):
    write_lock(tmp_path, live_holder)  # held by the run's rank 0
    monkeypatch.setenv("RANK", "1")
    assert lock_output_folder(tmp_path) is None  # rank 1 of the same run: no refusal
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RunLockError):
        lock_output_folder(tmp_path)


def test_train_refuses_a_folder_in_use(tmp_path, live_holder):
    out = tmp_path / "out"
    write_lock(out, live_holder)
    res = subprocess.run([sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={out}",
                          f"--data_folder={tmp_path / 'demo'}", "--noprogressbar"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode != 0
    assert f"pid {live_holder}" in res.stderr and "Traceback" not in res.stderr
    # refused before anything is written (loading the YAML only makes the empty save/)
    assert sorted(p.name for p in out.iterdir()) in (["run.lock"], ["run.lock", "save"])
    assert not (tmp_path / "demo").exists() and not any((out / "save").iterdir())
