"""Two-party calls simulated from the real speech of speakers a model never saw (benchmarks/calls.py):
the speakers (speechocean762 test adults, Common Voice test speakers), the call (turns, overlap,
G.711, line noise, crosstalk, a hold chord, an espeak-ng IVR prompt) and its reference turns."""

import csv
import os
import subprocess

import numpy as np
import torch
import torchaudio.functional as AF

from benchmarks.common import SO_DATA, in_root
from recipes.data.audio import load_audio

SR = 8000


def so_speakers():
    """speechocean762 test adults: {speaker: (gender, age, [paths])}."""
    root = in_root(SO_DATA)
    read = lambda name: dict(line.split()[:2] for line in open(os.path.join(root, "test", name)))  # noqa: E731
    wav, u2s, age, gender = read("wav.scp"), read("utt2spk"), read("spk2age"), read("spk2gender")
    out = {}
    for utt, spk in sorted(u2s.items()):
        if int(age[spk]) >= 20:
            out.setdefault(spk, (gender[spk].lower(), int(age[spk]), []))[2].append(os.path.join(root, wav[utt]))
    return out


def cv_speakers(manifest):
    """Common Voice test speakers with at least 5 clips: {speaker: (gender, age group, [paths])}."""
    out = {}
    with open(manifest) as f:
        for r in csv.DictReader(f):
            if r.get("gender") in ("f", "m"):
                out.setdefault(r["spk_id"], (r["gender"], r.get("age_group") or r.get("age"), []))[2].append(r["wav"])
    return {k: v for k, v in out.items() if len(v[2]) >= 5}


def channel(x, rng):
    """G.711 mu-law round trip."""
    q = AF.mu_law_encoding(torch.as_tensor(x).clamp(-1, 1), 256)
    return AF.mu_law_decoding(q, 256).numpy()


IVR_TEXTS = ("Thank you for calling. Your call may be recorded for quality and training purposes.",
             "Welcome. Please hold, the next available agent will be with you shortly.",
             "For billing, press one. For technical support, press two.")


def ivr_prompt(index, folder):
    """An IVR prompt spoken by espeak-ng (a synthetic voice: every call system plays one), at SR;
    None when espeak-ng is not installed."""
    import shutil

    if shutil.which("espeak-ng") is None:
        return None
    path = os.path.join(folder, f"ivr_{index % len(IVR_TEXTS)}.wav")
    if not os.path.isfile(path):
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", path, IVR_TEXTS[index % len(IVR_TEXTS)]],
                       check=True, capture_output=True)
    return 0.3 * load_audio(path, SR).numpy()


def build_call(agent, caller, rng, ivr=None):
    """(left, right, mono, caller_alone, reference turns [(who, start, end)]) of one call; ``ivr``:
    a prompt the call opens with, played into both channels (the system, not a party)."""
    agent_clips, caller_clips = agent[2][:4], caller[2][:3]
    turns, parts, t = [], [], 0.0
    if ivr is not None:
        turns += [("ivr", a, b) for a, b in speech_stretches(ivr)]
        parts.append(("music", 0, ivr.astype(np.float32)))
        t = len(ivr) / SR + 0.8
    overlap = rng.random() < 0.5
    turn_seconds = 0.0  # the previous turn's speech span (an overlap is a share of it)
    for i in range(7):
        who = "agent" if i % 2 == 0 else "caller"
        x = load_audio((agent_clips if who == "agent" else caller_clips)[i // 2], SR).numpy()
        x = x[: int(rng.uniform(1.0, 8.0) * SR)] if len(x) > 8 * SR else x
        if i and overlap:
            t -= rng.uniform(0.0, 0.10) * turn_seconds
        elif i:
            t += rng.uniform(0.2, 1.0)
        # the reference is the turn's speech, not the clip's silent ends nor its long pauses
        stretches = speech_stretches(x)
        turns += [(who, t + a, t + b) for a, b in stretches]
        turn_seconds = stretches[-1][1] - stretches[0][0]
        parts.append((who, int(t * SR), x))
        t += len(x) / SR
        if i == 3:  # hold-music-like chord in one gap
            seg = np.arange(int(2 * SR)) / SR
            chord = sum(np.sin(2 * np.pi * f * seg) for f in (220.0, 277.2, 329.6)) * 10 ** (-25 / 20) / 3
            parts.append(("music", int((t + 0.3) * SR), chord.astype(np.float32)))
            t += 2.6
    n = int((t + 0.5) * SR)
    tracks = {who: np.zeros(n, dtype=np.float32) for who in ("agent", "caller", "music")}
    for who, start, x in parts:
        tracks[who][start:start + len(x)] += x[: n - start]
    agent_sig, caller_sig = channel(tracks["agent"], rng), channel(tracks["caller"], rng)
    speech_rms = np.sqrt(np.mean(np.concatenate([agent_sig, caller_sig]) ** 2))
    noise = lambda: rng_noise(rng, n) * speech_rms * 10 ** (-rng.uniform(15, 30) / 20)  # noqa: E731
    cross = lambda: 10 ** (-rng.uniform(15, 30) / 20)  # noqa: E731
    left = agent_sig + cross() * caller_sig + tracks["music"] + noise()
    right = caller_sig + cross() * agent_sig + tracks["music"] + noise()
    mono = agent_sig + caller_sig + tracks["music"] + noise()
    alone = np.concatenate([channel(load_audio(p, SR).numpy(), rng) for p in caller_clips])
    alone = alone + rng_noise(rng, len(alone)) * np.sqrt(np.mean(alone ** 2)) * 10 ** (-rng.uniform(15, 30) / 20)
    return left, right, mono, alone, turns


REF_GAP = 0.5  # seconds: pauses shorter than this inside a turn are part of the reference segment


def speech_stretches(x):
    """[(start, end)] seconds of the clean clip's speech, by the project's speech definition (the
    recipes' ``detector: silero``; the energy rule alone counts the recording noise before and after
    the words, up to the whole clip), pauses shorter than REF_GAP bridged."""
    from recipes.calls.call import runs
    from recipes.calls.diarize import merge_close
    from recipes.data.speech import SpeechConfig, frame_length, speech_mask

    mask = speech_mask(torch.as_tensor(x), SR, SpeechConfig(detector="silero")).numpy()
    n = frame_length(SR)
    stretches = [[a * n / SR, b * n / SR] for a, b in runs(mask)]
    return [tuple(r) for r in merge_close(stretches, REF_GAP)] or [(0.0, len(x) / SR)]


def rng_noise(rng, n):
    """White noise of unit RMS, seeded from ``rng``."""
    return np.random.default_rng(rng.randrange(1 << 30)).standard_normal(n).astype(np.float32)
