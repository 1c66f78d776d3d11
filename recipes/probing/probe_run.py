"""The probing run of probe.py (papers 000, 001): where gender, age, speaker, language and
channel are encoded in a trained encoder, layer by layer and neuron by neuron, with the
random-init control. Outputs: report.md, *.csv, probing.png, results.json."""

import logging
import os

from recipes.config.entry import start_output
from recipes.probing.analysis import layerwise, neuron_analysis, sv_analysis
from recipes.probing.extract import concat_all
from recipes.probing.items import features, manifests, probed_models, shown, split
from recipes.probing.report import write_report
from recipes.probing.tasks import channel_bank, encode, read_manifest, voxlingua_rows

logger = logging.getLogger(__name__)


def item_sets(hp, sample_rate):
    """name -> list of items (id, path, channel, labels dict, split)."""
    sets = {}
    so = manifests(hp)
    m = hp["max_per_speaker"]
    for split in ("train", "test"):
        for r in read_manifest(so[split], m):
            sets.setdefault("speech", []).append((r["ID"], r["wav"], None, r, split))
    chans = channel_bank(sample_rate, hp["seed"])
    for split in ("train", "test"):
        for r in read_manifest(so[split], hp["channel_per_speaker"]):
            for name, fn in chans.items():
                sets.setdefault("channel", []).append((f"{r['ID']}@{name}", r["wav"], fn, {"label": name, **r}, split))
    if hp["voxlingua_folder"] and os.path.isdir(hp["voxlingua_folder"]):
        for r in voxlingua_rows(hp["voxlingua_folder"], hp["voxlingua_test_share"]):
            sets.setdefault("language", []).append((r["ID"], r["wav"], None, r, r["split"]))
    elif "language" in hp["tasks"]:
        logger.warning("voxlingua folder %s not found: the language task is skipped", hp["voxlingua_folder"])
    return sets


def run_probe(run):
    """probe.py: layer-wise and neuron-level probes of every task, speaker verification per
    layer; writes the report into the run's output folder and returns its text."""
    hp = run.hparams
    models = probed_models(hp["model_folder"], hp["random_init"], hp["random_init_baseline"])
    out = start_output(run)
    sets = item_sets(hp, models["model"].sample_rate)
    probe_kw, seeds = hp["probe"], list(range(hp["n_seeds"]))
    labelers = {"gender": lambda it: it[3]["gender"], "age_sup": None, "age_sub": None,
                "language": lambda it: it[3]["label"], "channel": lambda it: it[3]["label"]}
    ls = hp["label_space"] or models["model"].label_space  # the probed corpus's age bins (default: the model's)
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
    meta = (f"Model: `{shown(hp['model_folder'])}`{' (random-init twin)' if hp['random_init'] else ''}; pooling "
            f"{hp['pooling']}; elastic-net probe {probe_kw}; {len(seeds)} seeds; delta {hp['delta']} point(s). "
            f"Command: `{run.command('probe.py')}`")
    return write_report(out, hp["title"], layers, results, sv, meta)
