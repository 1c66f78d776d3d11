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
after a duration filter (1-20 s by default) and a check of every audio file (the speech
definition of recipes/data/speech.py). Gender and age are checked against the label space
(``--labels`` YAML, or ``label_space`` from a recipe) with errors naming the input row.
Next to the manifests: dropped.csv (every row left out and why) and prep_record.json
(what they were made from: a changed input or option prepares again).
A UTF-8 byte-order mark (Excel's "CSV UTF-8") is accepted.

Usage: python local/prepare_csv.py input.csv out_folder [--labels hparams/labels/x.yaml] ...
"""

import argparse
import csv
import io
import logging
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipes.data.manifest import ManifestError, check_speaker_disjoint, read_text, write_manifest  # noqa: E402
from recipes.data.prep_record import clear_record, make_record, why_prepare, write_record  # noqa: E402
from recipes.data.screening import (add_screening_args, screen_rows, speech_from_args,  # noqa: E402
                                    write_dropped)
from recipes.data.speech import SpeechConfig  # noqa: E402
from recipes.data.splits import speaker_split  # noqa: E402
from recipes.labels import LabelError  # noqa: E402

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def load_label_space(labels_yaml):
    """The ``label_space`` of a labels YAML (e.g. hparams/labels/callcenter_decades.yaml)."""
    from hyperpyyaml import load_hyperpyyaml

    with open(labels_yaml) as f:
        return load_hyperpyyaml(f)["label_space"]


def row_problems(r, label_space):
    """(reason, message) list of one input row's label problems."""
    out = []
    if not (r.get("speaker") or "").strip():
        out.append(("row", "empty speaker"))
    gender = (r.get("gender") or "").strip()
    if not gender:
        out.append(("label", "empty gender"))
    elif label_space is not None:
        try:
            label_space.gender_index(gender)
        except LabelError as err:
            out.append(("label", str(err)))
    age, group = (r.get("age") or "").strip(), (r.get("age_group") or "").strip()
    if not age and not group:
        out.append(("label", "neither age nor age_group"))
        return out
    if age:
        try:
            if not math.isfinite(float(age)):
                out.append(("label", f"age {age!r} is not a finite number"))
                return out
        except ValueError:
            out.append(("label", f"age {age!r} is not a number"))
            return out
    if label_space is not None:
        try:
            label_space.sub_index(age, group)
        except LabelError as err:
            out.append(("label", str(err)))
    return out


def read_input_csv(input_csv, label_space=None, skip_bad=False, dropped=None):
    """Rows of the input CSV converted to manifest fields; errors name the row.

    With ``skip_bad``, rows with a bad label, a duplicate id or a duplicate audio file are
    dropped (appended to ``dropped``), and missing files are left to the screening.
    """
    if not os.path.isfile(input_csv):
        raise ManifestError(f"{input_csv}: file not found")
    base = os.path.dirname(os.path.abspath(input_csv))
    with io.StringIO(read_text(input_csv), newline="") as f:  # UTF-8 (a BOM accepted), else a clear error
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in ("path", "speaker", "gender") if c not in header]
        if "age" not in header and "age_group" not in header:
            missing.append("age or age_group")
        if missing:
            raise ManifestError(f"{input_csv}: missing columns {missing} (header: {header})")
        rows, errors, seen, seen_wav = [], [], {}, {}
        for n, r in enumerate(reader, start=2):
            path = (r.get("path") or "").strip()
            if not path:
                errors.append((n, "", "", "row", "empty path"))
                continue
            wav = os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))
            uid = (r.get("id") or "").strip() or os.path.splitext(os.path.basename(path))[0]
            problems = row_problems(r, label_space)
            if uid in seen:
                problems.append(("row", f"duplicate id {uid!r} (first at row {seen[uid]})"))
            real = os.path.realpath(wav)
            if real in seen_wav:
                problems.append(("row", f"audio file {wav} already at row {seen_wav[real]}"))
            if not skip_bad and not os.path.isfile(wav):
                problems.append(("missing", f"audio file not found: {wav}"))
            if problems:
                errors.extend((n, uid, wav, reason, msg) for reason, msg in problems)
                continue
            seen[uid], seen_wav[real] = n, n
            rows.append((n, {"ID": uid, "wav": wav, "spk_id": r["speaker"].strip(),
                             "gender": r["gender"].strip(), "age": (r.get("age") or "").strip(),
                             "age_group": (r.get("age_group") or "").strip(),
                             "channel": (r.get("channel") or "").strip()}))
    rows = drop_conflicting_genders(rows, input_csv, errors)
    if errors and not skip_bad:
        lines = [f"{input_csv}, row {n}: {msg}" for n, _, _, _, msg in errors]
        more = f"\n... and {len(lines) - 20} more" if len(lines) > 20 else ""
        raise ManifestError(f"{len(lines)} bad row(s) in {input_csv}:\n" + "\n".join(lines[:20]) + more)
    for n, uid, wav, reason, msg in errors:
        logger.warning("dropped: %s, row %d: %s", input_csv, n, msg)
        if dropped is not None:
            dropped.append({"source": input_csv, "row": n, "ID": uid, "wav": wav, "reason": reason, "detail": msg})
    return rows


def drop_conflicting_genders(rows, input_csv, errors):
    """Rows of speakers whose rows disagree on the gender are errors (one per such speaker,
    naming the first rows of two genders); the other rows are returned."""
    first = {}
    for n, row in rows:
        first.setdefault(row["spk_id"], {}).setdefault(row["gender"].lower(), (n, row["gender"]))
    bad = {spk: seen for spk, seen in first.items() if len(seen) > 1}
    for spk, seen in bad.items():
        (n1, g1), (n2, g2) = sorted(seen.values())[:2]
        n_rows = sum(1 for _, r in rows if r["spk_id"] == spk)
        errors.append((n2, "", "", "label", f"speaker {spk!r} has gender {g1!r} at row {n1} and {g2!r} at row {n2} "
                       f"(conflicting labels: its {n_rows} row(s) are left out with --skip_bad)"))
    return [(n, r) for n, r in rows if r["spk_id"] not in bad]


def strat_key_for(label_space=None):
    """Stratum of a row: (gender, age group); the label space's indices when given."""
    def key(row):
        if label_space is not None:
            return (label_space.gender_index(row["gender"]),
                    label_space.sub_index(row.get("age"), row.get("age_group")))
        age = row.get("age")
        return (row["gender"].lower(), row.get("age_group") or (str(int(float(age)) // 10) if age else ""))
    return key


strat_key = strat_key_for(None)


def prepare_csv(input_csv, save_folder, min_duration=1.0, max_duration=20.0,
                ratios=(0.8, 0.1, 0.1), seed=1234, skip_bad=False, overwrite=False,
                label_space=None, speech=None, sample_rate=None):
    """Validate, filter and split ``input_csv`` into save_folder/{train,valid,test}.csv.

    label_space: a recipes.labels.LabelSpace (or the path of a labels YAML) the labels are
    checked against; speech: SpeechConfig / dict of the speech decision (None: defaults);
    sample_rate: the rate that decision is made at (None: each file's own).
    """
    outputs = {s: os.path.join(save_folder, f"{s}.csv") for s in SPLITS}
    if isinstance(label_space, str):
        label_space = load_label_space(label_space)
    speech = SpeechConfig.coerce(speech)
    if not os.path.isfile(input_csv):
        raise ManifestError(f"{input_csv}: file not found")
    record = make_record("prepare_csv", [input_csv], {
        "min_duration": min_duration, "max_duration": max_duration, "ratios": list(ratios), "seed": seed,
        "skip_bad": skip_bad, "speech": speech, "sample_rate": sample_rate,
        "label_space": label_space.to_dict() if label_space is not None else None})
    reason = why_prepare(save_folder, outputs, record, overwrite)
    if reason is None:
        return outputs
    logger.info("preparing %s from %s: %s", save_folder, input_csv, reason)
    clear_record(save_folder)
    dropped = []
    rows = read_input_csv(input_csv, label_space, skip_bad, dropped)
    kept, report = screen_rows(rows, min_duration, max_duration, skip_bad, source=input_csv,
                               speech=speech, sample_rate=sample_rate, dropped=dropped)
    if not kept:
        raise ManifestError(f"{input_csv}: no utterance left after filtering ({report})")
    splits = speaker_split(kept, ratios, SPLITS, seed, strat_key_for(label_space))
    for s in SPLITS:
        write_manifest(outputs[s], splits[s])
        logger.info("%s: %d utterances", outputs[s], len(splits[s]))
    write_dropped(save_folder, dropped)
    check_speaker_disjoint(outputs, {s: splits[s] for s in SPLITS})
    write_record(save_folder, record)
    return outputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input_csv")
    add_screening_args(ap)
    ap.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1))
    ap.add_argument("--labels", default=None,
                    help="labels YAML (e.g. hparams/labels/callcenter_decades.yaml): check gender and age against it")
    ap.add_argument("--sample-rate", type=int, default=None, help="rate of the speech decision (default: the file's)")
    ap.add_argument("--overwrite", action="store_true", help="prepare again even if the record matches")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare_csv(args.input_csv, args.save_folder, args.min_duration, args.max_duration,
                    tuple(args.ratios), args.seed, args.skip_bad, overwrite=args.overwrite,
                    label_space=args.labels, speech=speech_from_args(args), sample_rate=args.sample_rate)
    except ManifestError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
