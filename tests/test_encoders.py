import pytest
import torch

from recipes.encoders import EcapaEncoder, ResNetEncoder
from recipes.heads import ProfilingHeads

TINY = {
    EcapaEncoder: dict(channels=[32, 32, 32, 32, 96], res2net_scale=4, attention_channels=16,
                       se_channels=16, emb_dim=48),
    ResNetEncoder: dict(channels=[4, 4, 8, 8], block_sizes=[1, 1, 1, 1], emb_dim=48),
}


@pytest.mark.parametrize("cls", [EcapaEncoder, ResNetEncoder])
def test_interface_and_named_layers(cls, label_space):
    torch.manual_seed(0)
    enc = cls(**TINY[cls]).eval()
    feats, lens = torch.randn(3, 120, 80), torch.tensor([1.0, 0.7, 0.4])
    emb = enc(feats, lens)
    assert emb.shape == (3, 48) and enc.emb_dim == 48
    names = enc.layer_names()
    assert names[-2:] == ["pooling", "embedding"] and len(names) >= 5
    # every named layer is a real sub-module whose forward runs in the encoder's forward
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append(n)) for n, m in enc.named_layers().items()]
    enc(feats, lens)
    for h in hooks:
        h.remove()
    assert set(seen) == set(names)
    logits = ProfilingHeads(48, label_space, hidden_size=16).eval()(emb)
    assert {k: v.shape[1] for k, v in logits.items()} == {"gender": 2, "age_sup": 2, "age_sub": 4}


def test_resnet_pooling_ignores_padding():
    torch.manual_seed(0)
    enc = ResNetEncoder(**TINY[ResNetEncoder]).eval()
    frames = torch.randn(2, 8 * 10, 50)  # (batch, channels*freq, time)
    lens = torch.tensor([1.0, 0.5])
    noisy = frames.clone()
    noisy[1, :, 25:] = 1e3 * torch.randn(8 * 10, 25)  # garbage in the padded region
    a, b = enc.pool(frames, lens), enc.pool(noisy, lens)
    assert torch.allclose(a, b, atol=1e-5)
    # SpeechBrain's unmasked pooling would be changed by the padding
    c = enc.pool(noisy, None)
    assert not torch.allclose(a[1], c[1], atol=1e-3)


def test_swap_encoder_by_include():
    """The encoder is one key: --model=!include:encoders/<name>.yaml (a YAML override)."""
    from recipes.config.recipe_yaml import load_recipe
    assert not isinstance(load_recipe("hparams/demo.yaml")["encoder"], ResNetEncoder)
    hp = load_recipe("hparams/demo.yaml", "model: !include:encoders/resnet_tiny.yaml\n")
    assert isinstance(hp["encoder"], ResNetEncoder)
    assert hp["heads"].heads["gender"].hidden[0].in_features == hp["encoder"].emb_dim
