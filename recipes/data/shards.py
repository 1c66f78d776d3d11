"""WebDataset shards: writing them from manifest CSVs, and datasets read from them.

Writing (``write_shards``, CLI: local/make_shards.py): each sample of a shard is
``__key__`` (a running number), ``audio.npy`` (float32 mono at the recipe's sample rate:
read, downmixed and resampled once, at writing) and ``json`` (the manifest row: ID,
duration, spk_id, gender, age, age_group, ...). A split's folder holds ``shard-000000.tar``,
... and ``meta.json`` (number of samples, sample rate, shard names, a fingerprint of the
manifest). Training shards are shuffled (``seed``) so each shard mixes speakers;
valid/test shards keep the file path's evaluation order (longest first). Unreadable or
silent files are left out (listed in meta.json).

Reading (``make_shard_dataset``) gives the examples of ``pipelines.make_dataset`` (``id,
sig, ok, gender_idx, age_sup_idx, age_sub_idx, age_years``; same crops, channel and label noise) as
an iterable; training shuffles the shard order and a buffer of ``shuffle_buffer`` samples.

Under DDP (torchrun) the training shards are split between processes (each reads
``shards[rank::world_size]``, so there must be at least as many shards as processes) and
every process yields ceil(num_samples / world_size) samples per epoch (cycling through its
shards), so all processes run the same number of steps. Valid/test are read whole by
every process, as SpeechBrain does for the file-based sets.
"""

import csv
import functools
import hashlib
import json
import logging
import math
import os
import random

import torch
import webdataset as wds
from speechbrain.utils.distributed import is_distributed_initialized

from recipes.data.audio import AudioError, check_signal, load_audio
from recipes.age import age_interval
from recipes.data.pipelines import label_tensors, training_crop

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def fingerprint(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def up_to_date(manifest, out_folder, sample_rate):
    meta_path = os.path.join(out_folder, "meta.json")
    if not os.path.isfile(meta_path):
        return False
    with open(meta_path) as f:
        meta = json.load(f)
    return meta.get("sample_rate") == sample_rate and meta.get("manifest_sha1") == fingerprint(manifest)


def write_shards(manifest, out_folder, sample_rate, samples_per_shard=1000, shuffle=True, seed=0,
                 speech=None):
    """Shards of one manifest CSV into ``out_folder``; returns the meta dict. Files with no
    speech frame (``speech``: recipes/data/speech.py thresholds) are left out."""
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    if shuffle:
        random.Random(seed).shuffle(rows)
    else:  # the evaluation order of recipes.data.pipelines.make_dataset(sort=True)
        rows.sort(key=lambda r: float(r["duration"]), reverse=True)
    os.makedirs(out_folder, exist_ok=True)
    for name in os.listdir(out_folder):  # a rewrite replaces every old shard
        if name.startswith("shard-") or name == "meta.json":
            os.remove(os.path.join(out_folder, name))
    written, skipped = 0, []
    pattern = os.path.join(out_folder, "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
        for row in rows:
            try:
                sig = load_audio(row["wav"], sample_rate)
                check_signal(sig, row["wav"], sample_rate, speech)
            except AudioError as err:
                logger.warning("shards: leaving out %s: %s", row["ID"], err)
                skipped.append(row["ID"])
                continue
            sink.write({"__key__": f"{written:09d}", "audio.npy": sig.numpy(), "json": dict(row)})
            written += 1
    meta = {"num_samples": written, "sample_rate": sample_rate, "samples_per_shard": samples_per_shard,
            "shards": sorted(n for n in os.listdir(out_folder) if n.startswith("shard-")),
            "manifest": os.path.abspath(manifest), "manifest_sha1": fingerprint(manifest),
            "shuffled": shuffle, "seed": seed, "left_out": skipped}
    with open(os.path.join(out_folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    logger.info("shards: %d samples in %d shards in %s", written, len(meta["shards"]), out_folder)
    return meta


def prepare_shards(manifest_folder, shard_folder, sample_rate, samples_per_shard=1000, seed=0, splits=SPLITS,
                   speech=None):
    """Shards of ``<manifest_folder>/<split>.csv`` into ``<shard_folder>/<split>``, for each
    split whose shards are missing, at another sample rate, or from another manifest."""
    for split in splits:
        manifest = os.path.join(manifest_folder, f"{split}.csv")
        out = os.path.join(shard_folder, split)
        if not up_to_date(manifest, out, sample_rate):
            write_shards(manifest, out, sample_rate, samples_per_shard, shuffle=split == "train", seed=seed,
                         speech=speech)


def read_meta(split_folder, sample_rate):
    path = os.path.join(split_folder, "meta.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: write the shards with local/make_shards.py")
    with open(path) as f:
        meta = json.load(f)
    if meta["sample_rate"] != sample_rate:
        raise ValueError(f"{split_folder}: shards at {meta['sample_rate']} Hz, the recipe wants {sample_rate} Hz")
    return meta


def shard_example(sample, label_space, sample_rate, crop_seconds=None, channel=None,
                  label_noise_rate=0.0, label_noise_seed=0, speech=None):
    """One decoded shard sample -> the example dict of the file-based datasets (the same
    crop where the speech is: pipelines.training_crop, with the ``speech`` thresholds)."""
    row = sample["json"]
    uid = row["ID"]
    sig = torch.from_numpy(sample["audio.npy"])
    ok = True
    try:
        if channel is not None:
            sig = channel(sig, uid)
        sig = training_crop(sig, sample_rate, crop_seconds, speech, uid)
    except AudioError as err:
        logger.warning("skipping utterance %s: %s", uid, err)
        sig, ok = torch.zeros(1), False
    gender, sup, sub = label_tensors(label_space, row["gender"], row["age"], row.get("age_group", ""), uid,
                                     label_noise_rate, label_noise_seed)
    years = torch.tensor(age_interval(label_space, row["age"], row.get("age_group", "")), dtype=torch.float)
    return {"id": uid, "sig": sig, "ok": ok, "gender_idx": gender, "age_sup_idx": sup, "age_sub_idx": sub,
            "age_years": years}


def make_shard_dataset(split_folder, label_space, sample_rate, train=False, crop_seconds=None,
                       channel=None, label_noise_rate=0.0, label_noise_seed=0, shuffle_buffer=1000, seed=0,
                       speech=None):
    """A webdataset pipeline over ``<split_folder>/shard-*.tar`` (see the module docstring)."""
    meta = read_meta(split_folder, sample_rate)
    urls = [os.path.join(split_folder, name) for name in meta["shards"]]
    world = torch.distributed.get_world_size() if train and is_distributed_initialized() else 1
    if world > len(urls):
        raise ValueError(f"{split_folder}: {len(urls)} shard(s) for {world} processes; "
                         "write more, smaller shards (samples_per_shard)")
    data = wds.WebDataset(urls, shardshuffle=len(urls) if train else False, seed=seed, empty_check=False,
                          nodesplitter=wds.split_by_node if world > 1 else None)
    if train and shuffle_buffer > 1:
        data = data.shuffle(shuffle_buffer)
    data = data.decode().map(functools.partial(
        shard_example, label_space=label_space, sample_rate=sample_rate, crop_seconds=crop_seconds,
        channel=channel, label_noise_rate=label_noise_rate, label_noise_seed=label_noise_seed, speech=speech))
    if world > 1:
        data = data.with_epoch(math.ceil(meta["num_samples"] / world))
    return data
