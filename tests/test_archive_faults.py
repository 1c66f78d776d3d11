"""profile_archive.py when its worker dies: the Ray worker (actor) holding the model is killed
(SIGKILL) mid-job; Ray Data starts another and runs the batch again, so the job ends with every
file profiled exactly once; the parts already written stay, and no Ray process is left."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from conftest import ROOT, ray_processes


def map_worker(jobs):
    """The pid of a Ray Data worker (actor) of the test's jobs, or None."""
    for pid in ray_processes(jobs.tmpdir, jobs.before):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::MapWorker"):
                    return pid
        except OSError:
            continue
    return None


def test_a_killed_worker_is_replaced_and_every_file_gets_one_row(tiny_run, tmp_path, ray_jobs):
    root, model = tiny_run
    clip = sorted((root / "demo" / "wav").glob("*.wav"))[0]
    audio, rate = sf.read(str(clip), dtype="float32", always_2d=True)
    (tmp_path / "in").mkdir()
    for k in range(3):  # 4 minutes each: seconds of work per file
        buf = io.BytesIO()
        sf.write(buf, np.tile(audio[:, 0], int(240 * rate / len(audio)) + 1), rate, format="WAV", subtype="PCM_16")
        (tmp_path / "in" / f"long{k}.wav").write_bytes(buf.getvalue())
    proc = subprocess.Popen([sys.executable, "profile_archive.py", str(model), "--input", str(tmp_path / "in"),
                             "--output", str(tmp_path / "out.parquet"), "--workers", "1", "--batch-files", "1",
                             "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=ray_jobs.env, text=True)
    try:
        worker = None
        for _ in range(240):
            worker = map_worker(ray_jobs)
            if worker or proc.poll() is not None:
                break
            time.sleep(0.25)
        assert worker, proc.stdout.read()[-2000:]
        time.sleep(3.0)  # the model loaded, a file at work
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    files = pq.read_table(str(tmp_path / "out.parquet")).to_pylist()
    assert sorted(os.path.basename(r["file"]) for r in files) == ["long0.wav", "long1.wav", "long2.wav"]
    assert all(r["error"] is None and r["gender_label"] in ("f", "m") for r in files)
    assert "died" in out or "retried" in out or "killed" in out, out[-3000:]  # Ray saw the worker go
    assert not ray_jobs.left()
