"""Recipe YAMLs that extend shared blocks (HyperPyYAML has no inheritance of its own).

A recipe YAML may name the files it builds on in a top-level ``extends`` key (one path or a
list, relative to the file that names them)::

    extends: ../blocks/train.yaml
    lr: 0.0001                     # replaces the block's lr

The files are merged at the ruamel level, before ``load_hyperpyyaml``: each file's top-level
keys replace those of the files before it (the whole value: no deep merge) and keep the
position where the key first appeared; new keys are appended. A block may extend others.
Top-level ``!include:`` keys are then moved up (after ``seed`` and ``__set_seed``), so that
any key can refer into an included file.
The recipe's own keys come last and command-line overrides after them, so ``--lr=0.001``
works for every key of every block. ``!include:`` paths of every file are rewritten relative
to the recipe file, whose folder is also the base of ``--model=!include:...`` overrides.
A file without ``extends`` is read as it is.

    hparams = load_recipe("hparams/speechocean762/train.yaml", {"lr": 0.001})
"""

import datetime
import io
import os

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from recipes.config.options import OptionError, check_options, parse_overrides

EXTENDS = "extends"
INCLUDE = "!include:"


def open_recipe(path):
    """The recipe at ``path`` with its ``extends`` chain merged in: a text stream named as the
    recipe (HyperPyYAML resolves ``!include:`` relative to the stream's name), usable where
    ``open(path)`` was."""
    with open(path) as f:
        text = f.read()
    yaml = ruamel.yaml.YAML()
    tree = yaml.load(text)
    if isinstance(tree, dict) and EXTENDS in tree:
        main_dir = os.path.dirname(os.path.realpath(path))
        buf = io.StringIO()
        yaml.dump(_includes_first(_merged(path, main_dir, ())), buf)
        text = buf.getvalue()
    stream = io.StringIO(text)
    stream.name = os.path.abspath(path)
    return stream


def load_recipe(path, overrides=None, **kwargs):
    """``load_hyperpyyaml`` of the merged recipe at ``path`` (``overrides``: dict or YAML text);
    every default comes from the blocks it extends (the strict key check is ``load_checked``,
    which the entry scripts use through recipes/config/entry.py)."""
    with open_recipe(path) as f:
        return load_hyperpyyaml(f, overrides, **kwargs)


def save_hyperparams(path, overrides, folder):
    """<folder>/hyperparams.yaml: the resolved merged recipe, as SpeechBrain's
    ``create_experiment_directory(hyperparams_to_save=...)`` writes it for a plain file."""
    with open_recipe(path) as f:
        resolved = resolve_references(f, overrides).getvalue()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as w:
        w.write(f"# Generated {datetime.date.today()} from:\n# {path}\n# yamllint disable\n")
        w.write(resolved)


def _includes_first(tree):
    """The merged mapping in the order HyperPyYAML needs: the seed keys (``seed``, ``__*``:
    the seeding runs before any module is built), then the top-level ``!include:`` keys (a key
    that refers into an included file, ``<model[name]>``, must come after it; a block extended
    first, such as blocks/data.yaml, may refer to one), then every other key in merge order."""
    def is_include(value):
        tag = getattr(getattr(value, "tag", None), "value", None)
        return bool(tag) and tag.startswith(INCLUDE)

    keys = list(tree)
    seeding = [k for k in keys if (k == "seed" or str(k).startswith("__")) and not is_include(tree[k])]
    order = seeding + [k for k in keys if is_include(tree[k])] + \
        [k for k in keys if k not in seeding and not is_include(tree[k])]
    out = ruamel.yaml.comments.CommentedMap()
    for key in order:
        out[key] = tree[key]
    return out


def _merged(path, main_dir, chain):
    """Top-level mapping of ``path`` after merging the files it extends (recursively)."""
    real = os.path.realpath(path)
    if real in chain:
        raise ValueError(f"{path}: 'extends' loops back to a file that extends it")
    with open(path) as f:
        tree = ruamel.yaml.YAML().load(f)
    if tree is None:
        tree = ruamel.yaml.comments.CommentedMap()
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: a recipe YAML must be a mapping of keys")
    here = os.path.dirname(real)
    _rebase_includes(tree, here, main_dir)
    drop_comments(tree)
    bases = tree.pop(EXTENDS, None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged = ruamel.yaml.comments.CommentedMap()
    for base in bases:
        base_path = os.path.join(here, str(base))
        if not os.path.isfile(base_path):
            raise FileNotFoundError(f"{path}: extends {base!r}, but {base_path} does not exist")
        for key, value in _merged(base_path, main_dir, chain + (real,)).items():
            merged[key] = value
    for key, value in tree.items():
        merged[key] = value
    return merged


def _rebase_includes(node, here, main_dir):
    """Rewrite ``!include:<file>`` tags written relative to ``here`` relative to ``main_dir``."""
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", None) if tag is not None else None
    if value and value.startswith(INCLUDE) and here != main_dir:
        target = os.path.normpath(os.path.join(here, value[len(INCLUDE):]))
        node.yaml_set_ctag(ruamel.yaml.tag.Tag(suffix=INCLUDE + os.path.relpath(target, main_dir)))
    if isinstance(node, dict):
        for child in node.values():
            _rebase_includes(child, here, main_dir)
    elif isinstance(node, list):
        for child in node:
            _rebase_includes(child, here, main_dir)


def drop_comments(node):
    """Remove ruamel's comment records: a comment moved by the merge can land between a
    sequence key and its tagged items, where a second round trip loses the tag."""
    ca = getattr(node, "ca", None)
    if ca is not None:
        ca.items.clear()
        ca.comment = None
        if hasattr(ca, "end"):
            ca.end = None
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        drop_comments(child)


def load_checked(hparams_file, overrides=None):
    """Load a recipe YAML (with the blocks it ``extends``) strictly: an unknown key or
    override is an OptionError naming the closest known key (recipes/config/options.py)."""
    with open(hparams_file) as f:
        own = ruamel.yaml.YAML().load(f) or {}
    with open_recipe(hparams_file) as f:
        text = f.read()
    check_options(text, overrides, source=hparams_file, own_keys=list(own))
    missing = [k for k, v in (ruamel.yaml.YAML().load(text) or {}).items()
               if getattr(getattr(v, "tag", None), "value", None) == "!PLACEHOLDER" and k not in parse_overrides(overrides)]
    if missing:
        raise OptionError(f"{hparams_file} needs a value for " + ", ".join(f"--{k}=<...>" for k in missing)
                          + " (a !PLACEHOLDER in the recipe: pass it on the command line)")
    return load_recipe(hparams_file, overrides)
