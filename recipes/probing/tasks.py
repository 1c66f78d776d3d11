"""Utterance lists for the probing tasks: (id, path, channel, label, group) rows.

- speechocean762 manifests: gender, age_sup, age_sub, speaker (train split = probe train,
  test split = probe test, so probes never see a test speaker).
- voxlingua-dev7: language, split by video id (clips of one video on one side).
- channel: the same utterances through several simulated channels.
"""

import csv
import os
import zlib

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from recipes.data.audio import AudioError, load_audio
from recipes.data.channel import TelephoneChannel


def read_manifest(path, max_per_speaker=None):
    rows, per_spk = [], {}
    with open(path) as f:
        for r in csv.DictReader(f):
            per_spk[r["spk_id"]] = per_spk.get(r["spk_id"], 0) + 1
            if max_per_speaker is None or per_spk[r["spk_id"]] <= max_per_speaker:
                rows.append(r)
    return rows


def voxlingua_rows(folder, test_share=0.3, langs=None):
    """(id, path, lang, video, split) for <lang>/<video>__U__S<seg>---<s>-<e>.flac files."""
    out = []
    for lang in sorted(os.listdir(folder)):
        d = os.path.join(folder, lang)
        if not os.path.isdir(d) or (langs and lang not in langs):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".flac", ".wav")):
                continue
            video = name.split("__U__")[0]
            split = "test" if (zlib.crc32(video.encode()) % 1000) / 1000 < test_share else "train"
            out.append({"ID": f"{lang}/{os.path.splitext(name)[0]}", "wav": os.path.join(d, name),
                        "label": lang, "group": video, "split": split})
    return out


def channel_bank(sample_rate, seed=0):
    """Named channels for the channel task: clean, telephone, noisy, low bit-rate."""
    return {
        "clean": None,
        "telephone": TelephoneChannel(sample_rate, noise_prob=0.0, seed=seed),
        "noisy": TelephoneChannel(sample_rate, low_hz=20, high_hz=sample_rate / 2, mu_law=False,
                                  snr_low=0, snr_high=10, seed=seed),
        "lowbitrate": LowBitrate(sample_rate),
    }


class LowBitrate:
    """A crude low bit-rate codec: 2 kHz low-pass and 4-bit quantisation."""

    def __init__(self, sample_rate, cutoff=2000.0, bits=4):
        self.sr, self.cutoff, self.levels = sample_rate, cutoff, 2 ** bits

    def __call__(self, wav, uid):
        import torchaudio.functional as AF
        x = AF.lowpass_biquad(wav, self.sr, self.cutoff)
        peak = x.abs().max().clamp(min=1e-8)
        return torch.round(x / peak * (self.levels / 2)) / (self.levels / 2) * peak


def batches(items, sample_rate, batch_size=16, max_seconds=None):
    """Yield (ids, wavs, lens) over items = [(id, path, channel_fn or None)], longest first."""
    def load(item):
        uid, path, ch = item
        wav = load_audio(path, sample_rate)
        if max_seconds:
            wav = wav[: int(max_seconds * sample_rate)]
        return wav if ch is None else ch(wav, uid)

    for i in range(0, len(items), batch_size):
        chunk, wavs = [], []
        for item in items[i:i + batch_size]:
            try:
                wavs.append(load(item))
                chunk.append(item[0])
            except AudioError:
                continue
        if not wavs:
            continue
        n = torch.tensor([len(w) for w in wavs], dtype=torch.float32)
        yield chunk, pad_sequence(wavs, batch_first=True), n / n.max()


def encode(labels):
    names = sorted(set(labels))
    return np.array([names.index(v) for v in labels]), names
