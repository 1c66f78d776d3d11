import numpy as np
import pytest
import torch

from recipes.probing.extract import extract, pool_frames
from recipes.probing.neurons import layer_distribution, masking_test, rank_neurons, top_neurons
from recipes.probing.probes import ElasticNetProbe, shuffled_labels
from recipes.probing.verification import eer, make_trials


def test_algorithm1_on_hand_made_weights():
    w = np.array([[0.5, 0.3, 0.1, 0.1, 0.0],
                  [0.0, -0.1, 0.0, 0.2, -0.7]])
    # class 0: neuron 0 holds 50% of the mass; class 1: neuron 4 holds 70%
    assert top_neurons(w, 0.5).tolist() == [0, 4]
    # 80%: class 0 needs {0, 1}, class 1 needs {4, 3}
    assert top_neurons(w, 0.8).tolist() == [0, 1, 3, 4]
    assert rank_neurons(w).tolist() == [4, 0, 1, 3, 2]


def test_masking_zeroes_exactly_the_unselected_neurons():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 2] > 0).astype(int)
    probe = ElasticNetProbe(epochs=30, seed=0).fit(x, y)
    seen = {}
    orig = torch.Tensor.__matmul__

    def spy(a, b):
        seen["x"] = a.clone()
        return orig(a, b)
    torch.Tensor.__matmul__ = spy
    try:
        probe.predict(x[:5], keep=[1, 2])
    finally:
        torch.Tensor.__matmul__ = orig
    z = seen["x"]
    assert torch.all(z[:, [0, 3, 4, 5]] == 0)
    assert torch.all(z[:, [1, 2]] != 0)
    # the informative neuron alone keeps the accuracy; without it the probe fails
    res = masking_test(probe, x, y, np.array([2, 0, 1, 3, 4, 5]), frac=1 / 6)
    assert res["top"] > 0.9 and res["bottom"] < 0.75


def test_probe_learns_and_control_task_does_not():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 20))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    acc = ElasticNetProbe(seed=0).fit(x[:300], y[:300]).score(x[300:], y[300:])["accuracy"]
    ctrl = ElasticNetProbe(seed=0).fit(x[:300], shuffled_labels(y[:300], 0)).score(x[300:], y[300:])["accuracy"]
    assert acc > 0.8 and acc - ctrl > 0.2
    assert sorted(shuffled_labels(y, 3)) == sorted(y)


def test_eer_of_perfectly_separated_scores_is_zero():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    trials = np.array([[0, 1, 1], [2, 3, 1], [0, 2, 0], [1, 3, 0], [0, 3, 0]])
    assert eer(x, trials) == 0.0
    spk = ["a", "a", "b", "b", "c", "c"]
    gen = ["f", "f", "f", "f", "m", "m"]
    t = make_trials(spk, gen, 40, seed=0)
    assert (t[:, 2] == 1).sum() == 20
    for i, j, tgt in t:
        assert (spk[i] == spk[j]) == bool(tgt) and gen[i] == gen[j] and i != j


def test_layer_distribution():
    d = layer_distribution([0, 1, 5], {"a": (0, 4), "b": (4, 8)})
    assert d["a"]["count"] == 2 and d["b"]["count"] == 1
    assert d["a"]["percent_of_layer"] == 50.0


def test_pooling_ignores_padding():
    out = torch.randn(2, 3, 10)
    lens = torch.tensor([1.0, 0.5])
    noisy = out.clone()
    noisy[1, :, 5:] = 1e3
    assert torch.allclose(pool_frames(out, lens, "meanstd"), pool_frames(noisy, lens, "meanstd"))
    assert pool_frames(out, lens, "meanstd").shape == (2, 6)
    assert pool_frames(torch.randn(2, 4, 10, 5), lens).shape == (2, 4)  # ResNet (B, C, T, F)


@pytest.mark.parametrize("encoder", ["ecapa_tiny", "resnet_tiny"])
def test_hooks_give_one_vector_per_named_layer(encoder, label_space):
    from hyperpyyaml import load_hyperpyyaml

    from recipes.heads import ProfilingHeads
    from recipes.inference.model import ProfilerModel
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    with open(f"hparams/encoders/{encoder}.yaml") as f:
        enc = load_hyperpyyaml(f)["encoder"]
    model = ProfilerModel({"sample_rate": 8000, "compute_features": Fbank(sample_rate=8000, n_mels=80),
                           "mean_var_norm": InputNormalization(norm_type="sentence"), "encoder": enc,
                           "heads": ProfilingHeads(enc.emb_dim, label_space, hidden_size=16),
                           "label_space": label_space})
    wavs = torch.randn(3, 8000)
    ids, feats = extract(model, [(["a", "b", "c"], wavs, torch.tensor([1.0, 0.8, 0.5]))], "meanstd")
    assert ids == ["a", "b", "c"]
    assert list(feats)[: len(enc.layer_names())] == enc.layer_names()
    assert {"head_gender", "head_age_sup", "head_age_sub"} <= set(feats)
    for name, x in feats.items():
        assert x.shape[0] == 3 and x.ndim == 2 and np.isfinite(x).all(), name
    assert feats["embedding"].shape[1] == enc.emb_dim
    assert feats["head_gender"].shape[1] == 16
