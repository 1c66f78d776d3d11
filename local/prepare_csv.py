#!/usr/bin/env python3
"""Prepare an in-house (call-center) corpus described by one CSV.

Input CSV columns (header required):
  path        audio file (absolute, or relative to the CSV's folder); any format
              soundfile reads (wav, flac, ...), any sample rate, mono or stereo
  speaker     speaker id
  gender      e.g. f / m (or female / male)
  age         age in years            } at least one of the two;
  age_group   sub-group name (YAML)   } age wins when both are given
  id          optional utterance id (default: file name without extension)
  channel     optional channel label (e.g. landline, mobile)

Writes train.csv / valid.csv / test.csv (the project's manifest format) in
``save_folder``: speaker-disjoint, 80/10/10 by default, stratified by gender and age,
after a duration filter (1-20 s by default) and a check of every audio file.

Usage: python local/prepare_csv.py input.csv out_folder [--min-duration 1] ...
"""

import argparse
import csv
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipes.data.manifest import ManifestError, write_manifest  # noqa: E402
from recipes.data.screening import add_screening_args, screen_rows  # noqa: E402
from recipes.data.splits import speaker_split  # noqa: E402

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def read_input_csv(input_csv):
    """Rows of the input CSV converted to manifest fields; errors name the row."""
    if not os.path.isfile(input_csv):
        raise ManifestError(f"{input_csv}: file not found")
    base = os.path.dirname(os.path.abspath(input_csv))
    with open(input_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("path", "speaker", "gender") if c not in header]
        if "age" not in header and "age_group" not in header:
            missing.append("age or age_group")
        if missing:
            raise ManifestError(f"{input_csv}: missing columns {missing} (header: {header})")
        rows, errors, seen = [], [], {}
        for i, r in enumerate(reader):
            n = i + 2
            path = (r.get("path") or "").strip()
            if not path:
                errors.append(f"{input_csv}, row {n}: empty path")
                continue
            wav = path if os.path.isabs(path) else os.path.join(base, path)
            uid = (r.get("id") or "").strip() or os.path.splitext(os.path.basename(path))[0]
            if uid in seen:
                errors.append(f"{input_csv}, row {n}: duplicate id {uid!r} (first at row {seen[uid]})")
                continue
            seen[uid] = n
            if not (r.get("speaker") or "").strip():
                errors.append(f"{input_csv}, row {n}: empty speaker")
            if not (r.get("gender") or "").strip():
                errors.append(f"{input_csv}, row {n}: empty gender")
            age, group = (r.get("age") or "").strip(), (r.get("age_group") or "").strip()
            if not age and not group:
                errors.append(f"{input_csv}, row {n}: neither age nor age_group")
            if age:
                try:
                    float(age)
                except ValueError:
                    errors.append(f"{input_csv}, row {n}: age {age!r} is not a number")
            if not os.path.isfile(wav):
                errors.append(f"{input_csv}, row {n}: audio file not found: {wav}")
            rows.append((n, {"ID": uid, "wav": wav, "spk_id": r["speaker"].strip(),
                             "gender": r["gender"].strip(), "age": age, "age_group": group,
                             "channel": (r.get("channel") or "").strip()}))
    if errors:
        raise ManifestError(f"{len(errors)} bad row(s) in {input_csv}:\n" + "\n".join(errors[:20]))
    return rows


def strat_key(row):
    age = row.get("age")
    return (row["gender"].lower(), row.get("age_group") or (str(int(float(age)) // 10) if age else ""))


def prepare_csv(input_csv, save_folder, min_duration=1.0, max_duration=20.0,
                ratios=(0.8, 0.1, 0.1), seed=1234, skip_bad=False, overwrite=False):
    """Validate, filter and split ``input_csv`` into save_folder/{train,valid,test}.csv."""
    outputs = {s: os.path.join(save_folder, f"{s}.csv") for s in SPLITS}
    if not overwrite and all(os.path.isfile(p) for p in outputs.values()):
        logger.info("manifests exist in %s, skipping preparation", save_folder)
        return outputs
    rows = read_input_csv(input_csv)
    kept, report = screen_rows(rows, min_duration, max_duration, skip_bad, source=input_csv)
    if not kept:
        raise ManifestError(f"{input_csv}: no utterance left after filtering ({report})")
    splits = speaker_split(kept, ratios, SPLITS, seed, strat_key)
    for s in SPLITS:
        write_manifest(outputs[s], splits[s])
        logger.info("%s: %d utterances", outputs[s], len(splits[s]))
    return outputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input_csv")
    add_screening_args(ap)
    ap.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare_csv(args.input_csv, args.save_folder, args.min_duration, args.max_duration,
                    tuple(args.ratios), args.seed, args.skip_bad, overwrite=True)
    except ManifestError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
