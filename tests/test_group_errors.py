"""Per-group error table (recipes/evaluation/group_errors.py): hand-computed accuracies, age MAE with
point and interval labels, masked labels, largest gaps, and its place in train.py's results."""

import json

import pytest

from recipes.evaluation.group_errors import age_error, group_errors, group_markdown

MANIFEST = [
    {"ID": "a", "gender": "f", "age": "25", "age_group": "", "language": "en", "channel": ""},
    {"ID": "b", "gender": "f", "age": "27", "age_group": "", "language": "en", "channel": ""},
    {"ID": "c", "gender": "m", "age": "", "age_group": "20s", "language": "de", "channel": ""},
    {"ID": "d", "gender": "m", "age": "", "age_group": "20s", "language": "de", "channel": ""},
    {"ID": "e", "gender": "m", "age": "61", "age_group": "", "language": "en", "channel": ""},
]


def pred(uid, g, gp, sub, subp, age_pred="", **extra):
    return {"ID": uid, "gender_true": g, "gender_pred": gp, "age_sup_true": "", "age_sup_pred": "x",
            "age_sub_true": sub, "age_sub_pred": subp, "age_pred": age_pred, **extra}


PREDS = [
    pred("a", "f", "f", "20s", "20s", "30"),                             # |30 - 25| = 5
    pred("b", "f", "m", "20s", "30s", "27"),                             # 0
    pred("c", "m", "m", "20s", "20s", "35", age_lo="19", age_hi="29"),   # 6 to the interval's edge
    pred("d", "m", "m", "20s", "20s", "22", age_lo="19", age_hi="29"),   # 0: inside
    pred("e", "m", "f", "60+", "50s", "52"),                             # 9
]


def test_age_error_point_interval_and_missing():
    assert age_error("30", {"age_true": "25"}, {}) == 5
    assert age_error("30", {}, {"age": "41"}) == 11          # the manifest's age when no age_true
    assert age_error("12", {"age_lo": "19", "age_hi": "29"}, {}) == 7
    assert age_error("20", {"age_lo": "19", "age_hi": "29"}, {}) == 0
    assert age_error("", {"age_true": "25"}, {}) is None
    assert age_error("30", {"age_true": ""}, {"age": ""}) is None


def test_group_table_values_and_gaps():
    res = group_errors(MANIFEST, PREDS, {"gender": ["f", "m"], "age_sub": ["20s", "30s", "50s", "60+"]})
    table = {r["group"]: r for r in res["tables"]["gender x age group"]}
    assert list(table) == ["f / 20s", "m / 20s", "m / 60+"]
    assert table["f / 20s"]["n"] == 2 and table["f / 20s"]["gender_acc"] == 0.5
    assert table["f / 20s"]["age_group_acc"] == 0.5 and table["f / 20s"]["age_mae"] == 2.5
    assert table["m / 20s"]["gender_acc"] == 1.0 and table["m / 20s"]["age_mae"] == 3.0
    assert table["m / 60+"]["gender_acc"] == 0.0 and table["m / 60+"]["age_mae"] == 9.0
    assert table["m / 60+"]["age_sup_acc"] is None  # masked (empty true label) everywhere
    gaps = res["gaps"]["gender x age group"]
    assert gaps["gender_acc"] == {"gap": 1.0, "best": "m / 20s", "worst": "m / 60+",
                                  "best_value": 1.0, "worst_value": 0.0}
    assert gaps["age_mae"]["gap"] == 6.5 and gaps["age_mae"]["best"] == "f / 20s"  # lower is better
    assert "age_sup_acc" not in gaps
    lang = {r["group"]: r for r in res["tables"]["language"]}
    assert lang["de"]["n"] == 2 and lang["en"]["gender_acc"] == pytest.approx(1 / 3)
    assert "channel" not in res["tables"]  # one (empty) value: no table
    # min_count leaves small groups out of the gaps
    res2 = group_errors(MANIFEST, PREDS, min_count=2)
    assert res2["gaps"]["gender x age group"]["gender_acc"]["gap"] == 0.5
    md = group_markdown(res)
    assert "### by gender x age group" in md and "### by language" in md
    assert "| m / 60+ | 1 | 0.0 |" in md and "age MAE: 6.5 years" in md


def test_no_age_column_no_mae():
    preds = [{k: v for k, v in p.items() if not k.startswith("age_") or k.startswith("age_s")} for p in PREDS]
    res = group_errors(MANIFEST, preds)
    assert all(r["age_mae"] is None for r in res["tables"]["gender x age group"])
    assert "age MAE" not in group_markdown(res)


def test_train_writes_group_table(tiny_run):
    _, out = tiny_run
    res = json.load(open(out / "results.json"))["test"]
    groups = res["groups"]
    rows = groups["tables"]["gender x age group"]
    assert sum(r["n"] for r in rows) == res["n_utterances"] == groups["n"]
    assert all(0.0 <= r["gender_acc"] <= 1.0 for r in rows)
    md = (out / "results.md").read_text()
    assert "| gender |" in md and "## Per-group errors (test)" in md and "largest gap" in md
    assert (out / "confusion_test.png").is_file()
