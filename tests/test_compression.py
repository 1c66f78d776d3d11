"""Compression: logit KD (paper 002 Eq. 2-4), magnitude pruning (002 II-C, IV-C),
module replacing (LCMR, paper 003). Unit checks of the equations, then tiny end-to-end runs
of train.py / prune.py on the demo corpus, as a user runs them."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_results_match_predictions, free_port
from recipes.compression.replacing import (LogarithmicScheduler, ModuleReplacing, ReplacementSchedule,
                                           make_scheduler)
from recipes.encoders import EcapaEncoder, ResNetEncoder
from recipes.heads import ProfilingHeads
from recipes.losses import LogitKDObjective, ProfilingObjective, logit_kd_loss, soft_cross_entropy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3", "--noprogressbar"]


def run(script, *args, timeout=1800):
    res = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


# ---- logit KD (002 Eq. 2-4) --------------------------------------------------------------
def _logits(label_space, seed):
    g = torch.Generator().manual_seed(seed)
    sizes = {"gender": label_space.n_gender, "age_sup": label_space.n_sup, "age_sub": label_space.n_sub}
    return {t: torch.randn(8, n, generator=g) for t, n in sizes.items()}


def test_logit_kd_at_lambda_0_is_cross_entropy(label_space):
    student, teacher = _logits(label_space, 0), _logits(label_space, 1)
    targets = {t: v.argmax(-1) for t, v in _logits(label_space, 2).items()}
    task = ProfilingObjective(label_space, hierarchical=False, label_smoothing=0.0)
    plain_ce = sum(F.cross_entropy(student[t], targets[t]) for t in student)
    for temperature in (1.0, 2.0, 5.0, 10.0):
        loss, terms = LogitKDObjective(task, temperature, lam=0.0)(student, targets, teacher)
        assert torch.allclose(loss, plain_ce, atol=1e-6)
        assert terms["kd"] > 0
    loss, terms = LogitKDObjective(task, 2.0, lam=0.5)(student, targets, teacher)
    assert not torch.allclose(loss, plain_ce, atol=1e-3)
    assert torch.allclose(loss, 0.5 * 4.0 * terms["kd"] + 0.5 * plain_ce, atol=1e-6)  # Eq. 4 x T^2


def test_soft_cross_entropy_is_eq_2_with_softened_posteriors():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    temperature = 3.0
    ref = -(torch.softmax(t / temperature, -1) * torch.log_softmax(s / temperature, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(s, t, temperature), ref)
    # the gradient vanishes when the student's softened posteriors equal the teacher's
    s2 = t.clone().requires_grad_(True)
    soft_cross_entropy(s2, t, temperature).backward()
    assert s2.grad.abs().max() < 1e-6
    assert logit_kd_loss(torch.tensor(2.0), torch.tensor(3.0), temperature=2.0, lam=1.0) == 8.0
    with pytest.raises(ValueError):
        LogitKDObjective(None, temperature=2.0, lam=1.5)


# ---- replacement schedulers (003 Eq. 5 and the other three) ------------------------------
def test_schedulers_hand_computed_and_reach_one():
    const = make_scheduler("constant", p0=0.3, t_one=4)
    assert const(0) == const(3.5) == pytest.approx(0.3)
    lin = make_scheduler("linear", p0=0.2, t_one=4)
    assert [lin(t) for t in (0, 2, 4, 9)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    log = LogarithmicScheduler(k=0.9, b=1.0, base=10)  # p_t = min(log10(0.9 t + 1), 1)
    assert [log(t) for t in (0, 1, 10, 20)] == pytest.approx([0.0, math.log10(1.9), 1.0, 1.0])
    made = make_scheduler("log", p0=0.0, t_one=10, base=10)
    assert (made.k, made.b) == pytest.approx((0.9, 1.0))
    exp = make_scheduler("exp", p0=0.1, t_one=10, base=10)  # 0.1 * 10^(0.1 t)
    assert [exp(t) for t in (0, 5, 10, 12)] == pytest.approx([0.1, 10 ** -0.5, 1.0, 1.0])
    assert exp(2) < lin(2) and log(2) > 0.2  # convex vs concave start
    for kind in ("constant", "linear", "log", "exp"):
        sched = ReplacementSchedule(make_scheduler(kind, p0=0.25, t_one=6), replacing_epochs=6)
        values = [sched(t / 4) for t in range(0, 40)]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))  # never decreasing
        assert sched(6.0) == 1.0 and sched(8.5) == 1.0  # fine-tuning phase: student only
    with pytest.raises(ValueError):
        make_scheduler("cosine", p0=0.1, t_one=1)


# ---- module replacing (003 Eq. 1-2) ------------------------------------------------------
def _ecapa(c_mfa, scale):
    return EcapaEncoder(80, 32, [32, 32, 32, 32, c_mfa], res2net_scale=scale, attention_channels=8, se_channels=8)


@pytest.mark.parametrize("make", [
    lambda: (_ecapa(96, 4), _ecapa(48, 2)),
    lambda: (ResNetEncoder(80, 32, [8, 8, 16, 16], [2, 2, 2, 1]), ResNetEncoder(80, 32, [8, 8, 16, 16], [1, 1, 1, 1])),
], ids=["ecapa", "resnet"])
def test_replacing_p0_is_teacher_p1_is_student(make):
    torch.manual_seed(0)
    teacher, student = make()
    pair = ModuleReplacing(teacher, student, strategy=1)
    x, lens = torch.randn(3, 60, 80), torch.tensor([1.0, 0.8, 0.6])
    pair.train()
    pair.p = 0.0
    assert torch.equal(pair(x, lens), teacher(x, lens))
    pair.p = 1.0
    assert torch.equal(pair(x, lens), student(x, lens))
    pair.eval()  # evaluation: the student alone, whatever p
    pair.p = 0.0
    assert torch.equal(pair(x, lens), student.eval()(x, lens))
    # the teacher's module tree is restored after every swap
    student_modules = set(map(id, student.modules()))
    assert not any(id(m) in student_modules for m in teacher.modules())
    pair.train()
    pair.p = 0.5
    draws = [tuple(pair.draw()) for _ in range(50)]
    assert len(set(draws)) > 5 and any(any(d) for d in draws) and any(not all(d) for d in draws)
    # keyed by (epoch, batch): a second copy (another torchrun rank, or a resumed run) draws the same
    other = ModuleReplacing(*make(), strategy=1).train()
    other.p = 0.5
    keyed = []
    for step in [(1, 1), (1, 2), (2, 1), (1, 1)]:
        pair.step = other.step = step
        keyed.append(pair.draw())
        assert other.draw() == keyed[-1]
    assert keyed[0] == keyed[3] and len({tuple(d) for d in keyed}) > 1


def test_replacing_heads_strategy_2_and_bad_students(label_space):
    teacher, student = ProfilingHeads(32, label_space, 16), ProfilingHeads(32, label_space, 8)
    pair = ModuleReplacing(teacher, student, strategy=2).train()
    assert not teacher.training and student.training  # Strategy 2: frozen teacher, eval mode
    assert all(not p.requires_grad for p in teacher.parameters())
    emb = torch.randn(4, 32)
    pair.p = 1.0
    torch.manual_seed(1)  # the same dropout masks: the draws use the pair's own generator
    out = pair(emb)
    torch.manual_seed(1)
    ref = student(emb)
    assert all(torch.equal(out[t], ref[t]) for t in out)
    sum(v.sum() for v in out.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    resnet = ModuleReplacing(ResNetEncoder(80, 32, [8, 8, 16, 16], [2, 2, 2, 1]),
                             ResNetEncoder(80, 32, [8, 8, 16, 16], [1, 1, 1, 1]))
    assert resnet.init_student()[0] == len(resnet.student.state_dict())  # its blocks: the teacher's first ones
    assert torch.equal(resnet.student.model.layer3[0].conv1.weight, resnet.teacher.model.layer3[0].conv1.weight)
    copied, total = ModuleReplacing(_ecapa(96, 4), _ecapa(48, 2)).init_student()  # other res2net / tail sizes
    assert 0 < copied < total
    with pytest.raises(ValueError, match="shape"):  # other block width: not a replacement
        ModuleReplacing(_ecapa(96, 4), EcapaEncoder(80, 32, [16, 16, 16, 16, 48], res2net_scale=2,
                                                    attention_channels=8, se_channels=8))(torch.randn(2, 40, 80))
    with pytest.raises(ValueError, match="outside every replacing group"):
        ModuleReplacing(_ecapa(96, 4), _ecapa(48, 2), groups=[["model.blocks.0"]])
    with pytest.raises(TypeError):
        ModuleReplacing(_ecapa(96, 4), ResNetEncoder(80, 32, [8, 8, 16, 16], [1, 1, 1, 1]))


def test_head_layer_norm_switch(label_space):
    """002 Section II-A: LayerNorm before the non-linearity; off = the old checkpoint layout."""
    default, ln = ProfilingHeads(16, label_space, 8), ProfilingHeads(16, label_space, 8, layer_norm=True)
    assert isinstance(default.heads["gender"].hidden[1], torch.nn.BatchNorm1d)
    assert "heads.gender.hidden.1.running_mean" in default.state_dict()
    assert isinstance(ln.heads["age_sub"].hidden[1], torch.nn.LayerNorm)
    out = ln.train()(torch.randn(1, 16))  # per-utterance normalisation: a batch of 1 trains (BatchNorm cannot)
    assert out["age_sub"].shape == (1, label_space.n_sub)


# ---- pruning (002 II-C) ------------------------------------------------------------------
def _pruning_brain(model, pruner):
    from recipes.brains.pruning import PruningBrain
    brain = PruningBrain(modules={"model": model}, opt_class=lambda p: torch.optim.Adam(p, lr=0.05),
                         hparams={"pruner": pruner}, run_opts={"device": "cpu"})
    brain.init_optimizers()
    return brain


def _step(brain, model, x):
    brain.optimizer.zero_grad()
    model(x).square().mean().backward()
    brain.optimizers_step()


def test_pruned_weights_stay_zero_after_steps_and_resume(tmp_path):
    from recipes.checkpoint import AtomicCheckpointer
    from recipes.compression.pruning import MagnitudePruner, PruningSchedule

    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))  # noqa: E731
    model, x = make(), torch.randn(32, 8)
    pruner = MagnitudePruner({"model": model}, include=["model.*"], min_dim=2)
    assert set(pruner.targets) == {"model.0.weight", "model.2.weight"}  # biases: 1-D, not pruned
    brain = _pruning_brain(model, pruner)
    _step(brain, model, x)  # Adam moments of every weight are non-zero now
    schedule = PruningSchedule("sparsity", start=0.5, step=0.25, every=2, maximum=0.9)
    assert [schedule.level(r) for r in (1, 2, 3, 5, 9)] == pytest.approx([0.5, 0.5, 0.75, 0.9, 0.9])
    assert pruner.prune(schedule.threshold(pruner, 1)) == pytest.approx(0.5, abs=0.01)
    zeros = {n: p == 0 for n, p in pruner.targets.items()}
    for _ in range(3):
        _step(brain, model, x)
    for n, p in pruner.targets.items():
        assert torch.equal(p[zeros[n]], torch.zeros_like(p[zeros[n]])) and (p[~zeros[n]] != 0).all()
    ckpt = AtomicCheckpointer(tmp_path / "save", recoverables={"model": model, "masks": pruner})
    ckpt.save_checkpoint(meta={"round": 1})
    model2 = make()
    pruner2 = MagnitudePruner({"model": model2}, include=["model.*"])
    AtomicCheckpointer(tmp_path / "save", recoverables={"model": model2, "masks": pruner2}).recover_if_possible()
    assert all(torch.equal(pruner2.masks[n], pruner.masks[n]) for n in pruner.masks)
    brain2 = _pruning_brain(model2, pruner2)
    for _ in range(2):
        _step(brain2, model2, x)
    for n, p in pruner2.targets.items():
        assert (p[zeros[n]] == 0).all()
    # a stricter level prunes more, cumulatively
    assert pruner2.prune(pruner2.threshold_for(0.8)) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="no parameter"):
        MagnitudePruner({"model": model}, include=["nothing.*"])


@pytest.mark.parametrize("encoder", [_ecapa(96, 4), ResNetEncoder(80, 32, [8, 8, 16, 16], [1, 1, 1, 1])],
                         ids=["ecapa", "resnet"])
def test_sparse_compute_matches_dense(encoder):
    from recipes.compression.sparse import to_sparse_compute
    torch.manual_seed(0)
    with torch.no_grad():
        for p in encoder.parameters():
            if p.dim() >= 2:
                p.mul_(torch.rand_like(p) > 0.8)
    encoder.eval()
    sparse, n = to_sparse_compute(encoder, min_sparsity=0.5)
    assert n > 5
    x = torch.randn(2, 50, 80)
    with torch.no_grad():
        assert torch.allclose(sparse(x), encoder(x), atol=1e-5)


# ---- end to end on the demo corpus -------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A demo teacher (1 epoch), as python train.py hparams/demo.yaml makes it."""
    d = tmp_path_factory.mktemp("compression")
    run("train.py", "hparams/demo.yaml", f"--output_folder={d}/teacher", f"--data_folder={d}/demo",
        "--number_of_epochs=1", *TINY)
    return d


def _common(d):
    return [f"--teacher_folder={d}/teacher", f"--data_folder={d}/demo", f"--manifest_folder={d}/teacher/manifests"]


@pytest.fixture(scope="module")
def kd_student(work):
    run("train.py", "hparams/demo_logit_kd.yaml", f"--output_folder={work}/kd", *_common(work),
        "--number_of_epochs=1", "--temperature=2", "--lam=0.5", *TINY)
    return work / "kd"


def test_logit_kd_end_to_end(kd_student):
    with open(kd_student / "train_log.txt") as f:
        log = f.read()
    assert "train loss_kd" in log
    assert_results_match_predictions(kd_student)


def _prune(work, name, tolerance):
    return run("prune.py", "hparams/demo_prune.yaml", f"--model_folder={work}/kd", f"--output_folder={work}/{name}",
               f"--manifest_folder={work}/teacher/manifests", "--max_rounds=2", f"--f1_tolerance={tolerance}",
               "--latency_batches=[1,2]", "--latency_seconds=1.0", "--latency_repeats=1", "--noprogressbar")


def test_prune_end_to_end_sparse_file_and_resume(work, kd_student):
    from recipes.compression.sparse import load_sparse_profiler
    from recipes.inference.model import ProfilerModel

    _prune(work, "pruned", tolerance=1.0)  # every round accepted
    out = work / "pruned"
    with open(out / "pruning_rounds.csv") as f:
        rounds = list(csv.DictReader(f))
    assert [r["round"] for r in rounds] == ["1", "2"] and all(r["accepted"] == "True" for r in rounds)
    assert [float(r["sparsity"]) for r in rounds] == pytest.approx([0.5, 0.6], abs=0.01)
    with open(out / "prune_summary.json") as f:
        s = json.load(f)
    assert s["final_round"] == 2 and s["nonzero_params"] < 0.5 * s["params"]
    assert s["sparse_file_bytes"] < s["dense_file_bytes"]
    assert s["max_abs_diff_reloaded"] < 1e-6 and s["max_abs_diff_sparse_compute"] < 1e-4
    assert set(s["latency_s"]["dense"]) == {"1", "2"} and (out / "pruning_layers.md").exists()
    # the folder loads like a core-recipe folder; its pruned weights are exactly zero
    dense = ProfilerModel.from_folder(str(out))
    masks = torch.load(next((out / "save").glob("CKPT+*")) / "pruning_masks.ckpt")["masks"]
    params = {**dict(dense.encoder.named_parameters(prefix="encoder")), **dict(dense.heads.named_parameters(prefix="heads"))}
    assert sum(int((~m).sum()) for m in masks.values()) == sum(int((params[n] == 0).sum()) for n in masks)
    sparse = load_sparse_profiler(str(out))  # the compressed file, back into a dense model
    wav = 0.1 * torch.randn(2, 8000)
    p_dense, p_sparse = dense(wav)[0], sparse(wav)[0]
    assert all(torch.allclose(p_dense[t], p_sparse[t], atol=1e-6) for t in p_dense)
    # running the same command again resumes: nothing left to prune
    log = _prune(work, "pruned", tolerance=1.0)
    assert "pruning round" not in log
    with open(out / "train_log.txt") as f:
        assert sum(line.startswith("epoch:") for line in f) == 2


def test_prune_stops_and_keeps_the_last_good_model(work, kd_student):
    _prune(work, "pruned_strict", tolerance=-2.0)  # no round can be accepted (F1 >= unpruned + 2)
    out = work / "pruned_strict"
    with open(out / "pruning_rounds.csv") as f:
        rounds = list(csv.DictReader(f))
    assert len(rounds) == 1 and rounds[0]["accepted"] == "False"  # stopped after round 1
    with open(out / "prune_summary.json") as f:
        s = json.load(f)
    assert s["final_round"] == 0 and s["stopped_at_round"] == 1
    assert s["nonzero_params"] > 0.95 * s["params"]  # the unpruned model, not the failed one
    assert len(list((out / "save").glob("CKPT+*"))) == 1


def test_prune_needs_a_trained_folder(tmp_path):
    res = subprocess.run([sys.executable, "prune.py", "hparams/demo_prune.yaml", f"--model_folder={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and f"{tmp_path}/inference.yaml not found" in res.stderr


def test_lcmr_end_to_end_extracts_a_core_recipe_student(work):
    from recipes.inference.model import ProfilerModel
    from recipes.inference.interface import SpeakerProfilerInterface

    run("train.py", "hparams/demo_lcmr.yaml", f"--output_folder={work}/lcmr", *_common(work),
        "--replacing_epochs=1", "--finetune_epochs=1", "--scheduler=linear", "--p0=0.5", *TINY)
    with open(work / "lcmr" / "train_log.txt") as f:
        rates = [float(line.split("train replacing_rate: ")[1].split(" ")[0].rstrip(","))
                 for line in f if line.startswith("epoch:")]
    assert len(rates) == 2 and 0.5 <= rates[0] < 1.0 and rates[1] == 1.0  # fine-tuning at p = 1
    student_dir = work / "lcmr" / "student"
    assert (student_dir / "results.json").exists()
    student = ProfilerModel.from_folder(str(student_dir))
    teacher = ProfilerModel.from_folder(str(work / "teacher"))
    assert student.encoder.n_params() < 0.8 * teacher.encoder.n_params()  # the student's architecture
    # the extracted student computes what the LCMR model evaluates (p = 1, student modules)
    lcmr_view = ProfilerModel.from_folder(str(work / "lcmr"))
    wav = 0.1 * torch.randn(2, 8000)
    a, b = student(wav)[0], lcmr_view(wav)[0]
    assert all(torch.equal(a[t], b[t]) for t in a)
    wav_file = sorted((work / "demo" / "wav").iterdir())[0]
    res = SpeakerProfilerInterface.from_folder(str(student_dir)).classify_file(str(wav_file))
    assert res["gender"]["label"] in ("f", "m") and res["age_sub"]["probs"][res["age_sub"]["label"]] > 0


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_lcmr_torchrun_two_ranks_draw_alike(work):
    # p = 0.1: ~40% of steps draw only frozen teacher modules (skipped); the ranks must draw
    # alike, else one skips its backward while the other waits for it in the all-reduce
    out = work / "lcmr_ddp"
    run("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "train.py", "hparams/demo_lcmr.yaml", f"--output_folder={out}", *_common(work), "--distributed_backend=gloo",
        "--find_unused_parameters", "--replacing_epochs=2", "--finetune_epochs=0", "--scheduler=constant",
        "--p0=0.1", "--batch_size=4", *TINY, timeout=600)
    with open(out / "train_log.txt") as f:
        assert sum(line.startswith("epoch:") for line in f) == 2
    assert (out / "student" / "results.json").exists()


def test_lcmr_step_without_any_student_module(work):
    # p = 0 with a frozen teacher (strategy 2): every step draws only teacher modules, so there
    # is no gradient; the step must be skipped, not crash the run
    out = work / "lcmr_p0"
    run("train.py", "hparams/demo_lcmr.yaml", f"--output_folder={out}", *_common(work),
        "--replacing_epochs=1", "--finetune_epochs=0", "--scheduler=constant", "--p0=0.0", *TINY)
    with open(out / "train_log.txt") as f:
        lines = [line for line in f if line.startswith("epoch:")]
    assert len(lines) == 1 and "train replacing_rate: 0.00e+00" in lines[0]
