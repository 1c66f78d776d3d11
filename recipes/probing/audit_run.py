"""The audit run of audit.py: for whom a trained folder fails, and what else it leaks (the
per-group error table, leakage per layer with the probes of probe.py, the gender neurons of
paper 001 Algorithm 1 and what masking them costs the other tasks)."""

import csv
import logging
import os

from recipes.config.entry import start_output
from recipes.evaluation.group_errors import group_errors
from recipes.data.manifest import read_rows
from recipes.probing.audit import gender_removal, leakage, predict_rows, speaker_leakage, task_data, true_labels
from recipes.probing.audit_report import write_audit
from recipes.probing.items import features, manifests, probed_models, shown, split
from recipes.probing.tasks import channel_bank, read_manifest

logger = logging.getLogger(__name__)


def column_values(rows, col):
    return {(r.get(col) or "").strip() for r in rows} - {""}


def item_sets(hp, paths, ls, sample_rate):
    """name -> items (id, wav, channel fn, row, split) and the label function of each task."""
    rows = {s: read_manifest(paths[s], hp["max_per_speaker"]) for s in ("train", "test")}
    speech = [(r["ID"], r["wav"], None, r, s) for s in ("train", "test") for r in rows[s]]
    sets, tasks = {"speech": speech}, {}
    for t in ("gender", "age_sub", "age_sup"):
        tasks[t] = ("speech", lambda it, t=t: true_labels(it[3], ls)[t])
    for col in ("language", "channel"):
        if all(len(column_values(rows[s], col)) > 1 for s in ("train", "test")):
            tasks[col] = ("speech", lambda it, col=col: (it[3].get(col) or "").strip())
    if "channel" not in tasks and hp["simulated_channels"]:  # the same utterances through 4 channels
        chans = channel_bank(sample_rate, hp["seed"])
        sets["channel"] = [(f"{r['ID']}@{name}", r["wav"], fn, {**r, "_channel": name}, s)
                           for s in ("train", "test") for r in read_manifest(paths[s], hp["channel_per_speaker"])
                           for name, fn in chans.items()]
        tasks["channel"] = ("channel", lambda it: it[3]["_channel"])
    return sets, tasks


def run_audit(run):
    """audit.py: per-group errors, leakage per layer, the gender neurons and what masking them
    costs; writes audit.md (+ .png, .json, predictions_audit.csv) and returns its text."""
    hp = run.hparams
    models = probed_models(hp["model_folder"], random_init_baseline=hp["random_init_baseline"])
    ls = models["model"].label_space
    out = start_output(run)
    paths = manifests(hp)

    # 1. per-group errors of the model's own predictions on the whole test manifest
    test_rows = [r for _, r in read_rows(paths["test"], "mask")]
    preds = predict_rows(models["model"], test_rows, hp["batch_size"], hp["max_seconds"])
    with open(os.path.join(out, "predictions_audit.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(preds[0]) if preds else ["ID"])
        w.writeheader()
        w.writerows(preds)
    groups = group_errors(test_rows, preds, {"gender": ls.genders, "age_sub": ls.age_sub}, hp["group_min_count"])

    # 2. leakage per layer (probe.py's feature extraction and split; recipes/probing's probes)
    sets, labelers = item_sets(hp, paths, ls, models["model"].sample_rate)
    parts = {}
    for mname, model in models.items():
        for sname, items in sets.items():
            cache = os.path.join(out, "cache", f"{mname}_{sname}_{len(items)}.npz")
            kept, feats = features(model, items, cache, hp)
            parts[mname, sname] = split(kept, feats, lambda it: it)  # labels = the items themselves
    seeds, probe_kw = list(range(hp["n_seeds"])), hp["probe"]
    leak, data, skipped = {}, {}, {}
    for task in hp["tasks"]:
        if task == "speaker":
            continue
        if task not in labelers:
            skipped[task] = "no such column with two or more values in both manifests"
            continue
        sname, fn = labelers[task]
        data[task] = task_data(parts["model", sname], fn)
        if data[task] is None:
            skipped[task] = "fewer than two labelled classes"
            continue
        rand = task_data(parts["random_init", sname], fn) if ("random_init", sname) in parts else None
        logger.info("leakage of %s: %d train / %d test, classes %s", task, data[task][1].size,
                    data[task][3].size, data[task][4])
        leak[task] = leakage(data[task], rand, seeds, probe_kw)
    speaker = None
    if "speaker" in hp["tasks"]:
        gender_fn = labelers["gender"][1]
        speaker = speaker_leakage(parts["model", "speech"], gender_fn, hp["sv_trials"],
                                  parts.get(("random_init", "speech")))
        if speaker is None:
            skipped["speaker"] = "no target and same-gender non-target trial pairs in the test manifest"

    # 3. gender neurons and what masking them costs the other tasks
    removal = None
    sensitive = hp["sensitive_task"]
    if sensitive in leak:
        layers = list(leak[sensitive]["layerwise"])
        if hp["removal_layer"] not in layers:
            raise ValueError(f"removal_layer {hp['removal_layer']!r} is not a probed layer {layers}")
        others = {t: d for t, d in data.items() if t != sensitive and t in leak}
        sv = (parts["model", "speech"]["test"][0], speaker["_trials"]) if speaker else None
        removal = gender_removal(data[sensitive], others, hp["removal_layer"], seeds, probe_kw, hp["percents"],
                                 hp["delta"], hp["mask_fraction"], sv)
    if speaker:
        speaker.pop("_trials")
    meta = (f"Model: `{shown(hp['model_folder'])}`; test manifest `{shown(paths['test'])}` ({len(preds)} utterances "
            f"scored); probes: elastic-net {probe_kw}, {len(seeds)} seed(s), pooling {hp['pooling']}, at most "
            f"{hp['max_per_speaker']} utterances per speaker."
            + (f" Skipped: {skipped}." if skipped else "")
            + f" Command: `{run.command('audit.py')}`")
    return write_audit(out, hp["title"], meta, groups, leak, speaker, removal, sensitive)
