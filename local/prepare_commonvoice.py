#!/usr/bin/env python3
"""Prepare Mozilla Common Voice (release layout) for speaker profiling.

Reads ``<data_folder>/<locale>/validated.tsv`` and ``<locale>/clips/`` for every locale
found (or those given), audio as released (MP3) or as any format soundfile reads (e.g.
the 8 kHz Ogg/Opus copy). ``client_id`` is the speaker, ``locale`` goes into the
manifest's ``language`` column.

Labels go through the recipe's label space (a labels YAML, default
hparams/labels/commonvoice_decades.yaml):
- gender: male / female (mapped onto the label space's names); ``other`` and empty are
  dropped with a count per reason;
- age: a decade word (teens .. nineties, and the release's spelling "fourties") is a
  range of years (DECADE_YEARS: teens = the form's "< 19", taken as 13-18; twenties =
  19-29, ...) and goes to the age bin that contains the WHOLE range. A decade that
  straddles two bins, or lies partly outside every bin, is dropped with a count (never
  moved to a guessed bin); empty or unknown words likewise.
A clip that lacks a label the recipe needs (``require``) is dropped with a count; a label
that is not required and missing is left empty (a masked label for pooled corpora).

Then as the other preparation scripts: duration filter and audio screening with the
speech definition of recipes/data/speech.py (counts; dropped.csv lists every dropped row
and why), a speaker-disjoint 80/10/10 split stratified by gender and age group (or, with
``release_splits``, the release's own train/dev/test.tsv), prep_record.json (skip when
already done with the same input and options) and prep_summary.json (the counts).

Usage: python local/prepare_commonvoice.py /path/to/cv-corpus out_folder [--locales en de] ...
"""

import argparse
import csv
import json
import logging
import os
import sys
import time
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
RELEASE_SPLITS = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}
TSV_COLUMNS = ("client_id", "path", "gender", "age")
DEFAULT_LABELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "hparams", "labels", "commonvoice_decades.yaml")
DECADE_YEARS = {"teens": (13, 18), "twenties": (19, 29), "thirties": (30, 39), "fourties": (40, 49),
                "forties": (40, 49), "fifties": (50, 59), "sixties": (60, 69), "seventies": (70, 79),
                "eighties": (80, 89), "nineties": (90, 99)}


def decade_group(word, label_space, decade_years=None):
    """(age bin name, None) of a decade word, or (None, drop reason)."""
    years = (decade_years or DECADE_YEARS).get(word.strip().lower())
    if years is None:
        return None, "age_unknown_word"
    lo, hi = years
    inside = [n for n in label_space.age_sub if label_space.age_bins[n][0] <= lo and hi <= label_space.age_bins[n][1]]
    if inside:
        return inside[0], None
    touched = [n for n in label_space.age_sub
               if label_space.age_bins[n][0] <= hi and lo <= label_space.age_bins[n][1]]
    return None, ("age_straddles_bins" if touched else "age_outside_bins")


def clip_labels(r, label_space, require, decade_years=None):
    """(gender, age_group, None) of a TSV row, or (.., .., drop reason)."""
    gender, group = "", ""
    word = (r.get("gender") or "").strip().lower()
    if not word:
        if "gender" in require:
            return gender, group, "gender_empty"
    else:
        try:
            gender = label_space.genders[label_space.gender_index(word)]
        except LabelError:
            if "gender" in require:
                return gender, group, f"gender_{word}"
    decade = (r.get("age") or "").strip()
    if not decade:
        if "age" in require:
            return gender, group, "age_empty"
    else:
        group, reason = decade_group(decade, label_space, decade_years)
        if reason and "age" in require:
            return gender, "", reason
        group = group or ""
    return gender, group, None


def read_tsv(tsv, locale, label_space, require, counts, dropped, seen, decade_years=None):
    """(row_number, manifest row) of the clips of one TSV that have the labels needed."""
    if not os.path.isfile(tsv):
        raise ManifestError(f"{tsv}: not found (is this a Common Voice release folder?)")
    clips = os.path.join(os.path.dirname(tsv), "clips")
    rows = []
    with open(tsv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{tsv}: missing columns {missing} (header: {reader.fieldnames})")
        for n, r in enumerate(reader, start=2):
            clip = (r.get("path") or "").strip()
            uid = os.path.splitext(os.path.basename(clip))[0]
            wav = os.path.join(clips, clip)
            gender, group, reason = clip_labels(r, label_space, require, decade_years)
            detail = f"gender {r.get('gender')!r}, age {r.get('age')!r}"
            if not clip or not (r.get("client_id") or "").strip():
                reason, detail = "row_incomplete", "empty path or client_id"
            elif uid in seen:
                reason, detail = "duplicate_clip", f"clip {uid} already at {seen[uid]}"
            if reason:
                counts[reason] += 1
                kind = "label" if reason.startswith(("gender", "age")) else "row"
                dropped.append({"source": tsv, "row": n, "ID": uid, "wav": wav, "reason": kind,
                                "detail": f"{reason}: {detail}"})
                continue
            seen[uid] = f"{tsv}, row {n}"
            rows.append((n, {"ID": uid, "wav": wav, "spk_id": r["client_id"].strip(), "gender": gender,
                             "age": "", "age_group": group, "channel": "",
                             "language": (r.get("locale") or "").strip() or locale, "_source": tsv}))
    return rows


def find_locales(data_folder, locales=None):
    found = sorted(d for d in os.listdir(data_folder) if os.path.isfile(os.path.join(data_folder, d, "validated.tsv")))
    if locales:
        unknown = [loc for loc in locales if loc not in found]
        if unknown:
            raise ManifestError(f"{data_folder}: no <locale>/validated.tsv for {unknown} (found: {found})")
        return list(locales)
    if not found:
        raise ManifestError(f"{data_folder}: no <locale>/validated.tsv found (is this a Common Voice release?)")
    return found


def strat_key(row):
    return (row["gender"], row["age_group"])


def prepare_commonvoice(data_folder, save_folder, label_space=DEFAULT_LABELS, locales=None,
                        release_splits=False, require=("gender", "age"), min_duration=1.0, max_duration=20.0,
                        ratios=(0.8, 0.1, 0.1), seed=1234, skip_bad=False, overwrite=False, speech=None,
                        sample_rate=None, decade_years=None):
    """Write save_folder/{train,valid,test}.csv (+ dropped.csv, prep_record.json,
    prep_summary.json); returns the manifest paths. See the module docstring."""
    t0 = time.time()
    outputs = {s: os.path.join(save_folder, f"{s}.csv") for s in SPLITS}
    if not os.path.isdir(data_folder):
        raise ManifestError(f"Common Voice folder not found: {data_folder}")
    if isinstance(label_space, str):
        label_space = load_label_space(label_space)
    speech, require = SpeechConfig.coerce(speech), sorted(require)
    locales = find_locales(data_folder, locales)
    tsv_names = list(RELEASE_SPLITS.values()) if release_splits else ["validated.tsv"]
    tsvs = [os.path.join(data_folder, loc, name) for loc in locales for name in tsv_names]
    missing = [t for t in tsvs if not os.path.isfile(t)]
    if missing:
        raise ManifestError(f"release splits asked for, but missing: {missing[:5]}")
    record = make_record("prepare_commonvoice", tsvs, {
        "locales": locales, "release_splits": release_splits, "require": require, "min_duration": min_duration,
        "max_duration": max_duration, "ratios": list(ratios), "seed": seed, "skip_bad": skip_bad, "speech": speech,
        "sample_rate": sample_rate, "label_space": label_space.to_dict(), "decade_years": decade_years})
    reason = why_prepare(save_folder, outputs, record, overwrite)
    if reason is None:
        return outputs
    logger.info("preparing %s from %s (%d locale(s)): %s", save_folder, data_folder, len(locales), reason)
    clear_record(save_folder)
    counts, dropped, seen, read = Counter(), [], {}, {}
    for name in tsv_names:
        read[name] = []
        for loc in locales:
            tsv = os.path.join(data_folder, loc, name)
            read[name] += read_tsv(tsv, loc, label_space, require, counts, dropped, seen, decade_years)
    screen = dict(skip_bad=skip_bad, speech=speech, sample_rate=sample_rate, dropped=dropped)
    kept = {}
    for name, rows in read.items():
        kept[name], report = screen_rows(rows, min_duration, max_duration, source=f"{data_folder}/<locale>/{name}",
                                         **screen)
        counts.update({k: v for k, v in report.items() if k not in ("kept", "bad") and v})
    if release_splits:
        splits = {s: kept[RELEASE_SPLITS[s]] for s in SPLITS}
    else:
        if not kept["validated.tsv"]:
            raise ManifestError(f"{data_folder}: no clip left after filtering ({dict(counts)})")
        splits = speaker_split(kept["validated.tsv"], ratios, SPLITS, seed, strat_key)
    for s in SPLITS:
        write_manifest(outputs[s], splits[s])
    write_dropped(save_folder, dropped)
    check_speaker_disjoint(outputs, splits)
    summary = summarize(splits, counts, locales, time.time() - t0)
    with open(os.path.join(save_folder, "prep_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    for s in SPLITS:
        logger.info("%s: %d clips, %d speakers", outputs[s], summary["clips"][s], summary["speakers"][s])
    logger.info("dropped: %s; %.1f s", dict(counts), summary["seconds"])
    write_record(save_folder, record)
    return outputs


def summarize(splits, counts, locales, seconds):
    def count(key):
        return {s: dict(Counter(r[key] or "(missing)" for r in rows)) for s, rows in splits.items()}
    return {"locales": len(locales), "dropped": dict(counts), "seconds": round(seconds, 1),
            "clips": {s: len(rows) for s, rows in splits.items()},
            "speakers": {s: len({r["spk_id"] for r in rows}) for s, rows in splits.items()},
            "hours": {s: round(sum(float(r["duration"]) for r in rows) / 3600, 3) for s, rows in splits.items()},
            "gender": count("gender"), "age_group": count("age_group")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_folder")
    add_screening_args(ap)
    ap.add_argument("--labels", default=DEFAULT_LABELS, help="labels YAML with the label space (age bins)")
    ap.add_argument("--locales", nargs="*", default=None, help="default: every <locale>/validated.tsv found")
    ap.add_argument("--release-splits", action="store_true", help="use the release's train/dev/test.tsv")
    ap.add_argument("--require", nargs="*", default=["gender", "age"], choices=["gender", "age"],
                    help="labels a clip must have (a missing one that is not required is left empty)")
    ap.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1))
    ap.add_argument("--sample-rate", type=int, default=None, help="rate of the speech decision (default: the file's)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare_commonvoice(args.data_folder, args.save_folder, args.labels, args.locales, args.release_splits,
                            tuple(args.require), args.min_duration, args.max_duration, tuple(args.ratios),
                            args.seed, args.skip_bad, args.overwrite, speech_from_args(args), args.sample_rate)
    except ManifestError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
