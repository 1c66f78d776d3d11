"""The datasets of a recipe: its manifests (or shards) validated and read, and the data-loader
options of each split."""

import functools
import logging
import os

from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.distributed import run_on_main

from recipes.data.manifest import ManifestError, check_speaker_disjoint, validate_manifest
from recipes.data.pipelines import make_dataset
from recipes.data.sampling import balanced_sampler, class_counts

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def manifest_paths(hparams):
    """split -> manifest of the recipe's own corpus (``manifest_folder``)."""
    return {s: os.path.join(hparams["manifest_folder"], f"{s}.csv") for s in SPLITS}


def pooled_manifest_paths(hparams):
    """split -> list of manifests: ``manifest_folder``'s, then those of every folder in
    ``pooled_manifest_folders`` (other prepared corpora, trained on together under the
    recipe's label space)."""
    folders = [hparams["manifest_folder"]] + list(hparams["pooled_manifest_folders"] or [])
    return {s: [os.path.join(f, f"{s}.csv") for f in folders] for s in SPLITS}


def build_datasets(hparams):
    """Validate the manifests (labels, files, speaker-disjoint splits), then make datasets:
    from the audio files, or (``use_shards: True``) from WebDataset shards in
    ``shard_folder``, written from the manifests first if missing or out of date.
    Pooled corpora (``pooled_manifest_folders``) are one dataset per split; with
    ``missing_labels: mask`` a corpus may lack a label (no loss on that head). The train
    split's class counts set the objective's class weights (``class_weighting``)."""
    pooled = pooled_manifest_paths(hparams)
    missing = hparams["missing_labels"]
    ls, sr = hparams["label_space"], hparams["sample_rate"]
    rows = {s: [] for s in SPLITS}
    for corpus in range(len(pooled["train"])):
        paths = {s: pooled[s][corpus] for s in SPLITS}
        corpus_rows = {}
        for split, path in paths.items():
            corpus_rows[split] = validate_manifest(path, ls, missing_labels=missing)
            if not corpus_rows[split]:
                raise ManifestError(f"{path}: the {split} split has no utterance; prepare the corpus with more "
                                    "speakers or other split ratios (a model cannot be trained, validated or "
                                    "tested on an empty split)")
            rows[split] += corpus_rows[split]
            logger.info("%s: %d utterances, %d speakers", path, len(corpus_rows[split]),
                        len({r['spk_id'] for r in corpus_rows[split]}))
        check_speaker_disjoint(paths, corpus_rows)  # speaker IDs are per corpus
    objective = hparams["objective"]
    if hasattr(objective, "set_class_counts"):
        objective.set_class_counts(class_counts(rows["train"], ls))
    paths = pooled if len(pooled["train"]) > 1 else manifest_paths(hparams)
    # optional degraded domain (student of MKD): channel on train/valid, and on test
    train_ch, test_ch = hparams["train_channel"], hparams["test_channel"]
    noise = dict(label_noise_rate=hparams["label_noise_rate"],
                 label_noise_seed=hparams["seed"])
    if hparams["use_shards"]:
        if len(pooled["train"]) > 1:
            raise ValueError("use_shards needs one corpus (manifest_folder); pooled_manifest_folders "
                             f"{hparams['pooled_manifest_folders']} is set")
        return build_shard_datasets(hparams, train_ch, test_ch, noise)
    return {
        "train": make_dataset(paths["train"], ls, sr, crop_seconds=hparams["crop_seconds"],
                              channel=train_ch, speech=hparams["speech"], **noise),
        "valid": make_dataset(paths["valid"], ls, sr, sort=True, channel=train_ch),
        "test": make_dataset(paths["test"], ls, sr, sort=True, channel=test_ch),
    }


def build_shard_datasets(hparams, train_ch, test_ch, noise):
    from recipes.data.shards import make_shard_dataset, prepare_shards

    folder, ls, sr = hparams["shard_folder"], hparams["label_space"], hparams["sample_rate"]
    run_on_main(prepare_shards, args=[hparams["manifest_folder"], folder, sr],
                kwargs={"samples_per_shard": hparams["samples_per_shard"],
                        "seed": hparams["seed"], "speech": hparams["speech"]})
    split = lambda s: os.path.join(folder, s)  # noqa: E731
    return {
        "train": make_shard_dataset(split("train"), ls, sr, train=True, crop_seconds=hparams["crop_seconds"],
                                    channel=train_ch, shuffle_buffer=hparams["shard_shuffle_buffer"],
                                    seed=hparams["seed"], speech=hparams["speech"], **noise),
        "valid": make_shard_dataset(split("valid"), ls, sr, channel=train_ch, speech=hparams["speech"]),
        "test": make_shard_dataset(split("test"), ls, sr, channel=test_ch, speech=hparams["speech"]),
    }


def loader_kwargs(hparams, datasets):
    """DataLoader options of each split: the YAML's ``train_dataloader_opts`` and
    ``eval_dataloader_opts``; with ``dynamic_batching: True`` a SpeechBrain
    DynamicBatchSampler per split instead (``dynamic_batch_sampler`` options in YAML:
    batches of at most ``max_batch_length`` seconds of audio, lengths from the manifest's
    ``duration`` column, capped at ``crop_seconds`` for training; training drops the
    leftover examples of each bucket, ``drop_last``); with shards, no
    ``shuffle`` (the shard pipeline shuffles)."""
    train, evals = dict(hparams["train_dataloader_opts"]), dict(hparams["eval_dataloader_opts"])
    balance_by = hparams["balance_sampling_by"] or []
    if balance_by:
        if hparams["use_shards"] or hparams["dynamic_batching"]:
            raise ValueError(f"balance_sampling_by {list(balance_by)} needs the file-based datasets with "
                             "fixed-size batches (use_shards: False, dynamic_batching: False)")
        train.pop("shuffle", None)  # the sampler draws the order
        train["sampler"] = balanced_sampler(
            datasets["train"], hparams["label_space"], balance_by, hparams["balanced_epoch_size"],
            seed=hparams["seed"], epoch_counter=hparams["epoch_counter"])
    if hparams["use_shards"]:
        if hparams["dynamic_batching"]:
            raise ValueError("dynamic_batching needs the file-based datasets (use_shards: False)")
        train.pop("shuffle", None)
        return {"train": train, "valid": evals, "test": evals}
    if not hparams["dynamic_batching"]:
        return {"train": train, "valid": evals, "test": evals}
    opts = hparams["dynamic_batch_sampler"]

    def sampler_kwargs(split, base, is_train):
        cap = hparams["crop_seconds"] if is_train else None
        sampler = DynamicBatchSampler(
            datasets[split], max_batch_length=opts["max_batch_length"], num_buckets=opts["num_buckets"],
            length_func=functools.partial(utterance_seconds, cap=cap), shuffle=is_train and opts["shuffle"],
            batch_ordering=opts["batch_ordering"] if is_train else "descending",
            max_batch_ex=opts.get("max_batch_ex"), seed=hparams["seed"],
            drop_last=is_train and opts.get("drop_last", True))  # no 1-utterance BatchNorm batch
        return {"batch_sampler": sampler, "num_workers": base.get("num_workers", 0),
                "collate_fn": base.get("collate_fn")}

    return {"train": sampler_kwargs("train", train, True), "valid": sampler_kwargs("valid", evals, False),
            "test": sampler_kwargs("test", evals, False)}


def utterance_seconds(row, cap=None):
    """Length of a manifest row for DynamicBatchSampler: its duration, capped at ``cap``."""
    dur = float(row["duration"])
    return dur if cap is None else min(dur, cap)
