"""The one manifest format (CSV) of the project, and its validation.

Columns: ``ID, wav, duration, spk_id, gender, age, age_group, channel``. ``age`` is in
years (may be empty when only ``age_group``, a sub-group name, is known); ``channel`` is
optional. Errors name the file and the row (1-based, header = row 1).
"""

import csv
import io
import math
import os

from recipes.labels import LabelError

REQUIRED = ("ID", "wav", "duration", "spk_id", "gender")
COLUMNS = ("ID", "wav", "duration", "spk_id", "gender", "age", "age_group", "channel", "language")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every bad row."""


MISSING_LABELS = ("error", "mask")
FIRST_ROW = 2  # line number of a CSV's first data row (line 1 is the header)


def read_text(path):
    """The text of a UTF-8 file (a BOM is accepted); another encoding is a ManifestError naming
    the file, the row and the byte, and saying how to convert it."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        row = raw[:err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ManifestError(f"{path}, row {row}, column {col}: byte 0x{raw[err.start]:02x} is not UTF-8 text: "
                            f"save the file as UTF-8 (for a Latin-1 file: iconv -f latin1 -t utf-8 "
                            f"{os.path.basename(path)} > utf8.csv)") from None


def read_rows(csv_path, missing_labels="error"):
    """List of (row_number, dict) of a CSV, with a clear error on missing columns; with
    ``missing_labels="mask"`` a corpus may lack the gender or the age columns."""
    if not os.path.isfile(csv_path):
        raise ManifestError(f"{csv_path}: manifest not found")
    with io.StringIO(read_text(csv_path), newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        needed = REQUIRED if missing_labels == "error" else [c for c in REQUIRED if c != "gender"]
        missing = [c for c in needed if c not in header]
        if "age" not in header and "age_group" not in header and missing_labels == "error":
            missing.append("age or age_group")
        if missing:
            raise ManifestError(f"{csv_path}: missing columns {missing} (header: {header})")
        return list(enumerate(reader, start=FIRST_ROW))


def write_manifest(csv_path, rows):
    """Write rows (dicts) with the project's columns."""
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in COLUMNS})
    os.replace(tmp, csv_path)


def validate_manifest(csv_path, label_space, check_files=True, max_errors=20, missing_labels="error"):
    """Check every row; return the rows, or raise ManifestError listing the bad ones.

    Checks: required columns, duplicate IDs, numeric positive duration, gender in the
    label space, age (or age group) inside the configured bins, audio file present.
    ``missing_labels``: "error" (every row needs a gender and an age or age group) or
    "mask" (pooled corpora: an empty gender, or empty age and age group, is a missing
    label that adds no loss to its head; a label that is given must still be valid).
    """
    if missing_labels not in MISSING_LABELS:
        raise ManifestError(f"missing_labels: {missing_labels!r} is not one of {MISSING_LABELS}")
    rows = read_rows(csv_path, missing_labels)
    mask = missing_labels == "mask"
    errors, seen = [], {}
    for n, row in rows:
        where = f"{csv_path}, row {n} (ID {row.get('ID')!r})"
        uid = row["ID"]
        if not uid:
            errors.append(f"{where}: empty ID")
        elif uid in seen:
            errors.append(f"{where}: duplicate ID, first at row {seen[uid]}")
        else:
            seen[uid] = n
        try:
            if not math.isfinite(float(row["duration"])) or float(row["duration"]) <= 0:
                errors.append(f"{where}: duration {row['duration']} is not a finite number > 0")
        except ValueError:
            errors.append(f"{where}: duration {row['duration']!r} is not a number")
        for value, check in ((row.get("gender"), lambda r: label_space.gender_index(r.get("gender"))),
                             (row.get("age") or row.get("age_group"),
                              lambda r: label_space.sub_index(r.get("age"), r.get("age_group")))):
            if mask and (value is None or not str(value).strip()):
                continue  # a missing label: masked
            try:
                check(row)
            except LabelError as err:
                errors.append(f"{where}: {err}")
        if not row.get("spk_id"):
            errors.append(f"{where}: empty spk_id")
        if check_files and not os.path.isfile(row["wav"]):
            errors.append(f"{where}: audio file not found: {row['wav']}")
    if errors:
        more = f"\n... and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise ManifestError(f"{len(errors)} bad row(s):\n" + "\n".join(errors[:max_errors]) + more)
    return [r for _, r in rows]


def check_speaker_disjoint(manifests, rows=None):
    """The cross-split checks: no speaker, no utterance ID and no audio file (same real
    path) in two splits. manifests: dict split -> csv path; rows: optional dict split ->
    its rows as validate_manifest returned them (spares a second read). Raise
    ManifestError naming file and row of every clash."""
    owners = {"speaker": {}, "ID": {}, "audio file": {}}
    errors, kinds = [], set()
    for split, path in manifests.items():
        numbered = enumerate(rows[split], start=FIRST_ROW) if rows and split in rows else read_rows(path)
        for n, row in numbered:
            keys = {"speaker": row["spk_id"], "ID": row["ID"], "audio file": os.path.realpath(row["wav"])}
            for kind, key in keys.items():
                owner = owners[kind]
                if key in owner and owner[key][0] != split:
                    kinds.add(kind)
                    errors.append(f"{kind} {key!r} is in split {owner[key][0]} ({owner[key][1]}) "
                                  f"and in split {split} ({path}, row {n})")
                owner.setdefault(key, (split, path))
    if errors:
        raise ManifestError(f"splits are not disjoint ({', '.join(sorted(kinds))}: a test leak):\n"
                            + "\n".join(sorted(set(errors))[:20]))
