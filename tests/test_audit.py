"""audit.py on the demo model with tiny probe settings: the report's sections, numbers in
range, a summary naming layers that exist, and the three output files."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_PROBE = "{l1: 0.00001, l2: 0.00001, epochs: 2, batch_size: 32, lr: 0.01, min_steps: 30}"


@pytest.fixture(scope="module")
def audit_run(tiny_run, tmp_path_factory):
    """The audit of the shared demo model, on manifests of its corpus with more test speakers
    (the tiny run's own test split has too few for speaker trials)."""
    from local.prepare_csv import prepare_csv

    root, model = tiny_run
    tmp = tmp_path_factory.mktemp("audit")
    prepare_csv(str(root / "demo" / "corpus.csv"), str(tmp / "manifests"), ratios=(0.5, 0.1, 0.4))
    out = tmp / "audit"
    cmd = [sys.executable, "audit.py", "hparams/audit/demo.yaml", f"--model_folder={model}",
           f"--output_folder={out}", f"--manifest_folder={tmp / 'manifests'}", "--n_seeds=2",
           f"--probe={TINY_PROBE}", "--max_per_speaker=3", "--sv_trials=300", "--percents=[5, 25, 100]"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, model, tmp


def test_audit_report_sections_and_files(audit_run):
    out, _, _ = audit_run
    md = (out / "audit.md").read_text()
    heads = ["## Summary", "## 1. Per-group errors", "### by gender x age group", "## 2. Leakage per layer",
             "## 3. Gender neurons"]
    pos = [md.index(h) for h in heads]
    assert pos == sorted(pos)  # the summary first, then the sections in order
    assert (out / "audit.png").stat().st_size > 10_000
    assert (out / "predictions_audit.csv").is_file()


def test_audit_numbers_in_range(audit_run, tiny_run):
    from recipes.inference.model import ProfilerModel

    out, model_folder, tmp = audit_run
    rep = json.load(open(out / "audit.json"))
    layers = list(ProfilerModel.from_folder(model_folder).encoder.named_layers())
    n_test = sum(1 for _ in open(tmp / "manifests" / "test.csv")) - 1
    rows = rep["groups"]["tables"]["gender x age group"]
    assert sum(r["n"] for r in rows) == n_test == rep["groups"]["n"]
    assert all(0 <= r["gender_acc"] <= 1 and 0 <= r["age_group_acc"] <= 1 for r in rows)
    leak = rep["leakage"]
    assert {"gender", "age_sub", "channel"} <= set(leak)  # channel: simulated (one manifest value)
    for task, v in leak.items():
        assert set(layers) <= set(v["layerwise"]) and "ALL" in v["layerwise"]
        assert all(0 <= m["accuracy"][0] <= 1 for m in v["layerwise"].values())
        assert 0 <= v["majority"] <= 1 and 0 <= v["random_init"]["accuracy"][0] <= 1
        assert all(-1 <= s <= 1 for s in v["selectivity"].values())
    assert leak["channel"]["classes"] == ["clean", "lowbitrate", "noisy", "telephone"]
    sv = rep["speaker"]["per_layer"]
    assert set(layers) <= set(sv) and all(0 <= e <= 1 for e in sv.values())
    rem = rep["gender_removal"]["summary"]
    assert rem["layer"] == "embedding" and 1 <= rem["n_gender_neurons"][0] <= rem["n_neurons"]
    assert {"gender", "age_sub", "channel", "speaker_eer"} <= set(rem["tasks"])
    for task, v in rem["tasks"].items():
        assert all(0 <= v[k][0] <= 1 for k in v)
    neurons = rep["gender_removal"]["runs"][0]["neurons"]
    assert neurons == sorted(set(neurons)) and all(0 <= i < rem["n_neurons"] for i in neurons)


def test_audit_summary_names_existing_layers(audit_run):
    out, _, _ = audit_run
    rep = json.load(open(out / "audit.json"))
    summary = "\n".join(rep["summary"])
    assert rep["summary"][0].startswith("- Largest error gap")
    groups = [r["group"] for r in rep["groups"]["tables"]["gender x age group"]]
    worst = rep["groups"]["gaps"]["gender x age group"]
    assert any(f"**{g}**" in rep["summary"][0] for g in groups) or not worst
    import re

    named = re.findall(r"Most leaking layer for (\w+): \*\*(\w+)\*\*", summary)
    assert [t for t, _ in named][0] == "gender" and len(named) == len(rep["leakage"])
    for task, layer in named:
        lw = rep["leakage"][task]["layerwise"]
        assert layer in lw and layer != "ALL"
        assert lw[layer]["accuracy"][0] == max(v["accuracy"][0] for k, v in lw.items() if k != "ALL")
    assert summary in (out / "audit.md").read_text()


def test_audit_yamls_share_keys_and_load():
    """hparams/audit/commonvoice.yaml has every key of the demo audit (audit.py reads them)
    and prepares its manifests with local/prepare_commonvoice.py."""
    from recipes.config.recipe_yaml import load_checked

    hps = {}
    for name in ("demo", "commonvoice"):
        hps[name] = load_checked(os.path.join(ROOT, "hparams", "audit", f"{name}.yaml"), {"model_folder": "m"})
    assert set(hps["demo"]) <= set(hps["commonvoice"])
    assert hps["commonvoice"]["prepare_data"].func.__name__ == "prepare_commonvoice"
    assert hps["demo"]["prepare_data"] is None


def test_predict_rows_with_age_years(tmp_path, label_space):
    """The model's own predictions, as predictions_test.csv columns: label names, the age
    head's years, the exact age or else the bin of an age-group-only row."""
    import numpy as np
    import soundfile as sf
    import torch

    from recipes.probing.audit import predict_rows
    from recipes.evaluation.group_errors import group_errors

    class Fake(torch.nn.Module):
        sample_rate = 8000

        def __init__(self):
            super().__init__()
            self.label_space = label_space

        def forward(self, wavs, lens):
            n = wavs.shape[0]
            onehot = lambda k, i: torch.nn.functional.one_hot(torch.full((n,), i), k).float()  # noqa: E731
            return {"gender": onehot(2, 1), "age_sup": onehot(2, 1), "age_sub": onehot(4, 2),
                    "age_years": torch.full((n, 2), 30.0)}, torch.zeros(n, 4)

    rows = []
    for i, (g, age, group) in enumerate([("m", "25", ""), ("f", "", "senior"), ("m", "", "")]):
        path = str(tmp_path / f"{i}.wav")
        sf.write(path, 0.1 * np.sin(np.arange(8000) / 5.0).astype(np.float32), 8000)
        rows.append({"ID": f"u{i}", "wav": path, "gender": g, "age": age, "age_group": group})
    preds = {p["ID"]: p for p in predict_rows(Fake(), rows)}
    assert preds["u0"]["gender_pred"] == "m" and preds["u0"]["age_sub_pred"] == "adult"
    assert preds["u0"]["age_sub_true"] == "adult" and preds["u0"]["age_sup_true"] == "grown"
    assert (preds["u0"]["age_pred"], preds["u0"]["age_true"], preds["u0"]["age_lo"]) == ("30.00", "25", "")
    assert (preds["u1"]["age_lo"], preds["u1"]["age_hi"]) == (45.0, 120.0)
    assert preds["u2"]["age_sub_true"] == "" and preds["u2"]["age_lo"] == ""
    res = group_errors(rows, list(preds.values()))
    mae = {r["group"]: r["age_mae"] for r in res["tables"]["gender x age group"]}
    assert mae == {"m / adult": 5.0, "f / senior": 15.0, "m / (missing)": None}


def test_gender_neuron_count_says_what_it_counts():
    """The header's count and the listed neurons agree: one seed gives its count, several seeds
    their mean and spread, and the list names its seed and its own length."""
    from recipes.probing.audit_report import removal_markdown

    def summary(counts):
        return {"summary": {"layer": "embedding", "n_neurons": 64, "oracle": (0.9, 0.0),
                            "n_gender_neurons": (float(np.mean(counts)), float(np.std(counts, ddof=1)) if len(counts) > 1 else 0.0),
                            "neurons_seed0": list(range(counts[0])), "tasks": {}}}

    import numpy as np

    one = "\n".join(removal_markdown(summary([13])))
    assert "13 of 64 neurons carry gender" in one and "seed 0 (13)" in one
    three = "\n".join(removal_markdown(summary([13, 11, 12])))
    assert "12.0±1.0 (mean over seeds) of 64 neurons" in three and "seed 0 (13)" in three
