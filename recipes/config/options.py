"""Strict recipe options: every top-level key a recipe may set is declared, with its default,
in a shared block of ``hparams/blocks/`` (the one source of defaults and of known keys).

A misspelt key (``--teacher_cach=False`` or ``teacher_cach: False`` in a YAML) would
otherwise silently leave a feature at its default; here it is an error naming the closest
known key. A top-level key is known when a block declares it, when another key of the same
recipe refers to it (``<key>``), when it is one of SpeechBrain's run options, or when its
name starts with ``__`` (hyperpyyaml's run-only keys, e.g. ``__set_seed``).
"""

import difflib
import functools
import glob
import os
import re

import ruamel.yaml

BLOCKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "hparams", "blocks")
REF = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)")


class OptionError(KeyError):
    """A YAML key or command-line override that no recipe knows."""

    def __str__(self):
        return self.args[0]


@functools.lru_cache(maxsize=1)
def block_keys():
    """The top-level keys the shared blocks (hparams/blocks/*.yaml) declare."""
    keys = set()
    for path in glob.glob(os.path.join(BLOCKS, "*.yaml")):
        with open(path) as f:
            keys |= set(ruamel.yaml.YAML().load(f) or {})
    return keys - {"extends"}


@functools.lru_cache(maxsize=1)
def run_option_keys():
    """SpeechBrain's run options (ckpt_interval_minutes, precision, ...): a recipe YAML may set them."""
    from speechbrain.core import RunOptions

    return set(RunOptions().as_dict())


def _closest(key, known):
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def parse_overrides(overrides):
    """Overrides as SpeechBrain passes them (a YAML string) or a dict -> dict."""
    if not overrides:
        return {}
    if isinstance(overrides, str):
        return dict(ruamel.yaml.YAML().load(overrides) or {})
    return dict(overrides)


def check_options(yaml_text, overrides=None, source="hparams", own_keys=None):
    """Raise OptionError for a key of the recipe or of ``overrides`` that no block declares
    and nothing refers to. ``yaml_text``: the recipe merged with the blocks it extends
    (unresolved); ``own_keys``: the recipe file's own top-level keys (default: every key of
    ``yaml_text``), the ones checked. Returns the merged top-level keys."""
    tree = ruamel.yaml.YAML().load(yaml_text) or {}
    keys = set(tree)
    own = keys if own_keys is None else set(own_keys) - {"extends"}
    refs = set(REF.findall(yaml_text))
    known = block_keys() | refs | run_option_keys() | (keys - own)
    for key in sorted(own):
        if not str(key).startswith("__") and key not in known:
            raise OptionError(f"{source}: unknown key {key!r} (no block declares it, nothing refers to it)"
                              f"{_closest(key, known)}")
    known = keys | refs | run_option_keys()  # an override sets a key of this recipe
    for key in parse_overrides(overrides):
        if key not in known:
            raise OptionError(f"unknown option --{key}{_closest(key, known)}")
    return keys
