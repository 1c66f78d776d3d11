#!/usr/bin/env python3
"""Prepare speechocean762 (OpenSLR 101) for speaker profiling.

Reads the Kaldi-style corpus folder, as published (``WAVE/SPEAKERxxxx/*.WAV``) or as the
8 kHz FLAC copy (``*.flac``): ``train/`` and ``test/`` with ``wav.scp utt2spk spk2age
spk2gender``. The train split gives train.csv plus a speaker-disjoint valid.csv
(``valid_ratio`` of its speakers, stratified by gender and child/adult); the test split
gives test.csv.

Usage: python local/prepare_speechocean762.py /path/to/speechocean762 out_folder
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipes.data.manifest import ManifestError, check_speaker_disjoint, write_manifest  # noqa: E402
from recipes.data.prep_record import clear_record, make_record, why_prepare, write_record  # noqa: E402
from recipes.data.screening import add_screening_args, screen_rows, speech_from_args, write_dropped  # noqa: E402
from recipes.data.speech import SpeechConfig  # noqa: E402
from recipes.data.splits import speaker_split  # noqa: E402

logger = logging.getLogger(__name__)


def read_kaldi_map(path):
    """key -> value of a Kaldi two-column file (errors name file and line)."""
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: not found (is this a speechocean762 folder?)")
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2:
                raise ManifestError(f"{path}, line {n}: expected 'key value', got {line.strip()!r}")
            out[parts[0]] = parts[1]
    return out


def resolve_audio(data_folder, rel):
    """Path of an utterance, accepting .WAV / .wav / .flac whichever exists."""
    path = os.path.join(data_folder, rel)
    if os.path.isfile(path):
        return path
    stem = os.path.splitext(path)[0]
    for ext in (".flac", ".WAV", ".wav"):
        if os.path.isfile(stem + ext):
            return stem + ext
    return path  # reported as missing by the screening


def spk_key(spk, table):
    """speechocean762 speaker ids appear zero-padded or not; match either way."""
    if spk in table:
        return spk
    alt = spk.lstrip("0") or "0"
    for k in (alt, spk.zfill(4)):
        if k in table:
            return k
    return None


def read_split(data_folder, split):
    d = os.path.join(data_folder, split)
    wavs = read_kaldi_map(os.path.join(d, "wav.scp"))
    utt2spk = read_kaldi_map(os.path.join(d, "utt2spk"))
    ages = read_kaldi_map(os.path.join(d, "spk2age"))
    genders = read_kaldi_map(os.path.join(d, "spk2gender"))
    rows, errors = [], []
    for n, (utt, rel) in enumerate(sorted(wavs.items()), 1):
        spk = utt2spk.get(utt)
        ka, kg = (spk_key(spk, ages), spk_key(spk, genders)) if spk else (None, None)
        if spk is None or ka is None or kg is None:
            errors.append(f"{d}/wav.scp utterance {utt}: no speaker/age/gender entry")
            continue
        rows.append((n, {"ID": utt, "wav": resolve_audio(data_folder, rel), "spk_id": spk,
                         "gender": genders[kg], "age": ages[ka], "age_group": "", "channel": "clean"}))
    if errors:
        raise ManifestError("\n".join(errors[:20]))
    return rows


def strat_key(row):
    return (row["gender"], float(row["age"]) < 20)


def prepare_speechocean762(data_folder, save_folder, valid_ratio=0.1, min_duration=1.0,
                           max_duration=20.0, seed=1234, skip_bad=False, overwrite=False, speech=None,
                           sample_rate=None):
    """Write save_folder/{train,valid,test}.csv (+ dropped.csv, prep_record.json); returns
    the manifest paths. speech / sample_rate: the speech decision (recipes/data/speech.py)."""
    outputs = {s: os.path.join(save_folder, f"{s}.csv") for s in ("train", "valid", "test")}
    if not os.path.isdir(data_folder):
        raise ManifestError(f"speechocean762 folder not found: {data_folder}")
    speech = SpeechConfig.coerce(speech)
    lists = [os.path.join(data_folder, sp, f) for sp in ("train", "test")
             for f in ("wav.scp", "utt2spk", "spk2age", "spk2gender")]
    record = make_record("prepare_speechocean762", [p for p in lists if os.path.isfile(p)], {
        "valid_ratio": valid_ratio, "min_duration": min_duration, "max_duration": max_duration, "seed": seed,
        "skip_bad": skip_bad, "speech": speech, "sample_rate": sample_rate})
    reason = why_prepare(save_folder, outputs, record, overwrite)
    if reason is None:
        return outputs
    logger.info("preparing %s from %s: %s", save_folder, data_folder, reason)
    clear_record(save_folder)
    dropped = []
    screen = dict(skip_bad=skip_bad, speech=speech, sample_rate=sample_rate, dropped=dropped)
    train_rows, _ = screen_rows(read_split(data_folder, "train"), min_duration, max_duration,
                                source=f"{data_folder}/train/wav.scp", **screen)
    test_rows, _ = screen_rows(read_split(data_folder, "test"), min_duration, max_duration,
                               source=f"{data_folder}/test/wav.scp", **screen)
    split = speaker_split(train_rows, (1 - valid_ratio, valid_ratio), ("train", "valid"), seed, strat_key)
    write_manifest(outputs["train"], split["train"])
    write_manifest(outputs["valid"], split["valid"])
    write_manifest(outputs["test"], test_rows)
    for s, p in outputs.items():
        logger.info("%s written", p)
    write_dropped(save_folder, dropped)
    check_speaker_disjoint(outputs, {"train": split["train"], "valid": split["valid"], "test": test_rows})
    write_record(save_folder, record)
    return outputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_folder")
    add_screening_args(ap)
    ap.add_argument("--valid-ratio", type=float, default=0.1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare_speechocean762(args.data_folder, args.save_folder, args.valid_ratio, args.min_duration,
                               args.max_duration, args.seed, args.skip_bad, overwrite=True,
                               speech=speech_from_args(args))
    except ManifestError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
