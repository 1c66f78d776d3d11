#!/usr/bin/env python3
"""A trained (or exported) model on speechocean762's test split, per age group of the speakers:
gender accuracy and macro-F1 for adults (>= 20 y), teens (16-19 y) and children (< 16 y), and the
adults' age-decade accuracy and MACE, their exact ages mapped onto the model's own age-sub bins.

Scoring goes through the public inference class (recipes.inference.interface.SpeakerProfilerInterface:
windows, speech frames only) on the test manifest that local/prepare_speechocean762.py writes.
Used by benchmarks/commonvoice.py (cached per row and checkpoint); on its own:

    python benchmarks/speechocean_groups.py results/bench_cv/ecapa_cpu_ch_plain/1234
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import ROOT, SO_DATA, cached_json, in_root, read_csv  # noqa: E402

SO_GROUPS = ("adult", "teen", "child")  # >= 20 y, 16-19 y, < 16 y


def so_group(age):
    a = float(age)
    return "child" if a < 16 else "teen" if a < 20 else "adult"


def speechocean_manifest(results, so_data=SO_DATA):
    """The speechocean762 test manifest: a speechocean762 run's, else prepared into <results>."""
    import glob
    found = sorted(glob.glob(os.path.join(ROOT, "results", "speechocean762", "*", "*", "manifests", "test.csv")))
    if found:
        return found[0]
    from local.prepare_speechocean762 import prepare_speechocean762
    save = os.path.join(in_root(results), "speechocean762_manifests")
    return prepare_speechocean762(in_root(so_data), save, skip_bad=True, sample_rate=8000)["test"]


def score_speechocean(folder, manifest, batch_size=16):
    """Scores (``group_scores``) of a trained or exported folder on a speechocean762 manifest,
    through the public inference class, ``batch_size`` files at a time."""
    from recipes.inference.interface import SpeakerProfilerInterface

    prof = SpeakerProfilerInterface.from_folder(str(folder))
    rows, preds = read_csv(manifest), []
    for k in range(0, len(rows), batch_size):
        for res in prof.classify_files([in_root(r["wav"]) for r in rows[k:k + batch_size]]):
            preds.append(None if res["silent"] else (res["gender"]["label"], res["age_sub"]["label"]))
    return group_scores(rows, preds, prof.label_space, manifest)


def majority_speechocean(manifest, space):
    """The same scores for always answering each age group's most frequent gender and the
    adults' most frequent decade (a reference row)."""
    rows = read_csv(manifest)
    labels = [(so_group(r["age"]), space.genders[space.gender_index(r["gender"])]) for r in rows]
    maj = {g: max({x for h, x in labels if h == g} or {None}, key=lambda x: labels.count((g, x)))
           for g in SO_GROUPS}
    subs = [space.sub_index_from_age(r["age"]) for r in rows if so_group(r["age"]) == "adult"]
    sub = space.age_sub[max(set(subs), key=subs.count)] if subs else space.age_sub[0]
    return group_scores(rows, [(maj[g], sub) for g, _ in labels], space, manifest)


def group_scores(rows, preds, space, manifest):
    """Gender accuracy / macro-F1 per age group (adult >= 20, teen 16-19, child < 16; clips,
    speakers, silent clips) and the adults' age-decade accuracy and MACE, their exact ages
    mapped by the model's own age bins. preds: (gender label, age-sub label) or None (silent)."""
    from sklearn.metrics import f1_score

    from recipes.labels import LabelError

    genders = list(space.genders)
    cells = {g: {"true": [], "pred": [], "spk": set(), "silent": 0, "per_spk": {}} for g in SO_GROUPS}
    sub_true, sub_pred, outside = [], [], 0
    for n, (r, pred) in enumerate(zip(rows, preds), 2):
        try:
            group, gender = so_group(r["age"]), genders[space.gender_index(r["gender"])]
        except (ValueError, KeyError, LabelError) as err:
            raise ValueError(f"{manifest}, row {n}: {err}") from None
        cell = cells[group]
        cell["spk"].add(r["spk_id"])
        if pred is None:
            cell["silent"] += 1
            continue
        cell["true"].append(gender)
        cell["pred"].append(pred[0])
        right = cell["per_spk"].setdefault(r["spk_id"], [0, 0])  # [clips right, clips]
        right[0] += pred[0] == gender
        right[1] += 1
        if group == "adult":
            try:
                sub_true.append(space.sub_index_from_age(r["age"]))
            except LabelError:
                outside += 1
                continue
            sub_pred.append(space.age_sub.index(pred[1]))
    scores = {}
    for g, c in cells.items():
        n = len(c["true"])
        scores[g] = {"clips": n, "speakers": len(c["spk"]), "silent": c["silent"],
                     "gender_acc": sum(a == b for a, b in zip(c["true"], c["pred"])) / n if n else None,
                     "gender_f1": f1_score(c["true"], c["pred"], labels=genders, average="macro",
                                           zero_division=0) if n else None,
                     "gender_per_speaker": c["per_spk"]}
    n = len(sub_true)
    scores["adult"].update(
        decade_acc=sum(a == b for a, b in zip(sub_true, sub_pred)) / n if n else None,
        decade_mace=sum(abs(a - b) for a, b in zip(sub_true, sub_pred)) / n if n else None,
        decade_outside_bins=outside)
    return scores


def cached_speechocean(name, folder, manifest, results):
    """A row's speechocean762 scores, from the cache when it holds the same checkpoint."""
    from recipes.model_folder import best_checkpoint
    cache = os.path.join(in_root(results), "speechocean762_scores", f"{name}.json")
    ckpt = best_checkpoint(str(folder)).path.name
    key = {"checkpoint": ckpt, "manifest": os.path.relpath(manifest, ROOT)}

    def score():
        t0 = time.time()
        scores = score_speechocean(folder, manifest)
        return {"seconds": round(time.time() - t0), "scores": scores}

    return cached_json(cache, key, score, indent=1)["scores"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a train.py output folder or an exported folder")
    ap.add_argument("--so-data", default=SO_DATA, help="speechocean762 folder (relative to the repository root)")
    ap.add_argument("--results", default="results/bench_cv", help="where the prepared manifests go")
    args = ap.parse_args(argv)
    print(json.dumps(score_speechocean(args.folder, speechocean_manifest(args.results, args.so_data)), indent=1))


if __name__ == "__main__":
    main()
