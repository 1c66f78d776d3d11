"""Structured (channel) pruning with torch-pruning's DepGraph and the probe-guided criterion:
unit checks on tiny ECAPA / ResNet encoders (smaller, dense, equal to the masked twin,
rebuilt from the saved shapes), then prune.py end to end on the demo model (rounds, resume,
stop rule, the folder loads and exports to TorchScript and ONNX with parity)."""

import copy
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from recipes.compression import structured as S
from recipes.compression.probe_importance import ProbeImportance
from recipes.encoders import EcapaEncoder, ResNetEncoder

ENCODERS = {
    "ecapa": lambda: EcapaEncoder(emb_dim=32, channels=[32, 32, 32, 32, 96], res2net_scale=4,
                                  attention_channels=16, se_channels=16),
    "resnet": lambda: ResNetEncoder(emb_dim=32, channels=[8, 8, 16, 16], block_sizes=[1, 1, 1, 1]),
}


def _encoder(name, seed=0):
    torch.manual_seed(seed)
    enc = ENCODERS[name]().eval()
    with torch.no_grad():  # trained-looking BatchNorms: a removed channel's bias would show
        for m in enc.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return enc


def _example(batch=2, frames=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 80, generator=g), torch.ones(batch)


def _layer_weights(enc):
    return [m.weight for m in enc.modules() if isinstance(m, S.LAYERS)]


@pytest.mark.parametrize("name,criterion,global_pruning", [("ecapa", "l2", False), ("resnet", "l2", False),
                                                          ("ecapa", "bn_scale", True), ("resnet", "l1", True)])
def test_pruned_encoder_is_smaller_dense_and_equals_its_masked_twin(name, criterion, global_pruning):
    enc = _encoder(name)
    unpruned = copy.deepcopy(enc)
    plan = []
    S.prune_channels(enc, _example(), 0.5, S._criterion(criterion), global_pruning=global_pruning, plan=plan)
    assert enc.n_params() < 0.7 * unpruned.n_params()
    assert all(int(torch.count_nonzero(w)) == w.numel() for w in _layer_weights(enc))  # dense: nothing masked
    x, lens = _example(batch=3, frames=80, seed=1)
    lens[-1] = 0.6
    twin = S.masked_twin(unpruned, plan)
    with torch.no_grad():
        out, out_twin, out_unpruned = enc(x, lens), twin(x, lens), unpruned(x, lens)
    assert out.shape == out_unpruned.shape  # the embedding the heads read keeps its size
    assert torch.allclose(out, out_twin, atol=1e-4), (out - out_twin).abs().max()
    assert not torch.allclose(out, out_unpruned, atol=1e-3)  # channels that mattered were removed
    # rebuilt from the unpruned definition and the changed shapes, it loads the pruned weights
    rebuilt = S.reshaped(copy.deepcopy(unpruned), S.pruned_shapes(enc, S.tensor_shapes(unpruned)))
    rebuilt.load_state_dict(enc.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x, lens), out)


def test_res2net_chunks_keep_equal_widths():
    enc = _encoder("ecapa")
    S.prune_channels(enc, _example(), 0.5, S._criterion("l1"))
    for block in enc.model.blocks[1:]:
        r2n = block.res2net_block
        assert block.tdnn1.conv.conv.out_channels == r2n.scale * r2n.blocks[0].conv.conv.in_channels
    with pytest.raises(ValueError, match="chunks"):
        S.Res2NetPruner().prune_out_channels(enc.model.blocks[1].res2net_block, [0])


def _probe_batches(n=4, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 60, 80, generator=g)
        out.append((x, torch.ones(batch), {"gender": torch.randint(0, 2, (batch,), generator=g),
                                           "age_sub": torch.randint(0, 4, (batch,), generator=g)}))
    return out


def test_probe_ranking_changes_which_channels_are_removed():
    plans = {}
    for criterion in ("l2", "probe"):
        enc = _encoder("ecapa")
        probe = ProbeImportance(probe={"epochs": 5, "min_steps": 50}, p_step=0.01)
        probe.encoder, probe.batches_fn = enc, _probe_batches
        plans[criterion] = plan = []
        S.prune_channels(enc, _example(), 0.5, S._criterion(criterion, probe), plan=plan)
    assert plans["probe"] != plans["l2"]
    # an SE bottleneck (a group of its own): exactly its lowest-scored channels are gone
    se = enc.model.blocks[1].se_block.conv1.conv
    scores = next(s for m, s in probe.scores.items() if m is se)  # scores of the unpruned channels
    name = next(n for n, m in enc.named_modules() if m is se)
    removed = next(i for n, side, i in plans["probe"] if n == name and side == "out")
    kept = sorted(set(range(len(scores))) - set(removed))
    assert len(removed) > 0 and scores[removed].max() <= scores[kept].min()


# ---- prune.py end to end -------------------------------------------------------------------
def _prune(model_folder, out, *extra):
    args = [sys.executable, "prune.py", "hparams/demo_prune_structured.yaml", f"--model_folder={model_folder}",
            f"--output_folder={out}", "--latency_batches=[1,2]", "--latency_seconds=1.0", "--latency_repeats=1",
            "--noprogressbar", *extra]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _rounds(out):
    with open(out / "pruning_rounds.csv") as f:
        return list(csv.DictReader(f))


def test_prune_structured_rounds_resume_load_and_export(tiny_run, tmp_path):
    from recipes.inference.deploy import (ExportableProfiler, example_input, max_abs_diff, onnx_session, run_onnx, to_onnx,
                                to_torchscript)
    from recipes.inference.model import ProfilerModel

    _, model_folder = tiny_run
    out = tmp_path / "structured"
    log = _prune(model_folder, out, "--max_rounds=1", "--f1_tolerance=1.0")  # as if stopped after round 1
    assert "structured pruning round 1" in log
    one = ProfilerModel.from_folder(str(out))
    # the same command with more rounds resumes from round 1's (pruned) checkpoint
    log = _prune(model_folder, out, "--max_rounds=2", "--f1_tolerance=1.0")
    assert "structured pruning round 1" not in log and "structured pruning round 2" in log
    assert [r["accepted"] for r in _rounds(out)] == ["True", "True"]
    with open(out / "train_log.txt") as f:
        assert sum(line.startswith("epoch:") for line in f) == 2
    with open(out / "prune_summary.json") as f:
        s = json.load(f)
    unpruned = ProfilerModel.from_folder(str(model_folder))
    model = ProfilerModel.from_folder(str(out))
    n = lambda m: sum(p.numel() for p in m.encoder.parameters())  # noqa: E731
    assert n(model) < n(one) < n(unpruned) and s["final_round"] == 2
    assert s["nonzero_params"] == s["params"] and s["max_abs_diff_reloaded"] < 1e-6  # dense
    # again: nothing left to do
    assert "structured pruning round" not in _prune(model_folder, out, "--max_rounds=2", "--f1_tolerance=1.0")
    # the folder exports like any other, with parity
    exportable = ExportableProfiler(model).eval()
    example = example_input(model.sample_rate, batch=2, seconds=1.0)
    check = example_input(model.sample_rate, batch=3, seconds=1.5, seed=1)
    with torch.no_grad():
        ref = exportable(*check)
    ts = to_torchscript(exportable, example, str(tmp_path / "model.pt"))
    assert max_abs_diff(ts(*check), ref) < 1e-5
    onnx_path = to_onnx(exportable, example, str(tmp_path / "model.onnx"))
    assert max_abs_diff(run_onnx(onnx_session(onnx_path), *check), ref) < 1e-4


def test_prune_structured_probe_stop_keeps_the_unpruned_model(tiny_run, tmp_path):
    from recipes.inference.model import ProfilerModel

    _, model_folder = tiny_run
    out = tmp_path / "strict"
    log = _prune(model_folder, out, "--max_rounds=2", "--f1_tolerance=-2.0", "--structured_criterion=probe",
                 "--probe_batches=2", "--probe_p_step=0.01")
    assert "structured pruning round 1 (probe)" in log
    rounds = _rounds(out)
    assert len(rounds) == 1 and rounds[0]["accepted"] == "False"
    model, unpruned = ProfilerModel.from_folder(str(out)), ProfilerModel.from_folder(str(model_folder))
    assert [p.shape for p in model.encoder.parameters()] == [p.shape for p in unpruned.encoder.parameters()]
    assert len(list((out / "save").glob("CKPT+*"))) == 1


def test_prune_structured_killed_mid_round_resumes_at_the_pruned_widths(tiny_run, tmp_path):
    """SIGKILL in round 2 after an intra-epoch checkpoint: the same command resumes with
    round 2's widths (restored before the weights and the optimizer), without pruning again."""
    import re
    import signal

    from recipes.inference.model import ProfilerModel

    _, model_folder = tiny_run
    out = tmp_path / "killed"
    args = [sys.executable, "prune.py", "hparams/demo_prune_structured.yaml", f"--model_folder={model_folder}",
            f"--output_folder={out}", "--max_rounds=2", "--f1_tolerance=1.0", "--ckpt_interval_steps=1",
            "--latency_batches=[1,2]", "--latency_seconds=1.0", "--latency_repeats=1", "--noprogressbar"]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PROFILING_KILL_AT": "2:2"})
    assert res.returncode == -signal.SIGKILL, res.stdout[-2000:] + res.stderr[-2000:]
    pruned_to = int(re.search(r"structured pruning round 2 .* -> (\d+) parameters", res.stdout + res.stderr).group(1))
    latest = max((out / "save").glob("CKPT+*"), key=lambda p: p.stat().st_mtime)
    at_kill = torch.load(latest / "encoder.ckpt", map_location="cpu")
    log = _prune(model_folder, out, "--max_rounds=2", "--f1_tolerance=1.0")
    assert "structured pruning round" not in log
    assert [r["round"] for r in _rounds(out)] == ["1", "2"]
    encoder = ProfilerModel.from_folder(str(out)).encoder
    assert sum(p.numel() for p in encoder.parameters()) == pruned_to
    # the resumed steps trained the encoder's resized tensors (not stale ones held by an optimizer
    # built before the checkpoint resized them)
    unpruned = dict(ProfilerModel.from_folder(str(model_folder)).encoder.named_parameters())
    resized = [n for n, p in encoder.named_parameters() if p.shape != unpruned[n].shape]
    assert resized and all(not torch.equal(encoder.get_parameter(n), at_kill[n]) for n in resized)


def test_prune_structured_retrains_with_logit_kd_from_a_teacher(tiny_run, tmp_path):
    """lam > 0: each round's retraining mixes in the teacher's softened posteriors (paper 002,
    Eq. 4; the KD term is logged); lam > 0 without a teacher is refused before anything is written."""
    _, model_folder = tiny_run
    out = tmp_path / "kd"
    _prune(model_folder, out, "--max_rounds=1", "--f1_tolerance=1.0", "--lam=0.5", "--temperature=2.0",
           f"--teacher_folder={model_folder}")
    with open(out / "train_log.txt") as f:
        epochs = [line for line in f if line.startswith("epoch:")]
    assert len(epochs) == 1 and "loss_kd" in epochs[0]
    with open(tmp_path / "kd" / "hyperparams.yaml") as f:
        assert "lam: 0.5" in f.read()
    plain = tmp_path / "plain"
    _prune(model_folder, plain, "--max_rounds=1", "--f1_tolerance=1.0")
    with open(plain / "train_log.txt") as f:
        assert "loss_kd" not in f.read()
    res = subprocess.run([sys.executable, "prune.py", "hparams/demo_prune_structured.yaml",
                          f"--model_folder={model_folder}", f"--output_folder={tmp_path / 'refused'}", "--lam=0.5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "--teacher_folder" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr and not (tmp_path / "refused" / "hyperparams.yaml").exists()
