"""benchmarks/age_mae.py: the table writer and the constant baseline on a tiny fake trained folder."""

import csv
import json
import os

import numpy as np
import pytest

from benchmarks import age_mae

LABELS = """label_space: &ls !new:recipes.labels.LabelSpace
  genders: [f, m]
  age_bins:
    child: [0, 15]
    adult: [16, 120]
  hierarchy:
    minor: [child]
    grown: [adult]
heads: !new:torch.nn.Identity
other: !ref <label_space>
"""


def block(n, mae, rmse):
    return {"exact": {"n": n, "mae": mae, "rmse": rmse}, "interval": {"n": 0, "mae": None, "rmse": None, "inside": None}}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "run"
    (d / "manifests").mkdir(parents=True)
    (d / "inference.yaml").write_text(LABELS)
    write_csv(d / "manifests" / "train.csv", ["ID", "wav", "duration", "spk_id", "gender", "age", "age_group"],
              [[f"u{i}", "x.wav", "2.0", f"s{i}", "f", a, ""] for i, a in enumerate((10, 20, 60))])
    write_csv(d / "predictions_test.csv", ["ID", "gender_true", "age_sub_true", "age_pred", "age_true", "age_lo", "age_hi"],
              [["t0", "f", "adult", "21.0", "20.00", "", ""], ["t1", "m", "adult", "27.0", "24.00", "", ""],
               ["t2", "m", "adult", "47.0", "50.00", "", ""]])
    age = {"n_scored": 3, **block(3, 2.33, 2.38),
           "per_gender": {"f": block(1, 1.0, 1.0), "m": block(2, 3.0, 3.0)},
           "per_age_group": {"child": block(0, None, None), "adult": block(3, 2.33, 2.38)},
           "derived_groups": {"age_sub": {"accuracy_from_years": 1.0, "accuracy_head": 2 / 3, "agreement": 2 / 3}}}
    (d / "results.json").write_text(json.dumps({"test": {"age_years": age, "n_utterances": 3}}))
    return str(d)


def line_of(text, start):
    hits = [ln for ln in text.splitlines() if ln.startswith(start)]
    assert hits, f"no line starting with {start!r} in:\n{text}"
    return hits[0]


def test_table_has_the_model_and_the_training_constants(folder, tmp_path):
    out = str(tmp_path / "age_mae.md")
    age_mae.main(["--row", f"fake={folder}", "--command", "fake=python train.py x.yaml", "--wall", "fake=3 min",
                  "--out", out])
    text = open(out).read()
    assert "| 3 | 2.33 | 2.38 |" in line_of(text, "| **fake** | all")
    # train ages 10, 20, 60: median 20 -> errors 0, 4, 30 on the test ages 20, 24, 50
    median = line_of(text, "| fake: constant 20.0 y (train median)")
    assert f"| {np.mean([0, 4, 30]):.2f} | {np.sqrt(np.mean([0, 16, 900])):.2f} |" in median
    mean = line_of(text, "| fake: constant 30.0 y (train mean)")  # errors 10, 6, 20
    assert f"| {np.mean([10, 6, 20]):.2f} |" in mean
    # per gender: the model's MAE and the constants' (m: 24 and 50 -> median 4 / 30, mean 6 / 20)
    assert line_of(text, "| fake | gender m").endswith(f"| {np.mean([4, 30]):.2f} / {np.mean([6, 20]):.2f} |")
    assert "| fake | age_sub | 100.0 | 66.7 | 66.7 |" in text
    assert "`python train.py x.yaml` | 3 min |" in text
    base = np.mean([0, 4, 30])
    assert f"MAE 2.33 years against {base:.2f} for the training median ({100 * (base - 2.33) / base:.0f}% lower)" in text
    assert "arXiv:2306.16962" in text


def test_interval_constant_sits_at_the_edge_of_the_common_bin():
    # two rows in [19, 29], one in [30, 39]: the least mean distance is at 29 (1/3 year)
    c = age_mae.constants(np.array([[19, 29], [19, 29], [30, 39]], dtype=float))
    assert abs(c["median"] - 29) < 0.11
    assert 29 <= c["mean"] <= 30


def test_a_folder_without_the_age_head_is_named(folder):
    path = os.path.join(folder, "results.json")
    with open(path, "w") as f:
        json.dump({"test": {"gender": {}}}, f)
    with pytest.raises(SystemExit, match="results.json: no test age_years"):
        age_mae.main(["--row", f"fake={folder}", "--out", os.devnull])
