#!/usr/bin/env python3
"""Probe a trained encoder: where gender, age, speaker, language and channel are encoded.

    python probe.py hparams/probe/speechocean762.yaml --model_folder=results/... [--key=value]

Writes <output_folder>/report.md, *.csv, probing.png and results.json (papers 000, 001).
"""

import logging
import os
import sys

import numpy as np
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from recipes.inference.interface import SpeakerProfilerInterface
from recipes.probing.analysis import layerwise, neuron_analysis, sv_analysis
from recipes.probing.extract import cached_extract, concat_all
from recipes.probing.report import write_report
from recipes.probing.tasks import batches, channel_bank, encode, read_manifest, voxlingua_rows

logger = logging.getLogger(__name__)


def item_sets(hp):
    """name -> list of (id, path, channel, labels dict, split)."""
    sets = {}
    so = hp["prepare_data"]()
    m = hp["max_per_speaker"]
    for split in ("train", "test"):
        for r in read_manifest(so[split], m):
            sets.setdefault("speech", []).append((r["ID"], r["wav"], None, r, split))
    chans = channel_bank(hp["sample_rate"], hp["seed"])
    for split in ("train", "test"):
        for r in read_manifest(so[split], hp["channel_per_speaker"]):
            for name, fn in chans.items():
                sets.setdefault("channel", []).append((f"{r['ID']}@{name}", r["wav"], fn, {"label": name, **r}, split))
    if hp.get("voxlingua_folder") and os.path.isdir(hp["voxlingua_folder"]):
        for r in voxlingua_rows(hp["voxlingua_folder"], hp["voxlingua_test_share"]):
            sets.setdefault("language", []).append((r["ID"], r["wav"], None, r, r["split"]))
    else:
        logger.warning("voxlingua folder not found: the language task is skipped")
    return sets


def features(model, items, cache, hp):
    triples = [(i[0], i[1], i[2]) for i in items]
    ids, feats = cached_extract(cache, model, lambda: batches(triples, model.sample_rate, hp["batch_size"],
                                                              hp["max_seconds"]), hp["pooling"])
    index = {uid: k for k, uid in enumerate(ids)}
    keep = [k for k, it in enumerate(items) if it[0] in index]
    rows = np.array([index[items[k][0]] for k in keep])
    return [items[k] for k in keep], {n: x[rows] for n, x in feats.items()}


def split(items, feats, label_fn):
    out = {}
    for part in ("train", "test"):
        idx = np.array([k for k, it in enumerate(items) if it[4] == part])
        out[part] = ({n: x[idx] for n, x in feats.items()}, [label_fn(items[k]) for k in idx], idx)
    return out


def start(argv):
    """Command line -> (hparams, output folder): the YAML loaded with its overrides, the output
    folder made, torch seeded (probe.py and audit.py)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as f:
        hp = load_hyperpyyaml(f, overrides)
    sb.create_experiment_directory(hp["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    torch.manual_seed(hp["seed"])
    return hp, hp["output_folder"]


def probed_models(folder, random_init=False, random_init_baseline=True):
    """The networks to probe: the trained folder's (or its random-init twin with ``random_init``)
    and, with ``random_init_baseline``, the random-init control beside it."""
    models = {"model": SpeakerProfilerInterface.from_folder(folder, random_init=random_init).model}
    if random_init_baseline and not random_init:
        models["random_init"] = SpeakerProfilerInterface.from_folder(folder, random_init=True).model
    return models


def main(argv):
    hp, out = start(argv)
    models = probed_models(hp["model_folder"], hp["random_init"], hp["random_init_baseline"])
    sets = item_sets(hp)
    probe_kw, seeds = hp["probe"], list(range(hp["n_seeds"]))
    labelers = {"gender": lambda it: it[3]["gender"], "age_sup": None, "age_sub": None,
                "language": lambda it: it[3]["label"], "channel": lambda it: it[3]["label"]}
    ls = hp["label_space"]  # the probed corpus's age bins, not necessarily the model's
    labelers["age_sub"] = lambda it: ls.age_sub[ls.sub_index(it[3].get("age"), it[3].get("age_group"))]
    labelers["age_sup"] = lambda it: ls.age_sup[ls.sup_index(ls.sub_index(it[3].get("age"), it[3].get("age_group")))]
    results, sv, layers = {}, None, None
    task_set = {"gender": "speech", "age_sup": "speech", "age_sub": "speech", "language": "language", "channel": "channel"}
    for task in hp["tasks"]:
        if task == "speaker" or task_set[task] not in sets:
            continue
        res = {}
        for mname, model in models.items():
            items, feats = features(model, sets[task_set[task]], os.path.join(out, "cache", f"{mname}_{task_set[task]}.npz"), hp)
            parts = split(items, feats, labelers[task])
            (tr, ytr_raw, _), (te, yte_raw, _) = parts["train"], parts["test"]
            y_all, names = encode(ytr_raw + yte_raw)
            y_tr, y_te = y_all[:len(ytr_raw)], y_all[len(ytr_raw):]
            layers = list(tr)
            if mname == "random_init":
                res["random_init"] = layerwise(tr, y_tr, te, y_te, seeds, probe_kw, all_only=True)
                continue
            logger.info("task %s: %d train / %d test utterances, classes %s", task, len(y_tr), len(y_te), names)
            res["layerwise"] = layerwise(tr, y_tr, te, y_te, seeds, probe_kw)
            x_tr, spans = concat_all(tr)
            x_te, _ = concat_all(te)
            res["neuron"] = neuron_analysis(x_tr, y_tr, x_te, y_te, spans, seeds, probe_kw, hp["percents"], hp["delta"])
        results[task] = res
    if "speaker" in hp["tasks"] and "speech" in sets:
        sv = {}
        for mname, model in models.items():
            items, feats = features(model, sets["speech"], os.path.join(out, "cache", f"{mname}_speech.npz"), hp)
            parts = split(items, feats, lambda it: it[3]["spk_id"])
            (tr, spk_tr, _), (te, spk_te, idx_te) = parts["train"], parts["test"]
            genders = [items[k][3]["gender"] for k in idx_te]
            if mname == "random_init":
                sv["random_init_all"] = sv_analysis(te, spk_te, genders, tr, spk_tr, [], probe_kw, [],
                                                    hp["sv_trials"])["per_layer"]["ALL"]
            else:
                sv.update(sv_analysis(te, spk_te, genders, tr, spk_tr, seeds, probe_kw, hp["percents"], hp["sv_trials"]))
    shown = os.path.relpath(hp["model_folder"]) if os.path.isabs(hp["model_folder"]) else hp["model_folder"]
    meta = (f"Model: `{shown}`{' (random-init twin)' if hp['random_init'] else ''}; pooling "
            f"{hp['pooling']}; elastic-net probe {probe_kw}; {len(seeds)} seeds; delta {hp['delta']} point(s). "
            f"Command: `python probe.py {hparams_file} {' '.join(argv[1:]).replace(os.getcwd() + os.sep, '')}`")
    print(write_report(out, hp["title"], layers, results, sv, meta))


if __name__ == "__main__":
    main(sys.argv[1:])
