"""Test utterances whose audio cannot be read at evaluation are dropped from their batch;
results.json and results.md say how many of the manifest's rows were scored and which not.
The training log names true paths only."""

import csv
import json

from conftest import run_train


def test_unreadable_test_file_is_reported(tmp_path):
    out, data = tmp_path / "out", tmp_path / "demo"
    log = run_train(out, data, "--number_of_epochs=1")
    # log lines that are true: where the checkpoint is, no staging path, no torchvision noise
    assert f"Saved an end-of-epoch checkpoint in {out / 'save' / 'CKPT+'}" in log
    assert ".staging" not in log and "torchvision" not in log
    with open(out / "manifests" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first = json.loads((out / "results.json").read_text())["test"]
    assert first["n_manifest_rows"] == first["n_scored"] == len(rows) and first["not_scored"] == []

    bad = rows[len(rows) // 2]
    with open(bad["wav"], "wb") as f:  # corrupt after preparation: only evaluation reads it
        f.write(b"this is not audio" * 10)
    log = run_train(out, data, "--number_of_epochs=1")  # trained already: evaluation again
    res = json.loads((out / "results.json").read_text())["test"]
    assert res["n_manifest_rows"] == len(rows)
    assert res["n_scored"] == res["n_utterances"] == len(rows) - 1
    assert res["not_scored"] == [bad["ID"]]
    md = (out / "results.md").read_text()
    assert f"scored {len(rows) - 1} of the manifest's {len(rows)} rows" in md and bad["ID"] in md
    assert bad["ID"] in log
