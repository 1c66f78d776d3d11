"""The rows of an archive job: one parquet schema per mode and the worker that turns a batch of
files into rows (no Ray here: recipes/archive/job.py runs ``ArchiveWorker`` in Ray actors).

A row holds the keys ``infer.py --json`` prints for a file (with ``--speakers auto``: one row per
speaker, the keys of the call mode's records). Types are fixed, so every part file of an output
has the same schema whatever its files gave (a part of only bad files too): numbers and flags
as parquet numbers and booleans, the nested values (``gender`` / ``age_sup`` / ``age_sub``
``{"label", "prob", "probs"}``, a call's ``segments`` and ``call``) as JSON text, plus flat
``<task>_label`` / ``<task>_prob`` columns to filter on. ``error`` is null for a profiled file
and the reason for a file that could not be profiled (then only ``file`` is set).
"""

import json

import pyarrow as pa

from recipes.inference.records import jsonable
from recipes.labels import TASKS

STR, F64, I64, BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
CLIP_COLUMNS = [("file", STR), ("error", STR), ("silent", BOOL), ("speech_seconds", F64), ("clipped_fraction", F64),
                ("n_windows", I64), ("n_speech_windows", I64),
                *[(t, STR) for t in TASKS],  # JSON {"label", "prob", "probs": {label: p}}
                *[c for t in TASKS for c in ((f"{t}_label", STR), (f"{t}_prob", F64))],
                ("age_sup_raw", STR), ("age_sub_raw", STR), ("hierarchy_adjusted", BOOL),
                ("age_years", F64), ("age_sigma", F64)]
CALL_COLUMNS = [("speaker", STR), ("role", STR), ("agent", STR), ("agent_similarity", F64), ("channel", I64),
                ("segments", STR), ("confidence", F64), ("call", STR)]  # segments, call: JSON


def schema(call=False):
    """The parquet schema of an output: clip mode, or the call mode's per-speaker rows."""
    return pa.schema(CLIP_COLUMNS + (CALL_COLUMNS if call else []))


def to_row(record, columns):
    """A result dict (or an error record) -> {column: value} of the schema's types."""
    row = {}
    for name, kind in columns:
        if name.endswith(("_label", "_prob")) and name.rsplit("_", 1)[0] in TASKS:
            task = record.get(name.rsplit("_", 1)[0]) or {}
            value = task.get(name.rsplit("_", 1)[1])
        else:
            value = record.get(name)
        if value is not None and kind == STR and not isinstance(value, str):
            value = json.dumps(jsonable(value))
        elif value is not None and kind in (F64, I64):
            value = float(value) if kind == F64 else int(value)
        row[name] = value
    return row


def error_row(file, message):
    return {"file": file, "error": message}


class ArchiveWorker:
    """Holds one SpeakerProfilerInterface (one per Ray actor); called with a pyarrow batch of
    ``file`` (the name written to the output) and ``path`` (where to read it), returns the rows
    of those files as a pyarrow table. A file that cannot be profiled (any error) gives an
    error row and never fails the batch."""

    def __init__(self, folder, overrides=None, speakers=None, caller_channel=None, agents=None, threads=1):
        import torch

        from recipes.inference.interface import SpeakerProfilerInterface

        torch.set_num_threads(max(1, int(threads)))
        self.profiler = SpeakerProfilerInterface.from_folder(folder, "cpu", overrides=overrides)
        self.call = speakers == "auto"
        self.call_options = {"caller_channel": caller_channel, "agents": agents}
        self.schema = schema(self.call)
        self.columns = list(zip(self.schema.names, self.schema.types))

    def __call__(self, batch):
        files, paths = batch.column("file").to_pylist(), batch.column("path").to_pylist()
        records = []
        for file, path, recs in zip(files, paths, self.profile(paths)):
            for rec in recs:
                rec = dict(rec, file=file)
                if rec.get("error"):  # the file's words, not the path this worker opened
                    rec = error_row(file, str(rec["error"]).replace(path, file))
                records.append(rec)
        return pa.Table.from_pylist([to_row(r, self.columns) for r in records], schema=self.schema)

    def profile(self, paths):
        """Per path, the list of its records (an error record for a file that failed). One file
        per forward pass, as infer.py: the same numbers (padding windows of several files into
        one batch moves the probabilities by about 1e-4)."""
        if self.call:
            return [self.guarded(self.profiler.profile_call, p, **self.call_options) for p in paths]
        return [self.guarded(self.profiler.classify_file, p) for p in paths]

    @staticmethod
    def guarded(fn, path, **kwargs):
        """fn(path) as a list of records, or [an error record] naming what went wrong."""
        from recipes.data.audio import AudioError

        try:
            out = fn(path, **kwargs)
        except AudioError as err:
            return [error_row(path, str(err))]
        except Exception as err:  # noqa: BLE001 - one bad file never fails the job
            return [error_row(path, f"{type(err).__name__}: {err} ({path})")]
        return out if isinstance(out, list) else [out]
