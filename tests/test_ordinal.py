"""Ordered age groups (recipes/ordinal.py): label-distribution targets and loss, posterior-median
decoding, and the options through a trained demo folder into inference."""

import os
import shutil

import pytest
import torch

from conftest import ROOT, run_train
from recipes.evaluation.metrics import PredictionCollector
from recipes.heads import ProfilingHeads
from recipes.inference.interface import consistent_age_pair
from recipes.losses import ProfilingObjective
from recipes.ordinal import MISSING, decode, decode_logits, ldl_loss, ldl_targets, posterior_median


def test_ldl_targets_are_distributions_centred_on_the_true_bin():
    q = ldl_targets(torch.tensor([0, 2, 5, MISSING]), 6, sigma=1.0)
    assert q.shape == (4, 6)
    assert torch.allclose(q[:3].sum(dim=1), torch.ones(3))
    assert torch.equal(q[3], torch.zeros(6))  # no label: no target
    assert q.argmax(dim=1)[:3].tolist() == [0, 2, 5]
    assert q[1, 1:4].sum() > 0.85  # the true decade and its two neighbours hold most of the mass
    assert torch.isclose(q[1, 1], q[1, 3]) and q[1, 1] > q[1, 0] > q[1, 5]  # symmetric, falling off
    narrow = ldl_targets(torch.tensor([2]), 6, sigma=0.3)
    assert narrow[0, 2] > 0.99  # a small sigma is (almost) the one-hot target
    with pytest.raises(ValueError, match="ldl_sigma"):
        ldl_targets(torch.tensor([1]), 6, sigma=0.0)


def test_ldl_loss_prefers_a_neighbouring_bin_to_a_far_one():
    target = torch.tensor([2])
    near = torch.full((1, 6), -4.0)
    near[0, 3] = 4.0  # confident in the next decade
    far = torch.full((1, 6), -4.0)
    far[0, 5] = 4.0  # confident three decades off
    assert ldl_loss(near, target) < ldl_loss(far, target)
    # plain cross-entropy cannot tell the two apart
    ce = torch.nn.functional.cross_entropy
    assert torch.isclose(ce(near, target), ce(far, target))
    # a missing label adds nothing, and the loss is still differentiable
    logits = torch.zeros(2, 6, requires_grad=True)
    ldl_loss(logits, torch.tensor([MISSING, MISSING])).backward()
    assert torch.equal(logits.grad, torch.zeros(2, 6))


def test_posterior_median_on_handmade_distributions():
    p = torch.tensor([[0.3, 0.3, 0.0, 0.4],    # argmax 3, median 1 (cdf 0.3, 0.6)
                      [0.1, 0.1, 0.7, 0.1],    # both 2
                      [0.0, 0.0, 0.0, 1.0],    # both 3
                      [0.5, 0.0, 0.0, 0.5]])   # cdf reaches 0.5 at 0: the smallest such k
    assert posterior_median(p).tolist() == [1, 2, 3, 0]
    assert decode(p, "argmax").tolist()[:3] == [3, 2, 3]
    assert decode(p * 7.0, "median").tolist() == [1, 2, 3, 0]  # unnormalised scores too
    assert decode_logits(p.clamp(min=1e-9).log(), "median").tolist() == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="age_sub_decode.*'mean'"):
        decode(p, "mean")


def test_consistent_pair_and_collector_decode_by_the_median():
    parent = torch.tensor([0, 0, 1, 1])
    p_sup = torch.tensor([0.5, 0.5])
    p_sub = torch.tensor([0.3, 0.3, 0.0, 0.4])
    assert consistent_age_pair(p_sup, p_sub, parent) == (1, 3)
    assert consistent_age_pair(p_sup, p_sub, parent, "median") == (0, 1)
    logits = {"gender": torch.tensor([[2.0, 0.0]]), "age_sup": torch.tensor([[0.0, 1.0]]),
              "age_sub": p_sub.log().unsqueeze(0)}
    targets = {t: torch.tensor([0]) for t in logits}
    for how, expected in (("argmax", 3), ("median", 1)):
        col = PredictionCollector({"age_sub": how})
        col.append(["u1"], logits, targets)
        pred, _ = col.arrays()
        assert pred["age_sub"].tolist() == [expected] and pred["gender"].tolist() == [0]


def test_objective_adds_the_ldl_term_and_rejects_unknown_options(label_space):
    logits = {t: torch.randn(4, n) for t, n in (("gender", 2), ("age_sup", 2), ("age_sub", 4))}
    targets = {"gender": torch.tensor([0, 1, 0, 1]), "age_sup": torch.tensor([0, 0, 1, 1]),
               "age_sub": torch.tensor([0, 1, 2, 3])}
    plain_total, plain = ProfilingObjective(label_space)(logits, targets)
    total, terms = ProfilingObjective(label_space, age_sub_ordinal="ldl", ldl_weight=0.5)(logits, targets)
    assert "ldl" not in plain and "ldl" in terms
    assert torch.isclose(terms["age_sub"], plain["age_sub"])  # the hard-label (ASL) term is unchanged
    assert torch.isclose(total, plain_total + 0.5 * terms["ldl"])
    with pytest.raises(ValueError, match="age_sub_ordinal.*'corn'.*none, ldl"):
        ProfilingObjective(label_space, age_sub_ordinal="corn")
    with pytest.raises(ValueError, match="ldl_sigma"):
        ProfilingObjective(label_space, age_sub_ordinal="ldl", ldl_sigma=-1)
    with pytest.raises(ValueError, match="age_sub_decode"):
        ProfilingHeads(8, label_space, age_sub_decode="mode")
    assert ProfilingHeads(8, label_space).decode["age_sub"] == "argmax"  # the default (older folders)


def test_options_round_trip_through_a_trained_demo_folder(tmp_path):
    from recipes.inference.interface import SpeakerProfilerInterface
    from recipes.model_folder import INFERENCE_YAML

    out = tmp_path / "out"
    log = run_train(out, tmp_path / "demo", "--number_of_epochs=1", "--age_sub_ordinal=ldl",
                    "--age_sub_decode=median")
    assert "loss_ldl" in (out / "train_log.txt").read_text(), log[-2000:]
    assert "age_sub_decode: median" in (out / INFERENCE_YAML).read_text()
    prof = SpeakerProfilerInterface.from_folder(str(out))
    assert prof.model.heads.decode["age_sub"] == "median"
    n_sub = len(prof.class_names["age_sub"])
    p_sub = torch.zeros(n_sub)
    p_sub[0], p_sub[1], p_sub[-1] = 0.3, 0.3, 0.4  # argmax: the last group; median: the second
    parent = prof.parent
    p_sup = torch.zeros(len(prof.class_names["age_sup"]))
    p_sup[parent[1]] = p_sup[parent[-1]] = 0.5
    probs = {"gender": torch.tensor([0.6, 0.4]), "age_sup": p_sup / p_sup.sum(), "age_sub": p_sub}
    res = prof._result(probs, torch.zeros(4), 1, 1)
    assert res["age_sub_raw"] == prof.class_names["age_sub"][1]
    assert res["age_sub"]["label"] == prof.class_names["age_sub"][1]
    # the same folder, its decoding option removed (as written before it existed): argmax
    text = (out / INFERENCE_YAML).read_text().replace("age_sub_decode: median", "")
    (out / INFERENCE_YAML).write_text(text)
    shutil.rmtree(out / "pretrained")  # rebuilt from inference.yaml
    old = SpeakerProfilerInterface.from_folder(str(out))
    assert old.model.heads.decode["age_sub"] == "argmax"
    assert old._result(probs, torch.zeros(4), 1, 1)["age_sub_raw"] == old.class_names["age_sub"][-1]


def test_an_unknown_option_value_stops_train_py_with_its_name(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={tmp_path / 'o'}",
                          f"--data_folder={tmp_path / 'd'}", "--age_sub_ordinal=corn", "--noprogressbar"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode != 0
    assert "age_sub_ordinal: unknown value 'corn' (use one of none, ldl)" in res.stdout + res.stderr
