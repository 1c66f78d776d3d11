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

from conftest import ROOT, run_train

EPOCHS = "--number_of_epochs=3"


def last_checkpoint(out):
    """(meta, {file: state}) of the final end-of-epoch checkpoint of an output folder."""
    best = None
    for d in (out / "save").glob("CKPT+*"):
        meta = yaml.safe_load((d / "CKPT.yaml").read_text())
        if meta.get("end-of-epoch") and (best is None or meta["epoch"] > best[0]["epoch"]):
            best = (meta, d)
    meta, d = best
    return meta, {f: torch.load(d / f, map_location="cpu") for f in ("encoder.ckpt", "heads.ckpt")}


def killed_run(out, data, kill_at, *extra):
    """train.py on the tiny demo, killed with SIGKILL just before training step ``kill_at``."""
    args = [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={out}",
            f"--data_folder={data}", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3",
            "--noprogressbar", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROFILING_KILL_AT": kill_at}
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == -signal.SIGKILL, res.stdout[-2000:] + res.stderr[-2000:]
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("intra", [True, False], ids=["intra-epoch-ckpt", "end-of-epoch-ckpt"])
def test_resumed_run_equals_uninterrupted(tmp_path, intra):
    data = tmp_path / "demo"
    # checkpoints after every training step, or only at the end of each epoch
    extra = [EPOCHS] + (["--ckpt_interval_steps=1"] if intra else [])
    run_train(tmp_path / "twin", data, *extra)
    killed_run(tmp_path / "resumed", data, "2:3", *extra)  # kill -9 before step 3 of epoch 2
    metas = [yaml.safe_load(p.read_text()) for p in (tmp_path / "resumed" / "save").glob("CKPT+*/CKPT.yaml")]
    assert any(m.get("end-of-epoch") is False for m in metas) == intra
    log = run_train(tmp_path / "resumed", data, *extra)
    assert "stale lock" in log  # the killed run's lock was taken over
    twin, resumed = tmp_path / "twin", tmp_path / "resumed"
    assert json.loads((resumed / "results.json").read_text()) == json.loads((twin / "results.json").read_text())
    assert (resumed / "train_log.txt").read_text() == (twin / "train_log.txt").read_text()
    (meta_t, w_t), (meta_r, w_r) = last_checkpoint(twin), last_checkpoint(resumed)
    assert meta_t["epoch"] == meta_r["epoch"] == 3
    for f in w_t:
        assert w_t[f].keys() == w_r[f].keys()
        for k in w_t[f]:
            assert torch.equal(w_t[f][k], w_r[f][k]), f"{f}:{k} differs"
