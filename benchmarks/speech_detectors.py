#!/usr/bin/env python3
"""Speech detectors -> benchmarks/results/speech_detectors.md.

What the one speech decision (recipes/data/speech.py) says about real speech and about the
sounds a phone line carries instead: digital silence, white and pink noise, mains hum, music,
DTMF tones; with ``detector: energy`` (the energy rule alone, the default) and ``detector:
silero`` (the energy rule AND the Silero VAD model of the silero-vad wheel). A file "has
speech" when at least ``min_speech_seconds`` (0.5 s) of it is speech: preparation keeps it,
inference profiles it. Also the speed of each detector (x real time, 60 s of audio).

    python benchmarks/speech_detectors.py [--n 30]

Real speech: the first ``--n`` test utterances of speechocean762 and of the Common Voice sample
(../shared/data); the other sounds are synthesised here (seeded), 4 s each at 8 kHz.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import CV_DATA, SO_DATA, in_root, machine, script_command, table_path, write_markdown  # noqa: E402
from recipes.data.audio import load_audio  # noqa: E402
from recipes.data.speech import SpeechConfig, speech_seconds  # noqa: E402

SR = 8000
SECONDS = 4.0


def level(x, dbfs):
    """``x`` scaled to an RMS of ``dbfs``."""
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 10 ** (dbfs / 20)


def synthetic(kind, rng):
    n = int(SECONDS * SR)
    t = np.arange(n) / SR
    if kind == "digital silence":
        return np.zeros(n)
    if kind == "white noise -20 dBFS":
        return level(rng.standard_normal(n), -20)
    if kind == "white noise -40 dBFS":
        return level(rng.standard_normal(n), -40)
    if kind == "pink noise -20 dBFS":
        spec = np.fft.rfft(rng.standard_normal(n))
        spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0))
        return level(np.fft.irfft(spec, n), -20)
    if kind.startswith("hum"):
        f0 = 50.0 if "50" in kind else 60.0
        return level(sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6)), -20)
    if kind == "music (chords, 120 bpm)":
        out = np.zeros(n)
        beat = int(0.5 * SR)
        for start in range(0, n, beat):
            root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
            seg = np.arange(min(beat, n - start)) / SR
            env = np.exp(-3.0 * seg)
            for ratio in (1.0, 1.26, 1.5, 2.0):
                out[start:start + seg.size] += env * sum(np.sin(2 * np.pi * root * ratio * h * seg) / h for h in (1, 2, 3))
        return level(out, -20)
    if kind == "DTMF digits":
        low, high = (697, 770, 852, 941), (1209, 1336, 1477)
        out = np.zeros(n)
        step = int(0.1 * SR)
        for i, start in enumerate(range(0, n, 2 * step)):
            seg = np.arange(min(step, n - start)) / SR
            out[start:start + seg.size] = np.sin(2 * np.pi * rng.choice(low) * seg) + np.sin(2 * np.pi * rng.choice(high) * seg)
        return level(out, -15)
    raise ValueError(kind)


KINDS = ["digital silence", "white noise -20 dBFS", "white noise -40 dBFS", "pink noise -20 dBFS",
         "hum 50 Hz + harmonics", "hum 60 Hz + harmonics", "music (chords, 120 bpm)", "DTMF digits"]


def real_speech(n):
    """{name: [signals]} of the first n test utterances of each shared corpus found."""
    out = {}
    so = in_root(os.path.join(SO_DATA, "test", "wav.scp"))
    if os.path.isfile(so):
        with open(so) as f:
            paths = [os.path.join(in_root(SO_DATA), line.split()[1]) for line in f if line.strip()][:n]
        out["speech: speechocean762 test"] = [load_audio(p, SR) for p in paths]
    cv = sorted(glob.glob(in_root(os.path.join(CV_DATA, "*", "clips", "*.opus"))))[:: 37][:n]
    if cv:
        out["speech: Common Voice sample"] = [load_audio(p, SR) for p in cv]
    return out


def measure(signals, cfg):
    secs = [speech_seconds(torch.as_tensor(s, dtype=torch.float32), SR, cfg) for s in signals]
    lengths = [len(s) / SR for s in signals]
    has = sum(s >= cfg.min_speech_seconds for s in secs)
    return has, len(signals), float(np.mean([s / max(n, 1e-9) for s, n in zip(secs, lengths)]))


def speed(cfg, rng):
    speech_seconds(torch.as_tensor(level(rng.standard_normal(SR), -20), dtype=torch.float32), SR, cfg)  # load once
    x = torch.as_tensor(level(rng.standard_normal(60 * SR), -20), dtype=torch.float32)  # new audio: not cached
    t0 = time.perf_counter()
    speech_seconds(x, SR, cfg)
    return 60.0 / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="real utterances per corpus")
    ap.add_argument("--copies", type=int, default=10, help="seeded copies of each synthetic sound")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    sets = real_speech(args.n)
    if not sets:
        print(f"no real speech found under {SO_DATA} or {CV_DATA}: the table needs ../shared/data")
    for kind in KINDS:
        sets[kind] = [synthetic(kind, rng) for _ in range(args.copies)]
    detectors = {"energy": SpeechConfig(), "silero": SpeechConfig(detector="silero")}
    lines = ["# Speech detectors: what counts as speech", "",
             f"Machine: {machine('1 torch thread')}. Command: `{script_command(__file__, *(argv or sys.argv[1:]))}`.",
             "", "A file has speech when >= 0.5 s of it passes the detector (preparation keeps it, inference "
             "profiles it). Speech rows: the higher the better; every other row: the lower the better. "
             "Share of frames = mean share of each file's frames marked speech.", "",
             "| sound | files | energy: has speech | energy: share of frames | silero: has speech | silero: share of frames |",
             "|---|---|---|---|---|---|"]
    for name, signals in sets.items():
        cells = []
        for cfg in detectors.values():
            has, n, share = measure(signals, cfg)
            cells += [f"{has}/{n}", f"{100 * share:.0f}%"]
        lines.append(f"| {name} | {len(signals)} | " + " | ".join(cells) + " |")
    rates = {k: speed(cfg, rng) for k, cfg in detectors.items()}
    lines += ["", "Speed on 60 s of audio, one thread: " + ", ".join(f"{k} {v:.0f}x real time" for k, v in rates.items()) + "."]
    write_markdown(table_path("speech_detectors.md"), lines)


if __name__ == "__main__":
    main()
