#!/usr/bin/env python3
"""Make a small synthetic speaker-profiling corpus in seconds (deterministic).

Source-filter synthesis: a glottal pulse train (F0 with jitter, shimmer and an
intonation contour) through cascaded formant resonators for a sequence of vowels, with
noise bursts for consonants. F0 and the vocal-tract length (formant scale) depend on
gender and age group, as in real voices: children have high F0 and short vocal tracts
for both genders, adult men low F0 and long vocal tracts, older voices more jitter and
breathiness. Files are written at 16 kHz (a few in stereo) so the recipe's resampling
and downmix paths are exercised. Output: ``<folder>/wav/*.wav`` and ``<folder>/corpus.csv``
in the input format of ``local/prepare_csv.py``.

Usage: python local/make_demo_corpus.py demo_data [--speakers-per-cell 6]
"""

import argparse
import csv
import os

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

SR = 16000
# (F1, F2, F3) of adult-male vowels, Hz
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
          "e": (530, 1840, 2480), "o": (570, 840, 2410)}
# age group -> (age range, F0 mean per gender, formant scale per gender, jitter, breath)
GROUPS = {
    "child": ((6, 11), {"f": 270, "m": 255}, {"f": 1.32, "m": 1.28}, 0.010, 0.02),
    "teen": ((12, 17), {"f": 225, "m": 150}, {"f": 1.20, "m": 1.08}, 0.010, 0.02),
    "adult": ((18, 44), {"f": 205, "m": 115}, {"f": 1.17, "m": 1.00}, 0.008, 0.02),
    "senior": ((45, 85), {"f": 175, "m": 130}, {"f": 1.12, "m": 0.98}, 0.030, 0.08),
}


def resonator(x, freq, bw):
    """Second-order IIR resonator (one formant)."""
    r = np.exp(-np.pi * bw / SR)
    theta = 2 * np.pi * freq / SR
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, x)


def syllable(rng, f0, scale, jitter, breath, dur):
    n = int(dur * SR)
    t = np.arange(n) / SR
    contour = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6)))
    src = np.zeros(n)
    pos = 0.0
    while pos < n:
        src[int(pos)] = rng.normal(1.0, 0.1)  # shimmer
        period = SR / contour[min(int(pos), n - 1)]
        pos += period * (1 + rng.normal(0, jitter))
    src = lfilter([1.0], [1.0, -0.97], src)  # glottal spectral tilt
    src += breath * rng.normal(size=n)
    formants = np.array(VOWELS[rng.choice(list(VOWELS))]) * scale
    y = src
    for k, (f, bw) in enumerate(zip(formants, (80, 100, 140))):
        y = resonator(y, min(f, SR / 2 - 200), bw) * (1.0 / (k + 1))
    env = np.minimum(1, np.minimum(t, t[-1] - t) / 0.03)
    y = y * env
    cons = rng.normal(size=int(0.05 * SR)) * 0.05 * np.abs(y).max()  # fricative burst
    return np.concatenate([cons, y])


def utterance(rng, f0, scale, jitter, breath):
    parts = [np.zeros(int(rng.uniform(0.1, 0.3) * SR))]
    for _ in range(rng.integers(6, 12)):
        parts.append(syllable(rng, f0 * rng.uniform(0.92, 1.08), scale, jitter, breath, rng.uniform(0.12, 0.3)))
        if rng.random() < 0.3:
            parts.append(np.zeros(int(rng.uniform(0.05, 0.2) * SR)))
    parts.append(np.zeros(int(rng.uniform(0.1, 0.3) * SR)))
    y = np.concatenate(parts)
    y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.8)
    return (y + 1e-3 * rng.normal(size=len(y))).astype(np.float32)


def make_demo_corpus(folder, speakers_per_cell=6, utts_per_speaker=8, seed=0):
    """Write the corpus (skipped if corpus.csv exists). Returns the corpus.csv path."""
    csv_path = os.path.join(folder, "corpus.csv")
    if os.path.isfile(csv_path):
        return csv_path
    os.makedirs(os.path.join(folder, "wav"), exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for group, ((lo, hi), f0s, scales, jitter, breath) in GROUPS.items():
        for gender in ("f", "m"):
            for k in range(speakers_per_cell):
                spk = f"{group}_{gender}{k}"
                age = int(rng.integers(lo, hi + 1))
                f0 = f0s[gender] * rng.uniform(0.9, 1.1)
                scale = scales[gender] * rng.uniform(0.96, 1.04)
                for u in range(utts_per_speaker):
                    y = utterance(rng, f0, scale, jitter, breath)
                    if u == 0:  # a stereo file per speaker
                        y = np.stack([y, 0.9 * y], axis=1)
                    name = f"{spk}_{u}.wav"
                    sf.write(os.path.join(folder, "wav", name), y, SR)
                    rows.append({"path": f"wav/{name}", "speaker": spk, "gender": gender,
                                 "age": age, "age_group": "", "channel": "synthetic"})
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "gender", "age", "age_group", "channel"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)
    return csv_path


def prepare_demo(demo_folder, save_folder, speakers_per_cell=6, utts_per_speaker=8, seed=0, **kwargs):
    """Make the corpus if needed, then split it with local/prepare_csv.py."""
    from local.prepare_csv import prepare_csv
    csv_path = make_demo_corpus(demo_folder, speakers_per_cell, utts_per_speaker, seed)
    return prepare_csv(csv_path, save_folder, **kwargs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--speakers-per-cell", type=int, default=6)
    ap.add_argument("--utts-per-speaker", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_demo_corpus(a.folder, a.speakers_per_cell, a.utts_per_speaker, a.seed))
