"""What infer.py prints: a table row or a JSON record per input, the reason an input cannot
be read, and the interface options its command line sets."""

import argparse
import json
import math

from recipes.labels import TASKS

CLIP_WARNING = 0.01  # clipped_fraction above which infer.py warns on stderr
UNSET = object()  # option not given: the folder's YAML value


def threshold(value):
    """A dB value, or 'off' (None)."""
    return None if value.lower() in ("off", "none") else float(value)


def positive(kind, allow_zero=False):
    """An argparse type: a finite number of ``kind`` (int or float) above 0 (or 0 too)."""
    def parse(value):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{value} must be a finite number {'>= 0' if allow_zero else 'above 0'}")
        return number
    return parse


non_negative = positive(float, allow_zero=True)


def add_interface_options(ap):
    """The interface options of infer.py (and profile_archive.py) on an argparse parser: each
    left out keeps the folder's YAML value (``overrides_from`` reads them back)."""
    ap.add_argument("--window", type=positive(float), default=UNSET,
                    help="window length in seconds (default: the folder's YAML, 4.0)")
    ap.add_argument("--hop", type=positive(float), default=UNSET, help="hop between windows in seconds (default 2.0)")
    ap.add_argument("--silence-db", type=threshold, default=UNSET,
                    help="frames this many dB below the file's loudest frame are non-speech; 'off' "
                         "(default: the folder's speech.threshold_db, 40)")
    ap.add_argument("--floor-dbfs", type=threshold, default=UNSET,
                    help="frames below this RMS level (dBFS) are non-speech; 'off' (default: speech.floor_dbfs, -60)")
    ap.add_argument("--min-speech", type=non_negative, default=UNSET,
                    help="seconds of speech below which a file is 'silent' (default: speech.min_speech_seconds, 0.5)")
    ap.add_argument("--batch", type=positive(int), default=UNSET, help="windows per forward pass (default 32)")
    ap.add_argument("--bf16", action="store_true",
                    help="run the model under bfloat16 autocast (CPUs with AVX512-BF16 / AMX, GPUs): faster, "
                         "probabilities within about 0.05 of float32 (bf16_autocast)")


def overrides_from(args):
    """The interface options given on the command line (None = a threshold turned off)."""
    names = {"window": "window_seconds", "hop": "hop_seconds", "batch": "window_batch_size"}
    out = {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not UNSET}
    if getattr(args, "bf16", False):
        out["bf16_autocast"] = True
    speech = {"silence_db": "threshold_db", "floor_dbfs": "floor_dbfs", "min_speech": "min_speech_seconds"}
    speech = {key: getattr(args, arg) for arg, key in speech.items() if getattr(args, arg) is not UNSET}
    if speech:  # merged into the folder's speech block (SpeechConfig)
        out["speech"] = speech
    return out


def age_cell(res):
    """[years (+- sigma)] of the age head, [] for a model without one."""
    if "age_years" not in res:
        return []
    if res["age_years"] is None:
        return ["-"]
    sigma = res.get("age_sigma")
    return [f"{res['age_years']:.1f}" + (f"+-{sigma:.1f}" if sigma is not None else "")]


def table_row(path, res):
    if res["silent"]:
        return "\t".join([path] + ["-"] * 6 + age_cell(res) + [f"0/{res['n_windows']}", "silent"])
    cells = [f"{res[t]['label']}\t{res[t]['prob']:.3f}" for t in TASKS] + age_cell(res)
    note = (f"\thierarchy-adjusted (raw: {res['age_sup_raw']} / {res['age_sub_raw']})"
            if res["hierarchy_adjusted"] else "")
    return "\t".join([path] + cells + [f"{res['n_speech_windows']}/{res['n_windows']}"]) + note


def jsonable(value):
    """A result value as JSON-ready data: tensors and numpy numbers as lists and numbers, the
    embedding left out (the service's responses, the archive's JSON columns)."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k != "embedding"}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def json_row(path, res, with_embedding):
    out = {"file": path, **{k: v for k, v in res.items() if k != "embedding"}}
    if with_embedding and res["embedding"] is not None:
        out["embedding"] = [round(x, 6) for x in res["embedding"].tolist()]
    return json.dumps(out)


CALL_HEADER = "file\tspeaker\trole\tspeech_s\tgender\tp\tage_sup\tp\tage_sub\tp\tconfidence"


def call_json(rec):
    """A speaker record of a call as JSON-ready data (numbers as floats, no embedding)."""
    out = {k: v for k, v in rec.items() if k != "embedding"}
    out["segments"] = [[float(a), float(b)] for a, b in rec.get("segments", [])]
    out["speech_seconds"] = float(rec.get("speech_seconds") or 0.0)
    return out


def call_row(rec):
    """A tab-separated table row of a speaker record (the CSV table of the call mode)."""
    if rec.get("speaker") is None:
        return f"{rec['file']}\t-\t-\t0\t" + "\t".join(["-"] * 6) + "\t-\tno speech"
    cells = [f"{rec[t]['label']}\t{rec[t]['prob']:.3f}" for t in TASKS]
    return "\t".join([rec["file"], rec["speaker"], rec["role"], f"{float(rec['speech_seconds']):.1f}", *cells,
                      f"{rec['confidence']:.2f}"])
