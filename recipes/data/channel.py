"""Reproducible telephone-channel simulation (the student's degraded domain of mixup KD).

Each utterance is degraded with a generator seeded from (seed, utterance id), so every
run, epoch and worker sees exactly the same degraded audio:
band limit (biquad high-pass + low-pass, ~300-3400 Hz), G.711 mu-law (8-bit companding),
additive coloured noise at a random SNR, optional packet loss (zeroed 20 ms frames).
With ``apply_prob`` < 1 only that share of the utterances (drawn per utterance) is degraded,
the others pass clean: multi-condition training of a teacher for the telephone domain.
"""

import zlib

import torch
import torchaudio.functional as AF


def utterance_generator(seed, uid):
    """A torch.Generator seeded from the run seed and the utterance id (stable across runs)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1000003 + zlib.crc32(str(uid).encode())) % (2 ** 63))
    return g


class TelephoneChannel:
    """Callable ``(wav, uid) -> degraded wav`` at ``sample_rate``."""

    def __init__(self, sample_rate=8000, low_hz=300.0, high_hz=3400.0, mu_law=True,
                 snr_low=5.0, snr_high=25.0, noise_prob=1.0, packet_loss=0.0, frame_ms=20.0, seed=0,
                 apply_prob=1.0):
        self.sr = sample_rate
        self.low_hz, self.high_hz = low_hz, min(high_hz, 0.45 * sample_rate)
        self.mu_law = mu_law
        self.snr_low, self.snr_high, self.noise_prob = snr_low, snr_high, noise_prob
        self.packet_loss, self.frame = packet_loss, int(sample_rate * frame_ms / 1000)
        self.seed, self.apply_prob = seed, apply_prob

    def __call__(self, wav, uid):
        if self.apply_prob < 1.0:  # its own draw: the degradation of a kept utterance is unchanged
            if torch.rand(1, generator=utterance_generator(self.seed + 7919, uid)).item() >= self.apply_prob:
                return wav
        g = utterance_generator(self.seed, uid)
        x = AF.highpass_biquad(wav, self.sr, self.low_hz)
        x = AF.lowpass_biquad(x, self.sr, self.high_hz)
        if torch.rand(1, generator=g).item() < self.noise_prob:
            snr = self.snr_low + (self.snr_high - self.snr_low) * torch.rand(1, generator=g).item()
            noise = torch.randn(x.shape, generator=g)
            tilt = torch.rand(1, generator=g).item()  # white -> low-pass coloured noise
            noise = (1 - tilt) * noise + tilt * torch.cumsum(noise, 0) / (noise.numel() ** 0.5)
            noise = noise - noise.mean()
            p_sig = x.pow(2).mean().clamp(min=1e-10)
            p_noise = noise.pow(2).mean().clamp(min=1e-10)
            x = x + noise * torch.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
        if self.mu_law:  # G.711 mu-law: 256 levels, companded
            peak = x.abs().max().clamp(min=1e-8)
            q = AF.mu_law_encoding((x / peak).clamp(-1, 1), 256)
            x = AF.mu_law_decoding(q, 256) * peak
        if self.packet_loss > 0 and x.numel() >= self.frame:
            n = x.numel() // self.frame
            drop = torch.rand(n, generator=g) < self.packet_loss
            keep = (~drop).repeat_interleave(self.frame)
            x = x.clone()
            x[: keep.numel()] = x[: keep.numel()] * keep
        return x.float()
