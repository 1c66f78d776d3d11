"""What the benchmark scripts share: the repository root and where the committed tables go,
the corpora's default folders, running train.py / prune.py in a subprocess with a log (and
resuming a finished run), the demo model of the smoke runs, the machine line of a table,
commands written with paths relative to the repository root, JSON caches and writing a table.

A script finds this module by putting the repository root on ``sys.path`` first (it runs as
``python benchmarks/<script>.py``, with only ``benchmarks/`` on the path); the tests import
the scripts as ``benchmarks.<script>``.
"""

import csv
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TABLES = "benchmarks/results"  # the committed result tables (relative to the repository root)
SO_DATA = "../shared/data/speechocean762-8k"  # corpus folders (relative to the repository root)
CV_DATA = "../shared/data/commonvoice-sample-8k"
SMOKE_DATA = ["--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3"]  # the demo corpus of smoke runs


# ---- paths -----------------------------------------------------------------------------------
def table_path(*parts):
    """The absolute path of a committed result file: benchmarks/results/<parts>."""
    return os.path.join(ROOT, TABLES, *parts)


def in_root(path):
    """A path relative to the repository root made absolute (an absolute one as it is)."""
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def rel(path):
    """``path`` relative to the repository root, unless it lies outside it."""
    r = os.path.relpath(os.path.abspath(path), ROOT)
    return path if r.startswith("..") else r


def strip_root(text):
    """``text`` without the repository root in front of its paths (no machine paths in a table)."""
    return text.replace(ROOT + os.sep, "")


def read_csv(path):
    """The rows of a CSV file, as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- commands ----------------------------------------------------------------------------------
def manifest_clips(path, limit):
    """The rows of a manifest (the first ``limit``; 0: all), wav paths relative to it resolved."""
    rows = read_csv(path)
    rows = rows[:limit] if limit else rows
    folder = os.path.dirname(os.path.abspath(path))
    for r in rows:
        if not os.path.isabs(r["wav"]) and not os.path.exists(r["wav"]):
            r["wav"] = os.path.join(folder, r["wav"])
    return rows


def run_logged(cmd, log, mode="a", check=True):
    """Runs ``cmd`` from the repository root, its output and errors into the file ``log``
    (appended, or written with ``mode="w"``); (return code, seconds). ``check``: a failure
    ends the benchmark, naming the log."""
    t0 = time.time()
    with open(log, mode) as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc and check:
        sys.exit(f"error: {' '.join(cmd)} failed, see {log}")
    return rc, time.time() - t0


def run_once(folder, cmd, log):
    """Runs ``cmd`` (train.py or prune.py writing ``folder``) unless <folder>/results.json exists,
    and remembers its command and wall time in <folder>/bench_command.json: (command text
    without the interpreter, seconds; 0 for a folder made before it was remembered)."""
    info = os.path.join(folder, "bench_command.json")
    if not os.path.isfile(os.path.join(folder, "results.json")):
        os.makedirs(folder, exist_ok=True)
        seconds = run_logged(cmd, log)[1]
        with open(info, "w") as f:
            json.dump({"command": " ".join(cmd[1:]), "seconds": seconds}, f)
    if os.path.isfile(info):
        with open(info) as f:
            d = json.load(f)
        return d["command"], d["seconds"]
    older = os.path.join(folder, "bench_command.txt")  # what benchmarks/core_recipe.py wrote before
    if os.path.isfile(older):
        with open(older) as f:
            text, seconds = f.read().splitlines()[:2]
        return text, float(seconds)
    return " ".join(cmd[1:]), 0.0


def demo_train_command(out, data, *extra):
    """train.py on the small demo corpus (generated into ``data``), as tests/conftest.py's tiny_run."""
    return [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={out}", f"--data_folder={data}",
            *SMOKE_DATA, "--noprogressbar", *extra]


def demo_model(folder, data, log):
    """A 1-epoch demo model in ``folder`` (smoke runs), trained unless its results.json exists."""
    if not os.path.isfile(os.path.join(folder, "results.json")):
        os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
        run_logged(demo_train_command(folder, data, "--number_of_epochs=1"), log, mode="w")
    return folder


def command_item(command, seconds=None):
    """A table's list item of a command run (text without the interpreter) and its wall time."""
    return f"- `python {strip_root(command)}`" + ("" if seconds is None else f" ({seconds / 60:.0f} min)")


def script_command(script, *args):
    """The command line of a benchmark script (its ``__file__``) with ``args``, from the repository root."""
    return strip_root(" ".join(["python", rel(script), *(a for a in args if a)]))


def argv_without(argv, options):
    """``argv`` without ``options`` and their values (``--opt VALUE`` or ``--opt=VALUE``: texts a
    table prints anyway); (the arguments kept, whether any was left out)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif a.split("=", 1)[0] not in options:
            kept.append(a)
    return kept, len(kept) < len(argv)


# ---- results -------------------------------------------------------------------------------
def machine(*details, gpu="no GPU"):
    """The machine line of a table: "<CPU model>, <n> CPU cores[, details][, gpu]"."""
    from recipes.compression.report import cpu_model

    return ", ".join([cpu_model(), f"{os.cpu_count()} CPU cores", *details] + ([gpu] if gpu else []))


def cached_json(path, key, compute, indent=None):
    """The dict kept in the JSON file ``path`` when it holds ``key`` (a dict), else
    ``{**key, **compute()}``, written there first (a slow evaluation made again only when what
    it depends on changes)."""
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if {k: saved.get(k) for k in key} == key:
            return saved
    record = {**key, **compute()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=indent)
    return record


def write_markdown(path, lines, echo=True):
    """Writes a markdown table (a list of lines, or the whole text) to ``path`` and, with
    ``echo``, prints it; returns the text without its last newline."""
    text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    text = text.rstrip("\n")
    if echo:
        print(text)
    return text


def teacher_hparam(teacher, key):
    """A top-level value of a trained folder's hyperparams.yaml (None when absent)."""
    with open(os.path.join(teacher, "hyperparams.yaml")) as f:
        m = re.search(rf"^{key}: (.+)$", f.read(), re.M)
    return m.group(1).strip() if m else None


def teacher_manifests(teacher):
    """The manifest folder a teacher was trained on: its own manifests/, or the folder its
    run named with --manifest_folder (resolved from the repository root, like train.py)."""
    own = os.path.join(teacher, "manifests")
    named = teacher_hparam(teacher, "manifest_folder")
    if os.path.isdir(own) or not named:
        return own
    return named if os.path.isabs(named) else os.path.join(ROOT, named)
