"""Audio reading: soundfile, downmix to mono, resample to the recipe's sample rate.

Downmix: the mean of the channels, except when the channels cancel (e.g. L = -R, a
wiring or polarity fault: the mean keeps less than ``CANCEL_RATIO`` of the loudest
channel's power), then the loudest channel, so such a file is not taken for silence.
NaN / inf samples are an AudioError naming the file (never "silent"). DC and sub-audio content
(a line's DC offset, drift below 20 Hz) is removed by a high-pass filter (``remove_dc``), the same
for preparation, training and inference; a local filter, so silence around a clip does not change
what the clip's speech becomes.
``clipped_fraction`` says how much of a signal sits flat at its extremes (clipping).
"""

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from recipes.data.speech import NonFiniteAudio, speech_seconds

CANCEL_RATIO = 0.01  # -20 dB


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, empty, silent)."""


def audio_info(path):
    """(duration_seconds, sample_rate, channels) of a file, or AudioError."""
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types
        raise AudioError(f"cannot read audio {path}: {err}") from None
    return info.frames / float(info.samplerate), info.samplerate, info.channels


def path_problem(path):
    """Why ``path`` cannot be an audio input before reading it (None when it is a file): the
    words every entry point uses."""
    if os.path.isdir(path):
        return f"{path} is a directory, not an audio file"
    if not os.path.exists(path):
        return f"{path} not found"
    return None


def load_audio(path, sample_rate, start_s=None, dur_s=None):
    """Float32 mono tensor at ``sample_rate``; optionally a segment [start_s, start_s+dur_s)."""
    problem = path_problem(path) or wav_truncated(path)  # a truncated copy is not profiled on its first part
    if problem:
        raise AudioError(problem)
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
    if not np.isfinite(data).all():
        raise AudioError(f"{int((~np.isfinite(data)).sum())} non-finite (NaN/inf) sample(s) in {path}")
    wav = remove_dc(torch.from_numpy(np.ascontiguousarray(downmix(data))), native)
    if native != sample_rate:
        wav = AF.resample(wav, native, sample_rate)
    return wav


DC_CUTOFF_HZ = 20.0


def remove_dc(wav, sample_rate):
    """The signal without its DC and sub-audio content: a 2nd-order high-pass (biquad) at
    DC_CUTOFF_HZ, along the last dimension (a line's DC offset, hum below speech, drift)."""
    if wav.shape[-1] == 0:
        return wav
    return AF.highpass_biquad(wav.float(), sample_rate, DC_CUTOFF_HZ)


def clipped_fraction(wav, run=3):
    """Share of the samples that sit flat at the signal's maximum or minimum in runs of at
    least ``run`` samples: the flat tops of a clipped recording (natural peaks are single
    samples). 0.0 for an unclipped signal."""
    x = wav.detach().float().reshape(-1)
    if x.numel() < run:
        return 0.0
    span = float(x.max() - x.min())
    if span <= 0:
        return 0.0
    eps = 1e-4 * span
    flat = (x >= x.max() - eps) | (x <= x.min() + eps)
    # samples inside a run of >= run consecutive flat samples
    windows = flat.float().unfold(0, run, 1).sum(1) >= run
    inside = torch.zeros_like(flat)
    for k in range(run):
        inside[k:k + windows.numel()] |= windows
    return float(inside.float().mean())


def downmix(data):
    """Mono float32 array of a (frames, channels) array (see the module docstring)."""
    if data.shape[1] == 1:
        return data[:, 0]
    mono = data.mean(axis=1)
    power = (data.astype(np.float64) ** 2).mean(axis=0)
    if float((mono.astype(np.float64) ** 2).mean()) < CANCEL_RATIO * float(power.max()):
        return data[:, int(power.argmax())]
    return mono


def check_signal(wav, path, sample_rate=8000, speech=None, min_speech_seconds=0.0):
    """Raise AudioError for an empty or non-finite signal, or one with no more than
    ``min_speech_seconds`` of speech (the definition of recipes/data/speech.py; default:
    not a single speech frame = all-silent)."""
    if wav.numel() == 0:
        raise AudioError(f"empty audio {path}")
    try:
        got = speech_seconds(wav, sample_rate, speech, name=path)
    except NonFiniteAudio as err:
        raise AudioError(str(err)) from None
    if got <= min_speech_seconds:
        raise AudioError(f"all-silent audio {path} ({got:.2f} s of speech)")


def wav_truncated(path):
    """For a RIFF/WAVE file: a message when its data chunk claims more bytes than the file
    holds (a truncated copy), else None. Other formats: None."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
        size = os.path.getsize(path)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            have = size - (pos + 8)
            if n != 0xFFFFFFFF and n > have:
                return f"truncated WAV {path}: header declares {n} data bytes, file holds {have}"
            return None
        pos += 8 + n + (n & 1)
    return None
