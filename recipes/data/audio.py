"""Audio reading: soundfile, downmix to mono, resample to the recipe's sample rate."""

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, empty, silent)."""


def audio_info(path):
    """(duration_seconds, sample_rate, channels) of a file, or AudioError."""
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types
        raise AudioError(f"cannot read audio {path}: {err}") from None
    return info.frames / float(info.samplerate), info.samplerate, info.channels


def load_audio(path, sample_rate, start_s=None, dur_s=None):
    """Float32 mono tensor at ``sample_rate``; optionally a segment [start_s, start_s+dur_s)."""
    try:
        with sf.SoundFile(path) as f:
            native = f.samplerate
            if start_s is not None:
                f.seek(int(start_s * native))
            frames = -1 if dur_s is None else int(round(dur_s * native))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"cannot read audio {path}: {err}") from None
    if data.size == 0:
        raise AudioError(f"empty audio {path}")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # downmix
    if native != sample_rate:
        wav = AF.resample(wav, native, sample_rate)
    return wav


def check_signal(wav, path, silence_threshold=1e-4):
    """Raise AudioError for a non-finite, empty or all-silent signal."""
    if wav.numel() == 0:
        raise AudioError(f"empty audio {path}")
    if not torch.isfinite(wav).all():
        raise AudioError(f"non-finite samples in {path}")
    if wav.abs().max() < silence_threshold:
        raise AudioError(f"all-silent audio {path} (peak {float(wav.abs().max()):.2e})")
