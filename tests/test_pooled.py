"""Pooled corpora under one label space: missing labels (-1) add no loss, no gradient and
no score; two manifests make one dataset per split."""

import csv
import os

import pytest
import torch

from conftest import ROOT
from recipes.data.manifest import ManifestError, validate_manifest
from recipes.data.pipelines import MISSING, label_tensors, make_dataset
from recipes.evaluation.metrics import PredictionCollector, compute_results
from recipes.losses import ProfilingObjective, asymmetric_loss, cross_entropy, dependency_loss

COLS = ["ID", "wav", "duration", "spk_id", "gender", "age", "age_group"]


def logits_and_targets(label_space, n=6):
    torch.manual_seed(0)
    logits = {"gender": torch.randn(n, 2), "age_sup": torch.randn(n, 2), "age_sub": torch.randn(n, 4)}
    logits = {t: v.requires_grad_() for t, v in logits.items()}
    sub = torch.tensor([0, 1, 2, 3, 0, 2])[:n]
    targets = {"gender": torch.randint(0, 2, (n,)), "age_sub": sub, "age_sup": label_space.parent_index()[sub]}
    return logits, targets


@pytest.mark.parametrize("hierarchical", [False, True])
def test_missing_label_has_no_loss_and_no_gradient(label_space, hierarchical):
    logits, targets = logits_and_targets(label_space)
    targets["gender"][0] = MISSING  # utterance 0: a corpus without gender
    for t in ("age_sup", "age_sub"):
        targets[t][1] = MISSING  # utterance 1: a corpus without age
    objective = ProfilingObjective(label_space, hierarchical=hierarchical, gamma_pos=1.0)
    total, terms = objective(logits, targets)
    total.backward()
    assert torch.isfinite(total)
    assert logits["gender"].grad[0].abs().sum() == 0 and logits["gender"].grad[1:].abs().sum() > 0
    for t in ("age_sup", "age_sub"):
        assert logits[t].grad[1].abs().sum() == 0 and logits[t].grad[0].abs().sum() > 0
    # the same as the loss of the labelled utterances alone
    keep = torch.arange(6) != 0
    assert torch.allclose(terms["gender"], cross_entropy(logits["gender"][keep], targets["gender"][keep], 0.1))
    keep = torch.arange(6) != 1
    if hierarchical:
        assert torch.allclose(terms["age_sub"], asymmetric_loss(logits["age_sub"][keep], targets["age_sub"][keep],
                                                                gamma_pos=1.0))
        dep = dependency_loss(logits["age_sub"][keep], logits["age_sup"][keep], targets["age_sub"][keep],
                              targets["age_sup"][keep], label_space.parent_index())
        assert torch.allclose(terms["dependency"], dep)


def test_batch_without_any_label_of_a_head_is_zero(label_space):
    logits, targets = logits_and_targets(label_space)
    targets["gender"][:] = MISSING
    total, terms = ProfilingObjective(label_space)(logits, targets)
    total.backward()
    assert terms["gender"].item() == 0.0 and torch.isfinite(total)
    assert logits["gender"].grad.abs().sum() == 0


def test_label_tensors_mark_missing_labels(label_space):
    g, sup, sub = label_tensors(label_space, "", "", "", "u1")
    assert (int(g), int(sup), int(sub)) == (MISSING, MISSING, MISSING)
    g, sup, sub = label_tensors(label_space, "f", "", "teen", "u2")
    assert (int(g), int(sup), int(sub)) == (0, 0, 1)
    g, _, sub = label_tensors(label_space, None, "50", None, "u3", label_noise_rate=1.0)
    assert int(g) == MISSING and int(sub) in (2, 3)


def test_metrics_skip_missing_labels_and_report_mace(label_space):
    col = PredictionCollector()
    eye = lambda idx, n: torch.nn.functional.one_hot(torch.tensor(idx), n).float()  # noqa: E731
    col.append(["a", "b", "c", "d"], {"gender": eye([0, 1, 1, 0], 2), "age_sup": eye([0, 1, 1, 0], 2),
                                      "age_sub": eye([0, 3, 2, 1], 4)},
               {"gender": torch.tensor([0, MISSING, 1, 1]), "age_sup": torch.tensor([0, 0, 1, MISSING]),
                "age_sub": torch.tensor([0, 1, 3, MISSING])})
    res = compute_results(col, label_space)
    assert res["gender"]["n_labelled"] == 3 and res["gender"]["accuracy"] == pytest.approx(2 / 3)
    assert res["age_sub"]["mace"] == pytest.approx((0 + 2 + 1) / 3)
    assert res["age_sup"]["mace"] == pytest.approx(1 / 3)
    assert "mace" not in res["gender"]


def write_corpus(folder, name, gender=True, age=True):
    """A tiny prepared corpus: train/valid/test manifests (empty audio files: not read)."""
    folder.mkdir()
    cols = [c for c in COLS if (gender or c != "gender") and (age or c not in ("age", "age_group"))]
    for s, split in enumerate(("train", "valid", "test")):
        rows = []
        for i in range(4):
            wav = folder / f"{split}{i}.wav"
            wav.touch()
            rows.append({"ID": f"{name}_{split}{i}", "wav": str(wav), "duration": "1.0", "spk_id": f"s{s}{i}",
                         "gender": "mf"[i % 2], "age": str(10 + 15 * i), "age_group": ""})
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return folder


def test_pooled_datasets_from_two_manifests(tmp_path, label_space):
    from recipes.data.datasets import build_datasets

    a = write_corpus(tmp_path / "a", "a")
    b = write_corpus(tmp_path / "b", "b", gender=False)  # a corpus without gender labels
    objective = ProfilingObjective(label_space, class_weighting="inverse")
    from conftest import data_block

    hp = data_block(manifest_folder=str(a), pooled_manifest_folders=[str(b)], missing_labels="mask",
                    label_space=label_space, sample_rate=8000, crop_seconds=1.0, objective=objective, seed=1234)
    data = build_datasets(hp)
    assert all(len(data[s]) == 8 for s in ("train", "valid", "test"))
    data["train"].set_output_keys(["id", "gender_idx", "age_sub_idx"])
    items = {x["id"]: x for x in data["train"]}
    assert int(items["a_train1"]["gender_idx"]) == 0 and int(items["b_train1"]["gender_idx"]) == MISSING
    assert int(items["b_train3"]["age_sub_idx"]) == 3  # ages in years mapped by the recipe's bins
    # class weights from the pooled train counts: corpus b adds age labels but no gender
    assert objective.class_weights["gender"].tolist() == [1.0, 1.0]
    assert objective.class_weights["age_sub"] is not None
    # without mask, a corpus without gender is refused, naming the file
    with pytest.raises(ManifestError, match="gender"):
        build_datasets(dict(hp, missing_labels="error"))
    # one corpus: unchanged behaviour
    assert len(build_datasets(dict(hp, pooled_manifest_folders=[]))["train"]) == 4


def test_pooled_ids_must_be_distinct(tmp_path, label_space):
    a = write_corpus(tmp_path / "a", "x")
    b = write_corpus(tmp_path / "b", "x")
    with pytest.raises(ValueError, match="distinct IDs"):
        make_dataset([str(a / "train.csv"), str(b / "train.csv")], label_space, 8000)


def test_validate_manifest_missing_labels(tmp_path, label_space):
    path = tmp_path / "m.csv"
    wav = tmp_path / "x.wav"
    wav.touch()
    rows = [["u1", wav, 1.0, "s1", "", "30", ""], ["u2", wav, 1.0, "s2", "f", "", ""],
            ["u3", wav, 1.0, "s3", "m", "", "teen"]]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([COLS] + rows)
    with pytest.raises(ManifestError, match="row 2"):
        validate_manifest(str(path), label_space)
    assert len(validate_manifest(str(path), label_space, missing_labels="mask")) == 3
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(["u4", wav, 1.0, "s4", "x", "30", ""])  # given but wrong: still an error
    with pytest.raises(ManifestError, match="row 5.*unknown gender"):
        validate_manifest(str(path), label_space, missing_labels="mask")


def test_pooled_balanced_weighted_training_end_to_end(tmp_path):
    """train.py on two pooled corpora (the second without gender), with the class-balanced
    sampler and class-weighted losses: runs, and scores gender on the labelled rows only."""
    import json

    from conftest import run_train
    from local.make_demo_corpus import prepare_demo

    a, b = tmp_path / "a", tmp_path / "b"
    prepare_demo(str(tmp_path / "demo"), str(a), speakers_per_cell=3, utts_per_speaker=3, seed=1234,
                 min_duration=1.0, max_duration=20.0)
    b.mkdir()
    n_test = {}
    for split in ("train", "valid", "test"):
        with open(a / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        n_test[split] = len(rows)
        cols = [c for c in rows[0] if c != "gender"]
        with open(b / f"{split}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(dict(r, ID="b_" + r["ID"], spk_id="b_" + r["spk_id"]) for r in rows)
    out = tmp_path / "out"
    log = run_train(out, tmp_path / "demo", "--number_of_epochs=1", f"--manifest_folder={a}",
                    f"--pooled_manifest_folders=[{b}]", "--missing_labels=mask",
                    "--balance_sampling_by=[gender,age_sub]", "--class_weighting=inverse")
    res = json.loads((out / "results.json").read_text())["test"]
    assert res["gender"]["n_labelled"] == n_test["test"]  # corpus b has no gender: not scored
    assert res["age_sub"]["n_labelled"] == 2 * n_test["test"] and "mace" in res["age_sub"]
    assert "age_sub_mace" in (out / "train_log.txt").read_text(), log[-2000:]


def test_pooled_groups_map_onto_the_decade_label_space():
    """A pooled model (child / teen / decades) is scored in the Common Voice decade space: each
    sub-group goes to the group holding the middle of its bin."""
    from recipes.config.recipe_yaml import load_recipe

    pooled = load_recipe(os.path.join(ROOT, "hparams", "labels", "pooled_child_adult.yaml"))["label_space"]
    decades = load_recipe(os.path.join(ROOT, "hparams", "labels", "commonvoice_decades.yaml"))["label_space"]
    mapped = [decades.age_sub[i] for i in pooled.sub_map_to(decades)]
    assert mapped == ["teens", "teens", "20s", "30s", "40s", "50s", "60+"]
    assert decades.sub_map_to(decades) == list(range(decades.n_sub))
    sub = torch.tensor([pooled.age_sub.index(g) for g in ("child", "teen", "30s", "60+")])
    gender, sup, mapped = pooled.to_space(decades, torch.tensor([1, 0, 1, 0]), sub)
    assert [decades.age_sub[i] for i in mapped] == ["teens", "teens", "30s", "60+"]
    assert [decades.age_sup[i] for i in sup] == ["young", "young", "middle", "senior"]
    assert [decades.genders[i] for i in gender] == [pooled.genders[i] for i in (1, 0, 1, 0)]
