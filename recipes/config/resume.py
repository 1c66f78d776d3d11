"""Resuming a run with other options: refused, naming each option that differs.

A resumed run restores its checkpoint (weights, optimizer with its learning rate, scheduler,
epoch): an option changed on the command line would be written to hyperparams.yaml but not
used. So when an output folder already has checkpoints, the recipe now given is compared
with its hyperparams.yaml (what ran); options that a resumed run does use may change
(``RESUMABLE``: more epochs or pruning rounds, checkpoint interval, data-loader workers, where the data lies:
the data itself is checked by recipes/checkpoint.py's DataRecord), any other difference is a
ResumeError. hyperparams.yaml then records the options of the resumed run, which are the
ones that ran.
"""

import io
import os

import ruamel.yaml
from hyperpyyaml import resolve_references

from recipes.config.options import parse_overrides
from recipes.config.recipe_yaml import open_recipe

RESUMABLE = ("number_of_epochs", "max_rounds", "ckpt_interval_minutes", "num_workers", "data_folder", "input_csv",
             "output_folder")


class ResumeError(ValueError):
    """A resumed run given options its checkpoint would not honour."""


def _tree(text):
    return ruamel.yaml.YAML().load(text) or {}


def _dump(value):
    buf = io.StringIO()
    ruamel.yaml.YAML().dump({"v": value}, buf)
    return buf.getvalue()


def _short(value):
    text = _dump(value)[3:].strip()
    return text if len(text) <= 60 and "\n" not in text else text.splitlines()[0][:57] + "..."


def changed_options(hparams_file, overrides, previous_yaml):
    """{key: (what ran, what is asked)} of the top-level keys that differ between the run
    recorded in ``previous_yaml`` (a hyperparams.yaml) and ``hparams_file`` + ``overrides``,
    the RESUMABLE keys left out."""
    with open(previous_yaml) as f:
        old = _tree(f.read())
    asked = parse_overrides(overrides)
    pinned = {k: old[k] for k in RESUMABLE if k in old and not isinstance(old[k], dict)}
    with open_recipe(hparams_file) as f:  # the resumable keys at the old run's values
        new = _tree(resolve_references(f, {**asked, **pinned}).getvalue())
    diff = {}
    for key in sorted(set(old) | set(new), key=str):
        if key in RESUMABLE or str(key).startswith("__"):
            continue
        if _dump(old.get(key)) != _dump(new.get(key)):
            diff[key] = (_short(old.get(key)), _short(new.get(key)))
    return diff


def check_resumed_options(hparams_file, overrides, hparams):
    """Raise ResumeError when the run resumes checkpoints made with other options."""
    checkpointer = hparams.get("checkpointer")
    previous = os.path.join(hparams["output_folder"], "hyperparams.yaml")
    if checkpointer is None or not os.path.isfile(previous) or checkpointer.find_checkpoint() is None:
        return
    diff = changed_options(hparams_file, overrides, previous)
    plain = {k: v for k, v in diff.items() if not any(x.startswith("!") for x in v)}
    diff = plain or diff  # the options given, not the objects built from them
    if diff:
        lines = "; ".join(f"{k}: {old} -> {new}" for k, (old, new) in diff.items())
        raise ResumeError(
            f"{hparams['output_folder']} has checkpoints of a run with other options ({lines}). A resumed run "
            "restores its checkpoint (weights, optimizer and learning rate, epoch), so these would not be used: "
            f"train into another --output_folder, or resume with the options it ran with (only "
            f"{', '.join(RESUMABLE[:-1])} may change on resume)")
