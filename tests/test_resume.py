"""A run killed with SIGKILL (kill -9) in epoch 2 and started again with the same command
ends exactly like the uninterrupted run: same results, same training log, same weights."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, free_port, run_train

EPOCHS = "--number_of_epochs=3"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The uninterrupted run (checkpoints, saved or not, draw nothing: one twin for both)."""
    root = tmp_path_factory.mktemp("resume")
    run_train(root / "twin", root / "demo", EPOCHS)
    return root


def last_checkpoint(out):
    """(meta, {file: state}) of the final end-of-epoch checkpoint of an output folder."""
    best = None
    for d in (out / "save").glob("CKPT+*"):
        meta = yaml.safe_load((d / "CKPT.yaml").read_text())
        if meta.get("end-of-epoch") and (best is None or meta["epoch"] > best[0]["epoch"]):
            best = (meta, d)
    meta, d = best
    return meta, {f: torch.load(d / f, map_location="cpu") for f in ("encoder.ckpt", "heads.ckpt")}


def killed_run(out, data, kill_at, *extra, cmd=None):
    """train.py on the tiny demo, killed with SIGKILL just before training step ``kill_at``."""
    args = [*(cmd or [sys.executable, "train.py"]), "hparams/demo.yaml", f"--output_folder={out}",
            f"--data_folder={data}", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3",
            "--noprogressbar", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROFILING_KILL_AT": kill_at}
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    # torchrun reports its killed workers with an exit code of its own
    assert res.returncode == (-signal.SIGKILL if cmd is None else 1), res.stdout[-2000:] + res.stderr[-2000:]
    assert not (out / "results.json").exists()


def assert_same_run(twin, resumed):
    assert json.loads((resumed / "results.json").read_text()) == json.loads((twin / "results.json").read_text())
    assert (resumed / "train_log.txt").read_text() == (twin / "train_log.txt").read_text()
    (meta_t, w_t), (meta_r, w_r) = last_checkpoint(twin), last_checkpoint(resumed)
    assert meta_t["epoch"] == meta_r["epoch"] == 3
    for f in w_t:
        assert w_t[f].keys() == w_r[f].keys()
        for k in w_t[f]:
            assert torch.equal(w_t[f][k], w_r[f][k]), f"{f}:{k} differs"


@pytest.mark.parametrize("intra", [True, False], ids=["intra-epoch-ckpt", "end-of-epoch-ckpt"])
def test_resumed_run_equals_uninterrupted(twin, tmp_path, intra):
    data = twin / "demo"
    # checkpoints after every training step, or only at the end of each epoch
    extra = [EPOCHS] + (["--ckpt_interval_steps=1"] if intra else [])
    killed_run(tmp_path / "resumed", data, "2:3", *extra)  # kill -9 before step 3 of epoch 2
    metas = [yaml.safe_load(p.read_text()) for p in (tmp_path / "resumed" / "save").glob("CKPT+*/CKPT.yaml")]
    assert any(m.get("end-of-epoch") is False for m in metas) == intra
    log = run_train(tmp_path / "resumed", data, *extra)
    assert "stale lock" in log  # the killed run's lock was taken over
    assert_same_run(twin / "twin", tmp_path / "resumed")


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_torchrun_resumed_run_equals_uninterrupted(tmp_path):
    """Two processes: each rank's random state is saved and restored (its own dropout and crops)."""
    data, extra = tmp_path / "demo", [EPOCHS, "--ckpt_interval_steps=1", "--distributed_backend=gloo"]
    torchrun = lambda: [*TORCHRUN, f"--master_port={free_port()}", "train.py"]  # noqa: E731
    run_train(tmp_path / "twin", data, *extra, cmd=torchrun())
    killed_run(tmp_path / "resumed", data, "2:2", *extra, cmd=torchrun())  # both ranks, mid-epoch 2
    run_train(tmp_path / "resumed", data, *extra, cmd=torchrun())
    assert_same_run(tmp_path / "twin", tmp_path / "resumed")
