"""What a folder of manifests was made from, so a changed input is prepared again.

Preparation writes ``prep_record.json`` next to the manifests: the script, each input
file's path, size, modification time and SHA-256 (the input CSV / TSV / Kaldi lists, not
the audio), and the options. The next run with the same output folder reuses the
manifests only when the record matches; when the input or an option changed, it
prepares again and says why. Manifests without a record (written by hand or by an older
version) are reused with a warning.
"""

import hashlib
import json
import logging
import os

logger = logging.getLogger(__name__)
RECORD = "prep_record.json"


def file_fingerprint(path):
    """Path, size, mtime and SHA-256 of a file."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": h.hexdigest()}


def make_record(script, inputs, options):
    """The record of a preparation: script name, input file fingerprints, options (JSON)."""
    return json.loads(json.dumps({"script": script, "inputs": [file_fingerprint(p) for p in inputs],
                                  "options": options}, default=_jsonable))


def _jsonable(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def _comparable(record):
    """The record without mtimes (a touched but unchanged file is the same input)."""
    inputs = [{k: v for k, v in i.items() if k != "mtime_ns"} for i in record.get("inputs", [])]
    return {"script": record.get("script"), "inputs": inputs, "options": record.get("options")}


def why_prepare(save_folder, outputs, record, overwrite=False):
    """None when the manifests in ``outputs`` can be reused, else the reason to prepare."""
    if overwrite:
        return "overwrite requested"
    missing = [p for p in outputs.values() if not os.path.isfile(p)]
    if missing:
        return f"{len(missing)} manifest(s) missing"
    path = os.path.join(save_folder, RECORD)
    if not os.path.isfile(path):
        logger.warning("manifests exist in %s without %s (hand-made or older): reusing them as they are; "
                       "delete them to prepare again", save_folder, RECORD)
        return None
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return f"{path} is unreadable"
    a, b = _comparable(old), _comparable(record)
    if a == b:
        logger.info("manifests in %s are up to date (%s), skipping preparation", save_folder, RECORD)
        return None
    if a["inputs"] != b["inputs"]:
        return "the input changed since the manifests were written"
    return "the options changed since the manifests were written"


def write_record(save_folder, record):
    os.makedirs(save_folder, exist_ok=True)
    path = os.path.join(save_folder, RECORD)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    return path


def clear_record(save_folder):
    """Remove the record before preparing (an interrupted preparation is never reused)."""
    path = os.path.join(save_folder, RECORD)
    if os.path.isfile(path):
        os.remove(path)
