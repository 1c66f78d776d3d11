"""What an archive job reads and writes, without Ray: the list of files (a folder or a CSV of
paths), the files an earlier run already wrote (resume), and the parquet part files.

The output is a folder of parquet files (``results.parquet/part-<run>-<n>.parquet``), the layout
pyarrow, pandas, DuckDB, Spark and Ray read as one table. Each part is written to a hidden
temporary name and renamed when complete, so an interrupted run leaves only whole parts, and a
rerun adds new parts next to the old ones (never rewriting them).
"""

import csv
import os
import time
import uuid

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
PATH_COLUMNS = ("path", "wav", "file")  # the CSV column read, the first one present


def list_folder(folder):
    """The audio files under ``folder`` (any depth, by suffix, sorted; hidden names skipped)."""
    out = []
    for base, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(base, n) for n in sorted(names)
                if not n.startswith(".") and n.lower().endswith(AUDIO_SUFFIXES)]
    return out


def read_csv_paths(path, column=None):
    """The paths of a CSV's ``column`` (default: the first of path / wav / file), in order. A
    relative path is taken from the current folder when it exists there, else from the CSV's."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    column = column or next((c for c in PATH_COLUMNS if c in header), None)
    if column not in header:
        raise ValueError(f"{path}: no column {column or ' / '.join(PATH_COLUMNS)} (columns: {', '.join(header)}); "
                         "name it with --path-column")
    out = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        value = (row.get(column) or "").strip()
        if not value:
            raise ValueError(f"{path} line {n}: empty {column}")
        out.append(value)
    return out


def resolve(file, csv_path=None):
    """Where to open ``file`` (an absolute path): from the current folder, else (a relative
    path of a CSV) from the CSV's folder."""
    if os.path.isabs(file) or csv_path is None or os.path.exists(file):
        return os.path.abspath(file)
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(csv_path)), file))


def list_inputs(source, column=None):
    """[{"file": name written to the output, "path": absolute path to read}] of a folder or a
    CSV of paths, each file once, in order."""
    if os.path.isdir(source):
        files, csv_path = list_folder(source), None
    elif os.path.isfile(source) and source.lower().endswith((".csv", ".tsv", ".txt")):
        files, csv_path = read_csv_paths(source, column), source
    elif os.path.exists(source):
        raise ValueError(f"--input {source}: a folder of audio files or a CSV of paths, not this file")
    else:
        raise ValueError(f"--input {source} not found")
    seen, items = set(), []
    for f in files:
        if f not in seen:
            seen.add(f)
            items.append({"file": f, "path": resolve(f, csv_path)})
    return items


def part_files(output):
    """The parquet files of an output folder (hidden and ``_`` names skipped, as readers do)."""
    if not os.path.isdir(output):
        return []
    return sorted(os.path.join(output, n) for n in os.listdir(output)
                  if n.endswith(".parquet") and not n.startswith((".", "_")))


def done_files(output, expected_schema):
    """The files an output folder holds already (rows with or without an error). A part of
    another schema (another mode) stops the job; an unreadable part is set aside as
    _unreadable-<name> (readers skip names starting with _) so its files are profiled again."""
    import pyarrow.parquet as pq

    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output {output} is a file: it must be a folder of parquet files (or not exist yet)")
    done = set()
    for part in part_files(output):
        try:
            names = pq.read_schema(part).names
            files = pq.read_table(part, columns=["file"]).column("file").to_pylist()
        except Exception as err:  # noqa: BLE001 - a damaged part: its files are redone
            aside = os.path.join(output, "_unreadable-" + os.path.basename(part))
            print(f"warning: {part} is unreadable ({err}); set aside as {aside}, its files are profiled again")
            os.replace(part, aside)
            continue
        if names != expected_schema.names:
            mode = "--speakers auto" if "speaker" in names else "the clip mode"
            raise ValueError(f"--output {output} holds rows of {mode} ({os.path.basename(part)}): "
                             "write this run to another output folder")
        done.update(files)
    return done


class PartWriter:
    """Appends rows to an output folder as parquet parts of about ``rows_per_part`` rows, or
    whatever arrived within ``seconds`` (each written whole: temporary name, then rename)."""

    def __init__(self, output, schema, rows_per_part=500, seconds=60.0):
        os.makedirs(output, exist_ok=True)
        self.output, self.schema = output, schema
        self.rows_per_part, self.seconds = rows_per_part, seconds
        self.run = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.tables, self.rows, self.count, self.since = [], 0, 0, time.monotonic()

    def add(self, table):
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows >= self.rows_per_part or time.monotonic() - self.since >= self.seconds:
            self.flush()

    def flush(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows:
            name = f"part-{self.run}-{self.count:05d}.parquet"
            tmp = os.path.join(self.output, f".{name}.tmp")
            pq.write_table(pa.concat_tables(self.tables).cast(self.schema), tmp)
            os.replace(tmp, os.path.join(self.output, name))
            self.count += 1
        self.tables, self.rows, self.since = [], 0, time.monotonic()
