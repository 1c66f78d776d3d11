"""A call read in blocks: never the whole file at once (a 60-minute call stays in bounded
memory). Every format soundfile reads (WAV with PCM, G.711 mu-law / A-law, FLAC, Ogg ...), any
sample rate (each block is resampled to the model's), mono or stereo (one party per channel).
Bad files are AudioError with the words the rest of the project uses.
"""

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from recipes.data.audio import AudioError, path_problem, remove_dc, wav_truncated

IDENTICAL_DB = -40.0  # two channels closer than this (difference vs signal power) are one signal
SAME_LEVEL_DB = 6.0   # a copy of one channel in the other at most this much quieter is the same signal


def call_info(path):
    """(seconds, native sample rate, channels), or AudioError naming the file."""
    problem = path_problem(path)
    if problem:
        raise AudioError(problem)
    if os.path.getsize(path) == 0:
        raise AudioError(f"empty file {path} (0 bytes)")
    truncated = wav_truncated(path)
    if truncated:
        raise AudioError(truncated)
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types
        raise AudioError(f"cannot read audio {path}: {err}") from None
    if info.frames == 0:
        raise AudioError(f"empty audio {path} (no samples)")
    return info.frames / float(info.samplerate), info.samplerate, info.channels


def blocks(path, sample_rate, block_seconds):
    """Yields (start seconds, float32 tensor (channels, samples) at ``sample_rate``) blocks of a
    call, each with its own DC offset removed (the front-end of recipes/data/audio.py)."""
    _, native, _ = call_info(path)
    frames = max(1, int(round(block_seconds * native)))
    start = 0
    try:
        with sf.SoundFile(path) as f:
            while True:
                data = f.read(frames=frames, dtype="float32", always_2d=True)
                if data.size == 0:
                    break
                yield start / float(native), prepare_block(data, native, sample_rate, path)
                start += data.shape[0]
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(f"cannot read audio {path}: {err}") from None


def prepare_block(data, native, sample_rate, name="call"):
    """A (frames, channels) float block at ``native`` Hz -> (channels, samples) at
    ``sample_rate``, its DC offset removed (the same for a file and for a live stream)."""
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise AudioError(f"{int((~np.isfinite(data)).sum())} non-finite (NaN/inf) sample(s) in {name}")
    x = remove_dc(torch.from_numpy(np.ascontiguousarray(data.T)), native)
    if native != sample_rate:
        x = AF.resample(x, native, sample_rate)
    return x


def channels_identical(x):
    """Whether the two channels of a (2, samples) block carry the same signal: a difference
    below IDENTICAL_DB, or one a copy of the other (|correlation| >= 0.99, any polarity) at a
    level within SAME_LEVEL_DB (crosstalk, the other party 15-30 dB lower, is not a copy); a
    silent block says nothing against it."""
    a, b = x[0].double(), x[1].double()
    pa, pb = float((a ** 2).mean()), float((b ** 2).mean())
    if pa == 0 or pb == 0:
        return pa == pb
    diff = float(((a - b) ** 2).mean())
    if diff == 0 or 10 * np.log10(diff / max(pa, pb)) < IDENTICAL_DB:
        return True
    same_level = abs(10 * np.log10(pa / pb)) <= SAME_LEVEL_DB
    return same_level and abs(float((a * b).mean()) / np.sqrt(pa * pb)) >= 0.99


def mono_of(x):
    """The one signal of a (channels, samples) block whose channels carry the same signal: its
    loudest channel (a mean would cancel a polarity-inverted copy)."""
    return x[int((x ** 2).mean(dim=1).argmax())] if x.shape[0] > 1 else x[0]
