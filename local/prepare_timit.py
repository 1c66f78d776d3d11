#!/usr/bin/env python3
"""Prepare TIMIT (LDC93S1, the user's own licensed copy) for speaker profiling: gender and
age in years of 630 adult speakers.

Reads the LDC layout, in upper or lower case (both exist among TIMIT copies)::

    <data_folder>/[TIMIT/]TRAIN|TEST/DR1..DR8/<sex><speaker>/<utt>.WAV   (NIST SPHERE; soundfile reads it)
    <data_folder>/[TIMIT/]DOC/SPKRINFO.TXT                               (one line per speaker)

SPKRINFO.TXT columns: ID, Sex, DR, Use, RecDate, BirthDate, Ht, Race, Edu, comments; lines
starting with ``;`` are comments. The age is the recording date minus the birth date, in
full years (``age_in_years``); an unknown birth month or day (``??``) is taken as July 1st
or the 15th; a speaker with an unknown birth year (or recording year) gets no age: its
utterances are dropped when ``age`` is required (the default), else kept with an empty age
(a masked label). Gender comes from SPKRINFO (the directory's first letter is checked
against it).

Split: the official one. TEST (all 168 speakers, or only the 24 core-test speakers with
``test_set="core"``) is the test split; valid speakers are taken from TRAIN, stratified by
gender and age group (``valid_ratio`` of them). Then as the other preparation scripts:
duration filter and audio screening (recipes/data/screening.py; dropped.csv lists every
dropped row and why), prep_record.json (skip when done with the same input and options),
prep_summary.json (counts).

Usage: python local/prepare_timit.py /path/to/TIMIT out_folder [--labels hparams/labels/timit.yaml]
"""

import argparse
import datetime
import hashlib
import json
import logging
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from local.prepare_csv import load_label_space  # noqa: E402
from recipes.data.manifest import ManifestError, check_speaker_disjoint, write_manifest  # noqa: E402
from recipes.data.prep_record import clear_record, make_record, why_prepare, write_record  # noqa: E402
from recipes.data.screening import (add_screening_args, screen_rows, speech_from_args,  # noqa: E402
                                    write_dropped)
from recipes.data.speech import SpeechConfig  # noqa: E402
from recipes.data.splits import speaker_split  # noqa: E402
from recipes.labels import LabelError  # noqa: E402

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
DEFAULT_LABELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "hparams", "labels", "timit.yaml")
# the 24 speakers of the core test set (TIMIT documentation, TESTSET.DOC)
CORE_TEST = {"MDAB0", "MWBT0", "FELC0", "MTAS1", "MWEW0", "FPAS0", "MJMP0", "MLNT0", "FPKT0", "MLLL0",
             "MTLS0", "FJLM0", "MBPM0", "MKLT0", "FNLP0", "MCMJ0", "MJDH0", "FMGD0", "MGRT0", "MNJM0",
             "FDHC0", "MJLN0", "MPAM0", "FMLD0"}


def child(folder, name):
    """The entry of ``folder`` called ``name`` in any letter case, or None."""
    if not os.path.isdir(folder):
        return None
    for entry in sorted(os.listdir(folder)):
        if entry.lower() == name.lower():
            return os.path.join(folder, entry)
    return None


def timit_root(data_folder):
    """The folder holding TRAIN/ and TEST/ (the data folder itself or its TIMIT/ child)."""
    for cand in (data_folder, child(data_folder, "timit"), child(child(data_folder, "timit") or "", "timit")):
        if cand and child(cand, "train") and child(cand, "test"):
            return cand
    raise ManifestError(f"{data_folder}: no TRAIN/ and TEST/ folders (is this the LDC TIMIT layout?)")


def parse_date(text):
    """(year, month, day) of an mm/dd/yy date (19yy); None for an unknown part ('??', '00')."""
    parts = text.strip().split("/")
    if len(parts) != 3:
        return None
    out = []
    for p in parts:
        p = p.strip()
        out.append(int(p) if p.isdigit() and int(p) > 0 else None)
    month, day, year = out
    return (1900 + year if year is not None else None), month, day


def age_in_years(rec_date, birth_date):
    """Full years between two mm/dd/yy dates; None when a year is unknown."""
    rec, birth = parse_date(rec_date), parse_date(birth_date)
    if rec is None or birth is None or rec[0] is None or birth[0] is None:
        return None
    r = datetime.date(rec[0], rec[1] or 7, min(rec[2] or 15, 28))
    b = datetime.date(birth[0], birth[1] or 7, min(birth[2] or 15, 28))
    return r.year - b.year - ((r.month, r.day) < (b.month, b.day))


def read_spkrinfo(path):
    """Speaker ID (upper case, e.g. ABC0) -> {sex, use, age (int or None), rec, birth}."""
    speakers = {}
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            cols = line.split()
            if len(cols) < 6:
                raise ManifestError(f"{path}, line {n}: expected ID Sex DR Use RecDate BirthDate ..., got {line!r}")
            spk, sex, _, use, rec, birth = cols[:6]
            if sex.upper() not in ("M", "F"):
                raise ManifestError(f"{path}, line {n}: sex {sex!r} is not M or F")
            speakers[spk.upper()] = {"sex": sex.lower(), "use": use.upper(), "rec": rec, "birth": birth,
                                     "age": age_in_years(rec, birth), "line": n}
    if not speakers:
        raise ManifestError(f"{path}: no speaker line")
    return speakers


def find_utterances(root, part):
    """(speaker dir name upper case, utterance id, path) of TRAIN or TEST, sorted."""
    out, seen = [], set()
    top = child(root, part)
    for dr in sorted(os.listdir(top)):
        dr_path = os.path.join(top, dr)
        if not (os.path.isdir(dr_path) and dr.lower().startswith("dr")):
            continue
        for spk in sorted(os.listdir(dr_path)):
            spk_path = os.path.join(dr_path, spk)
            if not os.path.isdir(spk_path):
                continue
            for name in sorted(os.listdir(spk_path)):
                stem = name.split(".")[0].upper()  # SA1.WAV, sa1.wav, SA1.WAV.wav (a RIFF copy)
                if not name.lower().endswith(".wav") or (spk.upper(), stem) in seen:
                    continue
                seen.add((spk.upper(), stem))
                out.append((spk.upper(), stem, os.path.join(spk_path, name)))
    return out


def prepare_timit(data_folder, save_folder, label_space=DEFAULT_LABELS, valid_ratio=0.1, test_set="full",
                  require=("gender", "age"), drop_sa=False, min_duration=1.0, max_duration=20.0, seed=1234,
                  skip_bad=False, overwrite=False, speech=None, sample_rate=None):
    """Write save_folder/{train,valid,test}.csv (+ dropped.csv, prep_record.json,
    prep_summary.json); returns the manifest paths. See the module docstring."""
    outputs = {s: os.path.join(save_folder, f"{s}.csv") for s in SPLITS}
    if not os.path.isdir(data_folder):
        raise ManifestError(f"TIMIT folder not found: {data_folder}")
    if test_set not in ("full", "core"):
        raise ValueError(f"test_set must be 'full' or 'core', not {test_set!r}")
    if isinstance(label_space, str):
        label_space = load_label_space(label_space)
    speech, require = SpeechConfig.coerce(speech), sorted(require)
    root = timit_root(data_folder)
    info = child(child(root, "doc") or "", "spkrinfo.txt")
    if not info:
        raise ManifestError(f"{root}: DOC/SPKRINFO.TXT not found (it holds the speakers' birth dates)")
    utts = {s: find_utterances(root, p) for s, p in (("train", "train"), ("test", "test"))}
    listing = hashlib.sha256("\n".join(os.path.relpath(u[2], root) for v in utts.values() for u in v)
                             .encode()).hexdigest()  # a changed audio listing prepares again
    record = make_record("prepare_timit", [info], {
        "valid_ratio": valid_ratio, "test_set": test_set, "require": require, "drop_sa": drop_sa,
        "min_duration": min_duration, "max_duration": max_duration, "seed": seed, "skip_bad": skip_bad,
        "speech": speech, "sample_rate": sample_rate, "label_space": label_space.to_dict(), "listing": listing})
    reason = why_prepare(save_folder, outputs, record, overwrite)
    if reason is None:
        return outputs
    logger.info("preparing %s from %s: %s", save_folder, root, reason)
    clear_record(save_folder)
    speakers = read_spkrinfo(info)
    counts, dropped, read = Counter(), [], {}
    for part, items in utts.items():
        read[part] = []
        for n, (spk_dir, stem, path) in enumerate(items, start=1):
            row, why = utterance_row(spk_dir, stem, path, speakers, label_space, require, drop_sa)
            if part == "test" and test_set == "core" and spk_dir not in CORE_TEST and not why:
                why = ("not_core_test", f"speaker {spk_dir} is not in the core test set")
            if why:
                counts[why[0]] += 1
                dropped.append({"source": info if why[0].startswith(("age", "gender", "speaker")) else path,
                                "row": speakers.get(spk_dir[1:], {}).get("line", n), "ID": f"{spk_dir}_{stem}",
                                "wav": path, "reason": why[0], "detail": why[1]})
                continue
            read[part].append((n, {**row, "_source": path}))
    kept = {}
    for part, rows in read.items():
        kept[part], report = screen_rows(rows, min_duration, max_duration, skip_bad, source=f"{root}/{part}",
                                         speech=speech, sample_rate=sample_rate, dropped=dropped)
        counts.update({k: v for k, v in report.items() if k not in ("kept", "bad") and v})
        if not kept[part]:
            raise ManifestError(f"{root}: no {part.upper()} utterance left after filtering ({dict(counts)})")
    strat = lambda r: (r["gender"], label_space.sub_index(r["age"], None) if r["age"] else -1)  # noqa: E731
    splits = speaker_split(kept["train"], (1 - valid_ratio, valid_ratio), ("train", "valid"), seed, strat)
    splits["test"] = kept["test"]
    for s in SPLITS:
        write_manifest(outputs[s], splits[s])
    write_dropped(save_folder, dropped)
    check_speaker_disjoint(outputs, splits)
    summary = {"dropped": dict(counts), "utterances": {s: len(r) for s, r in splits.items()},
               "speakers": {s: len({r["spk_id"] for r in rows}) for s, rows in splits.items()},
               "age_range": {s: [min((int(r["age"]) for r in rows if r["age"]), default=None),
                                 max((int(r["age"]) for r in rows if r["age"]), default=None)]
                             for s, rows in splits.items()}}
    with open(os.path.join(save_folder, "prep_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    logger.info("TIMIT: %s", summary)
    write_record(save_folder, record)
    return outputs


def utterance_row(spk_dir, stem, path, speakers, label_space, require, drop_sa):
    """(manifest row, None) of one utterance, or (None, (reason, detail))."""
    if drop_sa and stem.startswith("SA"):
        return None, ("sa_sentence", "SA sentences dropped (drop_sa)")
    spk = speakers.get(spk_dir[1:])
    if spk is None:
        return None, ("speaker_unknown", f"speaker {spk_dir[1:]} ({path}) is not in SPKRINFO.TXT")
    if spk_dir[0].lower() != spk["sex"]:
        return None, ("gender_mismatch", f"directory {spk_dir} but SPKRINFO sex {spk['sex'].upper()}")
    try:
        gender = label_space.genders[label_space.gender_index(spk["sex"])]
    except LabelError as err:
        return None, ("gender_unknown", str(err))
    age = spk["age"]
    if age is None and "age" in require:
        return None, ("age_unknown", f"speaker {spk_dir[1:]}: recording {spk['rec']}, birth {spk['birth']}")
    if age is not None:
        try:
            label_space.sub_index_from_age(age)
        except LabelError as err:
            return None, ("age_outside_bins", f"speaker {spk_dir[1:]}: {err}")
    return {"ID": f"{spk_dir}_{stem}", "wav": path, "spk_id": spk_dir, "gender": gender,
            "age": "" if age is None else str(age), "age_group": "", "channel": "", "language": "en"}, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_folder")
    add_screening_args(ap)
    ap.add_argument("--labels", default=DEFAULT_LABELS, help="labels YAML with the label space (age bins)")
    ap.add_argument("--valid-ratio", type=float, default=0.1, help="share of TRAIN speakers used for validation")
    ap.add_argument("--test-set", choices=["full", "core"], default="full")
    ap.add_argument("--require", nargs="*", default=["gender", "age"], choices=["gender", "age"])
    ap.add_argument("--drop-sa", action="store_true", help="leave out the two SA sentences every speaker reads")
    ap.add_argument("--sample-rate", type=int, default=None, help="rate of the speech decision (default: the file's)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare_timit(args.data_folder, args.save_folder, args.labels, args.valid_ratio, args.test_set,
                      tuple(args.require), args.drop_sa, args.min_duration, args.max_duration, args.seed,
                      args.skip_bad, args.overwrite, speech_from_args(args), args.sample_rate)
    except ManifestError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
