import torch

from recipes.augment import MixupView, temporal_frequency_mixup, windowed_mean
from recipes.data.channel import TelephoneChannel
from recipes.data.pipelines import neighbour_flip


def test_eq1_lambda_one_returns_x():
    x, aug = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    assert torch.equal(temporal_frequency_mixup(x, aug, None, lam=1.0, window=3), x)


def test_eq1_constant_specaug_gives_expected_blend():
    x = torch.randn(1, 8, 3)
    aug = torch.full((1, 8, 3), 2.0)
    out = temporal_frequency_mixup(x, aug, None, lam=0.7, window=5)
    assert torch.allclose(out, 0.7 * x + 0.3 * 2.0, atol=1e-6)


def test_eq1_window_mean_by_hand_and_lengths():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).view(1, 6, 1)
    # T = 3: mean of x[i-1 .. i+1] over existing frames
    assert torch.allclose(windowed_mean(x, None, 3).view(-1), torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 4.5]))
    # only the first 4 frames are valid: padded frames are neither averaged nor output
    got = windowed_mean(x, torch.tensor([4 / 6]), 3).view(-1)
    assert torch.allclose(got, torch.tensor([0.5, 1.0, 2.0, 2.5, 0.0, 0.0]))
    lam = 0.7
    mixed = temporal_frequency_mixup(x, x, torch.tensor([4 / 6]), lam, 3).view(-1)
    assert torch.allclose(mixed[:4], lam * x.view(-1)[:4] + (1 - lam) * got[:4])


def test_mixup_view_changes_input_but_keeps_shape():
    from speechbrain.augment.freq_domain import SpectrogramDrop
    torch.manual_seed(0)
    view = MixupView([SpectrogramDrop(dim=1), SpectrogramDrop(dim=2)], lam=0.7, window=5)
    x = torch.randn(2, 50, 20)
    y = view(x, torch.tensor([1.0, 0.6]))
    assert y.shape == x.shape and not torch.allclose(x, y)


def test_channel_is_reproducible_per_utterance():
    ch = TelephoneChannel(sample_rate=8000, packet_loss=0.05, seed=3)
    wav = 0.1 * torch.randn(8000)
    a, b, c = ch(wav, "utt1"), ch(wav, "utt1"), ch(wav, "utt2")
    assert torch.equal(a, b) and not torch.equal(a, c)
    # band limit: little energy left below 300 Hz
    spec = torch.fft.rfft(TelephoneChannel(mu_law=False, noise_prob=0.0)(wav, "u"))
    freqs = torch.fft.rfftfreq(8000, 1 / 8000)
    low = spec[freqs < 150].abs().pow(2).mean()
    mid = spec[(freqs > 800) & (freqs < 2000)].abs().pow(2).mean()
    assert low < 0.1 * mid


def test_label_noise_flips_to_neighbours_at_the_rate():
    flips = [neighbour_flip(1, f"u{i}", 0.2, 0, 4) for i in range(2000)]
    changed = [f for f in flips if f != 1]
    assert set(changed) <= {0, 2}
    assert 0.15 < len(changed) / len(flips) < 0.25
    assert flips == [neighbour_flip(1, f"u{i}", 0.2, 0, 4) for i in range(2000)]
