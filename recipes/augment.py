"""Temporal-frequency mixup of paper 004, Eq. 1.

x_mixup[i] = lambda * x[i] + (1 - lambda) * (1/T) * sum_{j=i-T/2}^{i+T/2} x_specaug[j]

x_specaug is a SpecAugment view of the same features (SpeechBrain's SpectrogramDrop in
time and frequency, and time Warping). The window mean is a 1-D average pooling over time
that only counts valid (non-padded) frames, so it respects utterance lengths.
"""

import torch
from speechbrain.dataio.dataio import length_to_mask


def windowed_mean(x, lengths=None, window=5):
    """Mean of x (batch, time, feat) over [i - T//2, i + T//2], valid frames only.

    Vectorised with a cumulative sum over time (O(time), no Python loop)."""
    b, t, _ = x.shape
    if lengths is None:
        mask = torch.ones(b, t, 1, device=x.device, dtype=x.dtype)
    else:
        mask = length_to_mask(lengths * t, max_len=t, device=x.device).to(x.dtype).unsqueeze(-1)
    half = window // 2
    zeros = torch.zeros(b, 1, x.shape[2] + 1, device=x.device, dtype=x.dtype)
    cs = torch.cat([zeros, torch.cumsum(torch.cat([x * mask, mask], dim=2), dim=1)], dim=1)
    idx = torch.arange(t, device=x.device)
    hi, lo = (idx + half + 1).clamp(max=t), (idx - half).clamp(min=0)
    win = cs[:, hi] - cs[:, lo]  # (batch, time, feat + 1): window sums and valid-frame counts
    return win[..., :-1] / win[..., -1:].clamp(min=1e-8) * mask


def temporal_frequency_mixup(x, x_specaug, lengths=None, lam=0.7, window=5):
    """Paper 004 Eq. 1 (vectorised; padded frames stay zero)."""
    return lam * x + (1.0 - lam) * windowed_mean(x_specaug, lengths, window)


class MixupView(torch.nn.Module):
    """Makes the student's mixup input from clean features (Eq. 1).

    Arguments
    ---------
    specaug : list of modules (batch, time, feat) -> same shape, applied in order
        e.g. [SpectrogramDrop(dim=1), SpectrogramDrop(dim=2), Warping()].
    lam : float
        Mixup ratio lambda (paper: 0.7).
    window : int
        Mixup window T in frames.
    """

    def __init__(self, specaug, lam=0.7, window=5):
        super().__init__()
        self.specaug = torch.nn.ModuleList(specaug)
        self.lam, self.window = lam, window

    def forward(self, feats, lengths=None):
        aug = feats
        for m in self.specaug:
            aug = m(aug)
        return temporal_frequency_mixup(feats, aug, lengths, self.lam, self.window)
