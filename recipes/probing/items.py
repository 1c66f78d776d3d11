"""What probe.py and audit.py probe: the networks (a trained folder and its random-init twin),
the manifests of the probed utterances, and each utterance's pooled activations per layer split
into the probes' train and test parts.

An item is ``(id, wav path, channel function or None, manifest row, split)``.
"""

import os

import numpy as np

from recipes.data.manifest import ManifestError
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.probing.extract import cached_extract
from recipes.probing.tasks import batches

SPLITS = ("train", "test")


def probed_models(folder, random_init=False, random_init_baseline=True):
    """The networks to probe: the trained folder's (or its random-init twin with ``random_init``)
    and, with ``random_init_baseline``, the random-init control beside it."""
    models = {"model": SpeakerProfilerInterface.from_folder(folder, random_init=random_init).model}
    if random_init_baseline and not random_init:
        models["random_init"] = SpeakerProfilerInterface.from_folder(folder, random_init=True).model
    return models


def manifests(hp):
    """{"train": path, "test": path}: prepared by ``prepare_data`` when set, else the manifest
    folder's (by default the model folder's own manifests)."""
    paths = hp["prepare_data"]() if hp["prepare_data"] else \
        {s: os.path.join(hp["manifest_folder"], f"{s}.csv") for s in SPLITS}
    for s in SPLITS:
        if not os.path.isfile(paths[s]):
            raise ManifestError(f"{paths[s]}: manifest not found (set manifest_folder or prepare_data)")
    return paths


def features(model, items, cache, hp):
    """(the items the model could read, layer name -> (items, dim) pooled activations)."""
    triples = [(i[0], i[1], i[2]) for i in items]
    ids, feats = cached_extract(cache, model, lambda: batches(triples, model.sample_rate, hp["batch_size"],
                                                              hp["max_seconds"]), hp["pooling"])
    index = {uid: k for k, uid in enumerate(ids)}
    keep = [k for k, it in enumerate(items) if it[0] in index]
    rows = np.array([index[items[k][0]] for k in keep])
    return [items[k] for k in keep], {n: x[rows] for n, x in feats.items()}


def split(items, feats, label_fn):
    """split -> (layer -> activations, labels, item indices) for the train and test items."""
    out = {}
    for part in SPLITS:
        idx = np.array([k for k, it in enumerate(items) if it[4] == part])
        out[part] = ({n: x[idx] for n, x in feats.items()}, [label_fn(items[k]) for k in idx], idx)
    return out


def shown(path):
    """A path for a report: relative inside the working directory, as given elsewhere."""
    rel = os.path.relpath(str(path))
    return str(path) if rel.startswith("..") else rel
