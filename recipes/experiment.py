"""Glue shared by the entry scripts: datasets from manifests, the inference YAML."""

import io
import logging
import os

import ruamel.yaml
from hyperpyyaml import resolve_references

from recipes.data.manifest import check_speaker_disjoint, validate_manifest
from recipes.data.pipelines import make_dataset

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
# what a trained folder needs to run inference (see recipes/inference.py)
INFERENCE_KEYS = ("sample_rate", "compute_features", "mean_var_norm", "encoder", "heads",
                  "label_space", "mkd", "concat_teacher", "teacher_folder")


def manifest_paths(hparams):
    return {s: os.path.join(hparams["manifest_folder"], f"{s}.csv") for s in SPLITS}


def build_datasets(hparams):
    """Validate the manifests (labels, files, speaker-disjoint splits), then make datasets."""
    paths = manifest_paths(hparams)
    for split, path in paths.items():
        rows = validate_manifest(path, hparams["label_space"])
        logger.info("%s: %d utterances, %d speakers", path, len(rows), len({r['spk_id'] for r in rows}))
    check_speaker_disjoint(paths)
    ls, sr = hparams["label_space"], hparams["sample_rate"]
    # optional degraded domain (student of MKD): channel on train/valid, and on test
    train_ch, test_ch = hparams.get("train_channel"), hparams.get("test_channel")
    noise = dict(label_noise_rate=hparams.get("label_noise_rate", 0.0),
                 label_noise_seed=hparams.get("seed", 0))
    return {
        "train": make_dataset(paths["train"], ls, sr, crop_seconds=hparams["crop_seconds"],
                              channel=train_ch, **noise),
        "valid": make_dataset(paths["valid"], ls, sr, sort=True, channel=train_ch),
        "test": make_dataset(paths["test"], ls, sr, sort=True, channel=test_ch),
    }


def write_inference_yaml(hparams_file, overrides, path, keys=INFERENCE_KEYS):
    """Resolved YAML with just the keys inference needs (the trained folder is self-contained)."""
    with open(hparams_file) as f:
        resolved = resolve_references(f, overrides).getvalue()
    yaml = ruamel.yaml.YAML()
    tree = yaml.load(resolved)
    subset = {k: tree[k] for k in keys if k in tree}
    buf = io.StringIO()
    yaml.dump(subset, buf)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("# Written by train.py: the modules inference needs. Weights: save/CKPT+*\n")
        f.write(buf.getvalue())
    os.replace(tmp, path)


def init_from_folder(hparams):
    """Fine-tuning (paper 004 "F/T" rows): start from the best checkpoint of another
    output folder (``init_from`` in YAML) unless this run already has its own checkpoint."""
    src = hparams.get("init_from")
    if not src:
        return False
    from speechbrain.utils.checkpoints import Checkpointer

    if hparams["checkpointer"].find_checkpoint() is not None:
        logger.info("init_from ignored: resuming this run's own checkpoint")
        return False
    names = ("encoder", "heads", "projector")
    recoverables = {k: hparams[k] for k in names if k in hparams}
    ckpt = Checkpointer(os.path.join(src, "save"), recoverables=recoverables, allow_partial_load=True)
    if ckpt.recover_if_possible(max_key="mean_f1") is None:
        raise FileNotFoundError(f"init_from: no checkpoint in {src}/save")
    logger.info("initialised %s from %s", list(recoverables), src)
    return True
