"""benchmarks/structured_pruning.py: goal verdict, per-part parameter counts and the table
(fake measurements, no training)."""

import argparse
import sys
import types

import torch

from benchmarks import structured_pruning as bench


def test_verdict_names_every_missed_part():
    assert bench.verdict(12.0, {1: 2.5, 32: 2.1}, 1.0) == "reached"
    missed = bench.verdict(8.6, {1: 2.5, 32: 1.4}, 3.2)
    assert missed.startswith("MISSED") and "8.6x fewer" in missed and "b32 1.40x" in missed and "F1 -3.2" in missed
    assert "b1" not in missed


def test_breakdown_splits_encoder_embedding_layer_and_heads():
    enc = torch.nn.Sequential(torch.nn.Conv1d(4, 6, 3), torch.nn.Conv1d(6, 5, 1))
    heads = torch.nn.Linear(5, 2)
    with torch.no_grad():
        enc[0].weight[0].zero_()  # 12 zeros: counted out
    parts = bench.breakdown(types.SimpleNamespace(encoder=enc, heads=heads))
    assert parts == {"encoder body": 4 * 6 * 3 + 6 - 12, "embedding layer": 6 * 5 + 5, "heads": 5 * 2 + 2}


def test_table_has_latency_goal_parts_notes_and_steps(tmp_path, monkeypatch):
    folder = tmp_path / "pruned"
    folder.mkdir()
    (folder / "pruning_rounds.csv").write_text("round,level,sparsity,mean_f1,accepted\n1,0.5,0.6,0.7,True\n")
    row = lambda nz, lat, f1: {"params": nz, "nonzero": nz, "file_bytes": 4 * nz, "f1": dict.fromkeys(bench.TASKS, f1),  # noqa: E731
                               "latency_s": {"1": lat, "32": 10 * lat},
                               "parts": {"encoder body": nz // 2, "embedding layer": nz // 4, "heads": nz - 3 * (nz // 4)}}
    m = {"reference": row(1000, 0.04, 0.8), "pruned": row(90, 0.01, 0.79)}
    args = argparse.Namespace(batches=[1, 32], latency_seconds=4.0, latency_repeats=5, smoke=False,
                              out=str(tmp_path / "t.md"), note=["heads dominate"], step=["student|120|python train.py x"])
    monkeypatch.setattr(sys, "argv", ["structured_pruning.py", "--reference", "a b", "--note", "heads dominate"])
    text = bench.write_table(args, m, "reference", [("pruned", str(folder), "python prune.py", 60.0)],
                             [("pruned", "python prune.py", 60.0)])
    assert "| pruned | 90 | 90 | 11.11x |" in text and "10.0 ms (4.00x)" in text and "| reached |" in text
    assert "| pruned | 45 (50%) | 22 (24%) | 24 (27%) |" in text
    assert "- heads dominate" in text and "- student: `python train.py x` (2.0 min)" in text
    assert "--reference 'a b' (+ the --step and --note texts above)" in text
    assert open(args.out).read().strip() == text.strip()


def test_unknown_key_value_arguments_go_to_prune_py():
    args = bench.parse_args(["--reference", "t", "--max_rounds=2", "--prune_args=--lr=0.001"])
    assert sorted(args.prune_args) == ["--lr=0.001", "--max_rounds=2"]
    try:
        bench.parse_args(["--reference", "t", "stray"])
    except SystemExit as err:
        assert err.code == 2
    else:
        raise AssertionError("a stray argument was accepted")
