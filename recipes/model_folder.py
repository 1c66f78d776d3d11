"""The trained-folder format: the one module that writes and reads it.

A **trained folder** is what train.py (and prune.py, the LCMR student extraction) writes:

    <folder>/inference.yaml       the modules inference builds (features, normaliser, encoder,
                                  heads, label space, speech thresholds, MKD switches)
    <folder>/save/CKPT+*/         SpeechBrain checkpoints; inference takes the one with the
                                  highest ``mean_f1`` (``best_checkpoint``)
    <folder>/teacher/             an MKD student's copy of its teacher (inference.yaml + best
                                  checkpoint), when its heads read [student; teacher]
    <folder>/teacher_norm.pt      that teacher's feature statistics re-estimated on the
                                  student's audio (``teacher_adapt_norm``), if any
    <folder>/pretrained/          the SpeechBrain pretrained folder of the best checkpoint,
                                  refreshed when a later checkpoint becomes the best one

An **exported folder** (``export_pretrained``: ``<folder>/pretrained`` or export.py's --out)
holds ``hyperparams.yaml`` (``checkpoint:`` + the trained folder's inference.yaml + the options
of hparams/blocks/interface.yaml), ``encoder.ckpt``, ``heads.ckpt``, ``normalizer.ckpt``,
``custom_interface.py`` and, for an MKD student, ``teacher/`` and ``teacher_norm.pt``. A folder
whose encoder weights are rebuilt exactly by its YAML (a frozen encoder read from an installed
package, the GE2E wheel) may leave ``encoder.ckpt`` out (``drop_rebuilt_weights``).
The name ``builtin`` is the profile shipped in the repository (``BUILTIN_DIR``, docs/builtin_profile.md).
docs/deploy.md describes both for users. Folders written before this module existed load
unchanged (tests/fixtures/legacy_*).
"""

import io
import logging
import os
import shutil

import ruamel.yaml
import torch
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

from recipes.config.recipe_yaml import drop_comments

logger = logging.getLogger(__name__)

INFERENCE_YAML = "inference.yaml"
SAVE_DIR = "save"
TEACHER_DIR = "teacher"
TEACHER_NORM = "teacher_norm.pt"
PRETRAINED_DIR = "pretrained"
PRETRAINED_YAML = "hyperparams.yaml"
BEST_KEY = "mean_f1"  # the checkpoint meta key that ranks checkpoints
WEIGHTS = ("encoder", "heads", "normalizer")  # checkpoint names, as in the training YAMLs
# the keys of a recipe that inference needs (see recipes/inference/model.py)
INFERENCE_KEYS = ("sample_rate", "compute_features", "mean_var_norm", "encoder", "heads",
                  "label_space", "mkd", "concat_teacher", "teacher_folder", "speech")
# exported folders of models trained without MKD still get the keys the interface refers to
MKD_DEFAULTS = {"mkd": False, "concat_teacher": False, "teacher_folder": None}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERFACE_TEMPLATE = os.path.join(ROOT, "hparams", "blocks", "interface.yaml")
BUILTIN = "builtin"  # the profile shipped in the repository (docs/builtin_profile.md)
BUILTIN_DIR = os.path.join(ROOT, "recipes", "builtin_profile")
SHIM = ('"""Entry point for speechbrain.inference.interfaces.foreign_class (needs the project '
        'on the Python path)."""\n\nfrom recipes.inference.interface import SpeakerProfilerInterface  # noqa: F401\n')


# ---- what a folder is ------------------------------------------------------------------
def resolve_folder(folder):
    """``builtin`` (when no such folder exists here) is the shipped profile's folder; any other
    name is a path, returned as given."""
    if str(folder) == BUILTIN and not os.path.exists(BUILTIN):
        return BUILTIN_DIR
    return folder


def is_trained(folder):
    return os.path.isfile(os.path.join(str(folder), INFERENCE_YAML))


def is_exported(folder):
    return os.path.isfile(os.path.join(str(folder), PRETRAINED_YAML)) and not is_trained(folder)


def require_trained(folder, what="a train.py output folder"):
    if not is_trained(folder):
        raise FileNotFoundError(f"{os.path.join(str(folder), INFERENCE_YAML)} not found: is {folder} {what}?")


# ---- inference.yaml ------------------------------------------------------------------------
def _yaml():
    yaml = ruamel.yaml.YAML()
    yaml.width = 4096
    return yaml


def read_tree(path):
    """The YAML file at ``path`` as a ruamel mapping (tags kept, not constructed)."""
    with open(path) as f:
        return _yaml().load(f) or CommentedMap()


def inference_tree(folder):
    require_trained(folder)
    return read_tree(os.path.join(str(folder), INFERENCE_YAML))


def _dump(tree):
    buf = io.StringIO()
    _yaml().dump(tree, buf)
    return buf.getvalue()


def _write_atomic(path, text=None, copy_from=None):
    tmp = f"{path}.tmp{os.getpid()}"
    if copy_from is not None:
        shutil.copyfile(copy_from, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(text)
    os.replace(tmp, path)


def write_inference_yaml(folder, tree, note="train.py"):
    """<folder>/inference.yaml from a ruamel mapping, atomically."""
    os.makedirs(str(folder), exist_ok=True)
    header = f"# Written by {note}: the modules inference needs. Weights: {SAVE_DIR}/CKPT+*\n"
    _write_atomic(os.path.join(str(folder), INFERENCE_YAML), header + _dump(tree))


def write_recipe_inference_yaml(hparams_file, overrides, folder, head_input=None):
    """The inference keys of a recipe (resolved, with its ``extends`` and ``overrides``) as
    <folder>/inference.yaml, so the folder is self-contained. An MKD student whose heads read
    its teacher's embedding too gets ``teacher_folder: teacher`` (its stored copy) and the
    heads' input size as built for training (``head_input``)."""
    from hyperpyyaml import resolve_references

    from recipes.config.recipe_yaml import open_recipe

    with open_recipe(hparams_file) as f:
        tree = _yaml().load(resolve_references(f, overrides).getvalue())
    subset = CommentedMap((k, tree[k]) for k in INFERENCE_KEYS if k in tree)
    if head_input is not None and "heads" in subset:
        subset["heads"]["input_size"] = int(head_input)
    if subset.get("mkd") and subset.get("concat_teacher"):
        subset["teacher_folder"] = TEACHER_DIR
    write_inference_yaml(folder, subset)


def copy_inference_yaml(src, dest, edit=None, note=None):
    """<dest>/inference.yaml from <src>'s (prune.py, the LCMR student); ``edit`` changes the
    tree first (structured pruning: the encoder at the pruned widths)."""
    if edit is None:
        require_trained(src)
        os.makedirs(str(dest), exist_ok=True)
        _write_atomic(os.path.join(str(dest), INFERENCE_YAML), copy_from=os.path.join(str(src), INFERENCE_YAML))
        return
    write_inference_yaml(dest, edit(inference_tree(src)), note=note or "prune.py")


def tagged(tag, value):
    """A YAML node carrying a HyperPyYAML tag: ``tagged("!ref", "<encoder>")``, or a mapping
    ``tagged("!apply:module.function", {...})``."""
    if isinstance(value, dict):
        node = CommentedMap(value)
        node.yaml_set_ctag(ruamel.yaml.tag.Tag(suffix=tag))
        return node
    return TaggedScalar(value=value, tag=tag)


def flow_list(values):
    """A YAML list written on one line (``[64, 268, 1]``)."""
    seq = CommentedSeq(list(values))
    seq.fa.set_flow_style()
    return seq


def resolve_teacher_folder(teacher_folder, model_folder=None):
    """The teacher of the model in ``model_folder``: its stored copy when there is one, else
    ``teacher_folder`` (relative to ``model_folder`` if it is a folder there, else as given)."""
    if model_folder:
        stored = os.path.join(str(model_folder), TEACHER_DIR)
        if is_trained(stored):
            return stored
        if teacher_folder and not os.path.isabs(str(teacher_folder)):
            inside = os.path.join(str(model_folder), str(teacher_folder))
            if is_trained(inside):
                return inside
    return teacher_folder


def load_inference_hparams(folder, overrides=None):
    """HyperPyYAML of <folder>/inference.yaml (objects built), an MKD student's teacher
    resolved to its stored copy."""
    from hyperpyyaml import load_hyperpyyaml

    require_trained(folder)
    with open(os.path.join(str(folder), INFERENCE_YAML)) as f:
        text = f.read()
    overrides = dict(overrides or {})
    teacher = _yaml().load(text).get("teacher_folder")
    if teacher not in (None, "null", "None"):
        overrides.setdefault("teacher_folder", resolve_teacher_folder(str(teacher), folder))
    return load_hyperpyyaml(text, overrides)


def label_space_tree(folder):
    """The label space of a trained or exported folder as plain data (genders, age_bins,
    hierarchy), without building any module."""
    name = INFERENCE_YAML if is_trained(folder) else PRETRAINED_YAML
    node = read_tree(os.path.join(str(folder), name)).get("label_space")
    if not isinstance(node, dict) or "age_bins" not in node:
        raise FileNotFoundError(f"{folder}: no label_space in {name}")
    return {k: _plain(node[k]) for k in ("genders", "age_bins", "hierarchy") if k in node}


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def encoder_class_name(folder):
    """The tag of the encoder a trained folder builds (``!new:recipes.encoders.GE2EEncoder``)."""
    node = inference_tree(folder).get("encoder")
    tag = getattr(getattr(node, "tag", None), "value", None)
    return tag or ""


# ---- checkpoints -----------------------------------------------------------------------
def best_checkpoint(folder):
    """The checkpoint of a trained folder that inference uses (highest ``mean_f1``)."""
    from speechbrain.utils.checkpoints import Checkpointer

    save = os.path.join(str(folder), SAVE_DIR)
    ckpt = Checkpointer(save).find_checkpoint(max_key=BEST_KEY) if os.path.isdir(save) else None
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {save}")
    return ckpt


def recover_best(folder, recoverables):
    """Load ``recoverables`` (name -> module) from the best checkpoint of ``folder``; the
    names it lacks are left as they are. Returns the checkpoint."""
    from speechbrain.utils.checkpoints import Checkpointer

    ckpt = Checkpointer(os.path.join(str(folder), SAVE_DIR), recoverables=recoverables,
                        allow_partial_load=True).recover_if_possible(max_key=BEST_KEY)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(str(folder), SAVE_DIR)}")
    return ckpt


# ---- an MKD student's teacher ------------------------------------------------------------
def teacher_emb_dim(teacher_folder, model_folder=None):
    """Embedding size of the teacher's encoder, read from the teacher's folder."""
    folder = resolve_teacher_folder(teacher_folder, model_folder)
    if not folder or not is_trained(folder):
        raise FileNotFoundError(
            f"teacher_folder {folder}: no {INFERENCE_YAML} there. Train the teacher first (train.py on the "
            "corpus recipe) and pass its output folder as --teacher_folder=<folder>")
    return int(load_inference_hparams(folder)["encoder"].emb_dim)


def store_teacher(teacher_folder, model_folder):
    """Copy the teacher's inference.yaml and best checkpoint into ``<model_folder>/teacher``,
    atomically (the student folder is then self-contained); a no-op when stored."""
    dest = os.path.join(str(model_folder), TEACHER_DIR)
    if is_trained(dest):
        return dest
    ckpt = best_checkpoint(teacher_folder)
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt.path, os.path.join(tmp, SAVE_DIR, ckpt.path.name))
    shutil.copyfile(os.path.join(str(teacher_folder), INFERENCE_YAML), os.path.join(tmp, INFERENCE_YAML))
    os.replace(tmp, dest)
    return dest


def save_normalizer(norm, path):
    """Global mean/std of an InputNormalization, written atomically."""
    import torch

    torch.save({"glob_mean": norm.glob_mean.cpu(), "glob_std": norm.glob_std.cpu()}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_normalizer(norm, path, device="cpu"):
    import torch

    stats = torch.load(path)
    norm.glob_mean, norm.glob_std = stats["glob_mean"].to(device), stats["glob_std"].to(device)


def teacher_norm_path(folder):
    """<folder>/teacher_norm.pt when the folder has one, else None."""
    path = os.path.join(str(folder), TEACHER_NORM)
    return path if os.path.isfile(path) else None


# ---- the SpeechBrain pretrained folder -----------------------------------------------------
def export_pretrained(folder, out_dir=None):
    """Write the SpeechBrain pretrained folder of a trained folder (default
    ``<folder>/pretrained``) from its best checkpoint. Returns ``out_dir``."""
    out_dir = out_dir or os.path.join(str(folder), PRETRAINED_DIR)
    body = inference_tree(folder)
    ckpt = best_checkpoint(folder)
    os.makedirs(out_dir, exist_ok=True)
    for name in WEIGHTS:
        _write_atomic(os.path.join(out_dir, f"{name}.ckpt"), copy_from=ckpt.paramfiles[name])
    if teacher_norm_path(folder):
        _write_atomic(os.path.join(out_dir, TEACHER_NORM), copy_from=teacher_norm_path(folder))
    teacher = os.path.join(str(folder), TEACHER_DIR)  # an MKD student's stored teacher (heads read Z)
    if os.path.isdir(teacher) and not os.path.isdir(os.path.join(out_dir, TEACHER_DIR)):
        shutil.copytree(teacher, os.path.join(out_dir, TEACHER_DIR))
    tree = CommentedMap(checkpoint=ckpt.path.name)
    tree.update(body)  # the training recipe's keys win (its speech thresholds among them)
    for key, value in MKD_DEFAULTS.items():
        tree.setdefault(key, value)
    template = read_tree(INTERFACE_TEMPLATE)
    drop_comments(template)  # a comment moved by the merge can cost a tag its items
    for key, value in template.items():
        tree.setdefault(key, value)
    drop_comments(tree)
    shown = os.path.relpath(str(folder)) if not os.path.relpath(str(folder)).startswith("..") else str(folder)
    _write_atomic(os.path.join(out_dir, "custom_interface.py"), SHIM)
    _write_atomic(os.path.join(out_dir, PRETRAINED_YAML),  # last: marks the export done
                  f"# Written by recipes/model_folder.py from {shown}\n" + _dump(tree))
    return out_dir


def exported_checkpoint(pretrained_dir):
    """Name of the checkpoint a pretrained folder was exported from (None if absent)."""
    path = os.path.join(pretrained_dir, PRETRAINED_YAML)
    return read_tree(path).get("checkpoint") if os.path.isfile(path) else None


INTERFACE_KEYS_ADDED = ("drop_non_speech", "bf16_autocast")  # interface.yaml keys older exports lack


def has_interface_options(pretrained_dir):
    """Whether a pretrained folder's hyperparams.yaml has every option interface.yaml gained since
    the first exports (the speech options, bf16_autocast)."""
    tree = read_tree(os.path.join(pretrained_dir, PRETRAINED_YAML))
    return all(key in tree for key in INTERFACE_KEYS_ADDED)


def pretrained_source(folder):
    """The pretrained folder to load for ``folder`` (trained: refreshed if stale; exported: itself;
    ``builtin``: the shipped profile)."""
    folder = resolve_folder(folder)
    if is_trained(folder):
        out = os.path.join(str(folder), PRETRAINED_DIR)
        if exported_checkpoint(out) != best_checkpoint(folder).path.name or not has_interface_options(out):
            export_pretrained(folder, out)  # a newer checkpoint, or an export older than the interface options
        return out
    if os.path.isfile(os.path.join(str(folder), PRETRAINED_YAML)):
        return str(folder)
    raise FileNotFoundError(f"{folder} is neither a train.py output folder ({INFERENCE_YAML}) "
                            f"nor an exported folder ({PRETRAINED_YAML})")


def drop_rebuilt_weights(out_dir):
    """Leave ``encoder.ckpt`` out of the exported ``out_dir`` when the encoder its
    hyperparams.yaml builds holds exactly those weights already (a frozen encoder read from an
    installed package: the folder ships the heads alone). Returns True when it was left out."""
    from hyperpyyaml import load_hyperpyyaml

    yaml_path, ckpt = os.path.join(out_dir, PRETRAINED_YAML), os.path.join(out_dir, "encoder.ckpt")
    with open(yaml_path) as f:
        fresh = load_hyperpyyaml(f)["encoder"].state_dict()
    saved = torch.load(ckpt, map_location="cpu")
    if saved.keys() != fresh.keys() or not all(torch.equal(saved[k], fresh[k]) for k in saved):
        return False
    tree = read_tree(yaml_path)  # its header comment stays with the tree
    del tree["pretrainer"]["loadables"]["encoder"]
    _write_atomic(yaml_path, _dump(tree))
    os.remove(ckpt)
    return True
