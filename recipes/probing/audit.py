"""The measurements of a bias audit (audit.py), built on recipes/probing and recipes/group_errors.

- ``predict_rows``: the model's own predictions over a manifest (predictions_test.csv columns);
- ``leakage``: per task (gender, age group, language / channel, ...), linear probes on every
  named layer and ALL (recipes/probing/analysis.py ``layerwise``), the majority and
  random-init baselines and the selectivity per layer (accuracy minus that of a probe
  trained on shuffled labels: the control task of paper 001); speaker identity as the
  verification EER per layer (``sv_analysis``);
- ``gender_removal``: the gender neurons of one layer (Algorithm 1 ranking and the minimal
  neuron set of paper 001, recipes/probing/neurons.py) and what the OTHER tasks lose when they
  are masked (the task probe kept, those neurons zeroed) or removed (the probe retrained
  without them), against as many random neurons.
"""

import numpy as np
import torch

from recipes.labels import LabelError, TASKS
from recipes.probing.analysis import layerwise, mean_sd
from recipes.probing.neurons import masking_test, minimal_neuron_set, rank_neurons
from recipes.probing.probes import ElasticNetProbe, majority_baseline, shuffled_labels
from recipes.probing.tasks import batches, encode
from recipes.probing.verification import eer, make_trials

AGE_KEYS = ("age_years", "age")  # a regression head's output, when the model has one


def true_labels(row, label_space):
    """{gender, age_sub, age_sup}: label-space names of a manifest row ("" when missing or
    outside the label space)."""
    out = {t: "" for t in TASKS}
    try:
        out["gender"] = label_space.genders[label_space.gender_index(row.get("gender", ""))]
    except LabelError:
        pass
    try:
        sub = label_space.sub_index(row.get("age"), row.get("age_group"))
        out["age_sub"] = label_space.age_sub[sub]
        out["age_sup"] = label_space.age_sup[label_space.sup_index(sub)]
    except LabelError:
        pass
    return out


@torch.no_grad()
def predict_rows(model, rows, batch_size=16, max_seconds=None):
    """Prediction rows (ID, <task>_true, <task>_pred[, age_pred, age_true, age_lo, age_hi]) of
    manifest rows (the columns of predictions_test.csv)."""
    ls, by_id, out = model.label_space, {r["ID"]: r for r in rows}, []
    names = {"gender": ls.genders, "age_sup": ls.age_sup, "age_sub": ls.age_sub}
    model.eval()
    for ids, wavs, lens in batches([(r["ID"], r["wav"], None) for r in rows], model.sample_rate, batch_size,
                                   max_seconds):
        probs, _ = model(wavs, lens)
        age = next((probs[k] for k in AGE_KEYS if k in probs), None)
        for i, uid in enumerate(ids):
            row = {"ID": uid}
            true = true_labels(by_id[uid], ls)
            for t in TASKS:
                row[f"{t}_true"], row[f"{t}_pred"] = true[t], names[t][int(probs[t][i].argmax())]
            if age is not None:  # years; an age-group-only row: the interval of its bin
                row["age_pred"] = f"{float(age[i].reshape(-1)[0]):.2f}"
                row["age_true"] = (by_id[uid].get("age") or "").strip()
                lo, hi = ls.age_bins[true["age_sub"]] if true["age_sub"] and not row["age_true"] else ("", "")
                row["age_lo"], row["age_hi"] = lo, hi
            out.append(row)
    return out


def _labelled(parts, labels_tr, labels_te):
    """Drop the utterances without a label; encode the labels jointly."""
    (tr, _, _), (te, _, _) = parts["train"], parts["test"]
    k_tr = np.array([k for k, v in enumerate(labels_tr) if v not in ("", None)], dtype=int)
    k_te = np.array([k for k, v in enumerate(labels_te) if v not in ("", None)], dtype=int)
    y, names = encode([labels_tr[k] for k in k_tr] + [labels_te[k] for k in k_te])
    return ({n: x[k_tr] for n, x in tr.items()}, y[:len(k_tr)], {n: x[k_te] for n, x in te.items()},
            y[len(k_tr):], names)


def task_data(parts, label_fn):
    """(x_tr, y_tr, x_te, y_te, class names) of one task from probe.py's ``split`` output
    (labels given by ``label_fn(item)``); None when fewer than two classes are labelled."""
    labels = {p: [label_fn(it) for it in parts[p][1]] for p in ("train", "test")}
    x_tr, y_tr, x_te, y_te, names = _labelled(parts, labels["train"], labels["test"])
    if len(names) < 2 or len(y_tr) == 0 or len(y_te) == 0 or len(set(y_tr.tolist())) < 2:
        return None
    return x_tr, y_tr, x_te, y_te, names


def leakage(data, random_data, seeds, probe_kwargs):
    """Layer-wise decoding of one task: accuracy per layer and ALL, majority, random-init
    ALL, and the selectivity per layer (accuracy - shuffled-label control, paper 001)."""
    x_tr, y_tr, x_te, y_te, names = data
    res = {"classes": names, "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
           "layerwise": layerwise(x_tr, y_tr, x_te, y_te, seeds, probe_kwargs),
           "majority": majority_baseline(y_tr, y_te)}
    control = layerwise(x_tr, shuffled_labels(y_tr, seeds[0]), x_te, y_te, seeds, probe_kwargs)
    res["control"] = control
    res["selectivity"] = {n: res["layerwise"][n]["accuracy"][0] - control[n]["accuracy"][0] for n in control}
    if random_data is not None:
        rx_tr, ry_tr, rx_te, ry_te, _ = random_data
        res["random_init"] = layerwise(rx_tr, ry_tr, rx_te, ry_te, seeds, probe_kwargs, all_only=True)["ALL"]
    return res


def speaker_leakage(parts, gender_fn, n_trials, random_parts=None):
    """Speaker verification EER per layer and ALL on the test speakers (cosine scoring,
    same-gender non-target trials); None without both target and non-target trials."""
    def per_layer(p):
        te, items = p["test"][0], p["test"][1]
        spk = [it[3]["spk_id"] for it in items]
        if not any(spk.count(s) >= 2 for s in set(spk)):
            return None
        trials = make_trials(spk, [gender_fn(it) for it in items], n_trials, seed=0)
        if len(set(trials[:, 2].tolist())) < 2:  # no same-gender non-target pair: no EER
            return None
        out = {n: eer(x, trials) for n, x in te.items()}
        out["ALL"] = eer(np.concatenate(list(te.values()), 1), trials)
        return out, trials

    got = per_layer(parts)
    if got is None:
        return None
    res = {"per_layer": got[0], "trials": int(len(got[1])), "_trials": got[1]}  # _trials: not reported
    rand = per_layer(random_parts) if random_parts is not None else None
    if rand is not None:
        res["random_init_all"] = rand[0]["ALL"]
    return res


def layer_matrix(x, layer):
    return np.concatenate(list(x.values()), 1) if layer == "ALL" else x[layer]


def gender_removal(gender, others, layer, seeds, probe_kwargs, percents, delta, frac=0.2, speaker=None):
    """The gender neurons of ``layer`` (Algorithm 1 ranking + minimal set) and, for every
    other task, accuracy with all neurons / gender neurons masked (zeroed, probe kept) /
    removed (probe retrained) / as many random neurons masked and removed.

    gender, others[task]: task_data() tuples; speaker: (x_te by layer, trials) for the EER."""
    x_tr, y_tr, x_te, y_te, _ = gender
    xg_tr, xg_te = layer_matrix(x_tr, layer), layer_matrix(x_te, layer)
    runs = []
    for s in seeds:
        probe = ElasticNetProbe(**probe_kwargs, seed=s).fit(xg_tr, y_tr)
        oracle = probe.score(xg_te, y_te)["accuracy"]
        ranking = rank_neurons(probe.weights())
        rows, selected = minimal_neuron_set(xg_tr, y_tr, xg_te, y_te, ranking, oracle, percents, delta,
                                            probe_kwargs, seed=s)
        rng = np.random.default_rng(s)
        random_set = rng.choice(xg_tr.shape[1], len(selected), replace=False)
        run = {"seed": s, "oracle": oracle, "neurons": sorted(int(i) for i in selected),
               "percent": rows[-1]["percent"], "mask20": masking_test(probe, xg_te, y_te, ranking, frac, seed=s),
               "tasks": {}}
        for task, data in {"gender": gender, **others}.items():
            t_tr, ty_tr, t_te, ty_te, _ = data
            a_tr, a_te = layer_matrix(t_tr, layer), layer_matrix(t_te, layer)
            run["tasks"][task] = removal_scores(a_tr, ty_tr, a_te, ty_te, selected, random_set, probe_kwargs, s)
        if speaker is not None:
            sx, trials = layer_matrix(speaker[0], layer), speaker[1]
            run["tasks"]["speaker_eer"] = {
                "all": eer(sx, trials), "masked": eer(np.delete(sx, selected, 1), trials),
                "random_masked": eer(np.delete(sx, random_set, 1), trials)}
        runs.append(run)
    summary = {"layer": layer, "n_neurons": int(xg_tr.shape[1]),
               "n_gender_neurons": mean_sd([len(r["neurons"]) for r in runs]),
               "oracle": mean_sd([r["oracle"] for r in runs]),
               "neurons_seed0": runs[0]["neurons"], "tasks": {}}
    for task in runs[0]["tasks"]:
        keys = runs[0]["tasks"][task]
        summary["tasks"][task] = {k: mean_sd([r["tasks"][task][k] for r in runs]) for k in keys}
    return {"summary": summary, "runs": runs}


def removal_scores(x_tr, y_tr, x_te, y_te, selected, random_set, probe_kwargs, seed):
    """Accuracy of one task: all neurons; the gender set masked (zeroed, probe kept) or
    removed (probe retrained without them); the same for a random set of the same size."""
    def keep(drop):
        return np.setdiff1d(np.arange(x_tr.shape[1]), drop)

    probe = ElasticNetProbe(**probe_kwargs, seed=seed).fit(x_tr, y_tr)
    out = {"all": probe.score(x_te, y_te)["accuracy"]}
    for name, drop in (("", selected), ("random_", random_set)):
        k = keep(drop)
        out[f"{name}masked"] = probe.score(x_te, y_te, keep=k)["accuracy"]
        out[f"{name}removed"] = ElasticNetProbe(**probe_kwargs, seed=seed).fit(
            x_tr[:, k], y_tr).score(x_te[:, k], y_te)["accuracy"]
    return out
