"""The pooled multi-condition teacher recipe: its channel degrades a share of the utterances,
and one preparation step prepares every pooled corpus."""

import torch

from recipes.data.channel import TelephoneChannel
from recipes.config.recipe_yaml import load_checked


def test_multi_condition_channel_degrades_a_share_and_the_same_way():
    wav = torch.randn(8000) * 0.1
    always = TelephoneChannel(8000, seed=3)
    half = TelephoneChannel(8000, seed=3, apply_prob=0.5)
    outs = {f"utt{i}": half(wav, f"utt{i}") for i in range(200)}
    clean = [u for u, x in outs.items() if torch.equal(x, wav)]
    assert 70 < len(clean) < 130  # about half pass clean
    for uid, x in outs.items():
        if uid not in clean:  # a degraded utterance is exactly what apply_prob = 1 gives
            assert torch.equal(x, always(wav, uid))
    assert all(torch.equal(half(wav, u), outs[u]) for u in list(outs)[:20])  # the same every epoch


def test_prepare_all_runs_every_preparation():
    from local.prepare_pooled import prepare_all

    calls = []
    assert prepare_all([lambda: calls.append("a") or "a", lambda: calls.append("b") or "b"]) == ["a", "b"]
    assert calls == ["a", "b"]


def test_pooled_teacher_and_commonvoice_student_recipes():
    hp = load_checked("hparams/pooled/train.yaml", {"data_folder": "cv", "speechocean_folder": "so"})
    assert hp["pooled_manifest_folders"] == [hp["output_folder"] + "/manifests_speechocean762"]
    assert hp["train_channel"].apply_prob == 0.5 and hp["test_channel"] is None  # clean test
    assert len(hp["prepare_data"].keywords["preparations"]) == 2
    student = load_checked("hparams/commonvoice/mkd.yaml", {"data_folder": "cv", "mkd": False})
    assert student["teacher_folder"] == hp["output_folder"]  # the student finds the pooled teacher
    assert student["test_channel"] is not None and student["label_noise_rate"] == 0.1
