"""Tiny end-to-end runs of train.py and infer.py on the demo corpus, as a user runs them."""

import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(tmp_path, *extra):
    cmd = [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={tmp_path}/out",
           f"--data_folder={tmp_path}/demo", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3",
           "--noprogressbar", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def epochs_logged(tmp_path):
    with open(tmp_path / "out" / "train_log.txt") as f:
        return [line.split(",")[0] for line in f if line.startswith("epoch:")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


def test_train_writes_results(run_dir):
    log = train(run_dir, "--number_of_epochs=1")
    assert "Results" in log and "| gender |" in log
    with open(run_dir / "out" / "results.json") as f:
        res = json.load(f)["test"]
    for task in ("gender", "age_sup", "age_sub"):
        for m in ("precision", "recall", "f1", "accuracy"):
            assert 0.0 <= res[task][m] <= 1.0
    assert 0.0 <= res["hierarchy_consistency"] <= 1.0
    assert (run_dir / "out" / "confusion_test.png").stat().st_size > 1000
    assert (run_dir / "out" / "results.md").exists()
    assert epochs_logged(run_dir) == ["epoch: 1"]


def test_resume_and_skip_bad_file(run_dir):
    # corrupt one training file after preparation: it must be skipped, not kill the run
    with open(run_dir / "out" / "manifests" / "train.csv") as f:
        victim = next(csv.DictReader(f))["wav"]
    with open(victim, "wb") as f:
        f.write(b"this is not audio")
    log = train(run_dir, "--number_of_epochs=2")
    assert "Loading a checkpoint" in log  # resumed after epoch 1
    assert epochs_logged(run_dir) == ["epoch: 1", "epoch: 2"]
    assert "skipping utterance" in log and os.path.basename(victim) in log
    # the same command again: nothing left to train, evaluation only
    train(run_dir, "--number_of_epochs=2")
    assert epochs_logged(run_dir) == ["epoch: 1", "epoch: 2"]


def test_infer_prints_labels(run_dir):
    wavs = sorted(os.listdir(run_dir / "demo" / "wav"))[:2]
    paths = [str(run_dir / "demo" / "wav" / w) for w in wavs]
    res = subprocess.run([sys.executable, "infer.py", str(run_dir / "out"), *paths],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert lines[0][0] == "file" and len(lines) == 3
    for row in lines[1:]:
        assert row[1] in ("f", "m") and row[3] in ("minor", "grown")
        assert row[5] in ("child", "teen", "adult", "senior")
        assert all(0.0 <= float(row[i]) <= 1.0 for i in (2, 4, 6))
    bad = subprocess.run([sys.executable, "infer.py", str(run_dir / "out"), "/no/such.wav"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "/no/such.wav" in bad.stderr


def test_bad_manifest_fails_before_training(tmp_path):
    (tmp_path / "man").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "man" / f"{split}.csv").write_text(
            "ID,wav,duration,spk_id,gender,age,age_group,channel\n"
            f"u_{split},/nowhere/{split}.wav,2.0,s_{split},q,30,,\n")
    cmd = [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={tmp_path}/out",
           f"--manifest_folder={tmp_path}/man", f"--data_folder={tmp_path}/demo",
           "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "train.csv, row 2" in out and "unknown gender" in out and "/nowhere/train.wav" in out
    assert not (tmp_path / "out" / "save").exists() or not any((tmp_path / "out" / "save").iterdir())
