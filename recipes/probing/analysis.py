"""Layer-wise probes, neuron analysis and control tasks for one task, over several seeds."""

import time

import numpy as np

from recipes.probing.neurons import layer_distribution, masking_test, minimal_neuron_set, rank_neurons
from recipes.probing.probes import ElasticNetProbe, majority_baseline, shuffled_labels
from recipes.probing.verification import eer, make_trials


def mean_sd(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def layerwise(tr, y_tr, te, y_te, seeds, probe_kwargs, all_only=False):
    """{layer or ALL: {accuracy: (mean, sd), f1: (mean, sd)}}; tr/te: {layer: array}.
    all_only: just the "ALL" concatenation (the random-init control)."""
    out = {}
    for name in ([] if all_only else list(tr)) + ["ALL"]:
        x_tr = np.concatenate(list(tr.values()), 1) if name == "ALL" else tr[name]
        x_te = np.concatenate(list(te.values()), 1) if name == "ALL" else te[name]
        scores = [ElasticNetProbe(**probe_kwargs, seed=s).fit(x_tr, y_tr).score(x_te, y_te) for s in seeds]
        out[name] = {m: mean_sd([sc[m] for sc in scores]) for m in ("accuracy", "f1")}
    return out


def neuron_analysis(x_tr, y_tr, x_te, y_te, spans, seeds, probe_kwargs, percents, delta=1.0, frac=0.2):
    """Oracle, selectivity, Algorithm 1 ranking, masking, minimal set and its layer spread."""
    t0 = time.time()
    res = {"oracle": [], "control": [], "mask": [], "minimal": [], "distribution": [], "neurons": x_tr.shape[1]}
    for s in seeds:
        probe = ElasticNetProbe(**probe_kwargs, seed=s).fit(x_tr, y_tr)
        oracle = probe.score(x_te, y_te)["accuracy"]
        control = ElasticNetProbe(**probe_kwargs, seed=s).fit(x_tr, shuffled_labels(y_tr, s)).score(x_te, y_te)
        ranking = rank_neurons(probe.weights())
        rows, selected = minimal_neuron_set(x_tr, y_tr, x_te, y_te, ranking, oracle, percents, delta,
                                            probe_kwargs, seed=s)
        res["oracle"].append(oracle)
        res["control"].append(control["accuracy"])
        res["mask"].append(masking_test(probe, x_te, y_te, ranking, frac, seed=s))
        res["minimal"].append(rows[-1])
        res["distribution"].append(layer_distribution(selected, spans))
    res["majority"] = majority_baseline(y_tr, y_te)
    res["selectivity"] = mean_sd([o - c for o, c in zip(res["oracle"], res["control"])])
    res["seconds"] = time.time() - t0
    return res


def sv_analysis(te, spk_te, gender_te, tr, spk_tr, seeds, probe_kwargs, percents, n_trials=4000):
    """EER per layer and ALL on unseen speakers; neuron-level: a speaker-ID probe trained on
    the training speakers ranks the neurons, then the EER of the top / random N%."""
    trials = make_trials(spk_te, gender_te, n_trials, seed=0)
    per_layer = {name: eer(x, trials) for name, x in te.items()}
    x_te = np.concatenate(list(te.values()), 1)
    x_tr = np.concatenate(list(tr.values()), 1)
    per_layer["ALL"] = eer(x_te, trials)
    spk_ids = {s: i for i, s in enumerate(sorted(set(spk_tr)))}
    y_tr = np.array([spk_ids[s] for s in spk_tr])
    rows = []
    for s in seeds:
        ranking = rank_neurons(ElasticNetProbe(**probe_kwargs, seed=s).fit(x_tr, y_tr).weights())
        rng = np.random.default_rng(s)
        for pct in percents:
            n = max(1, int(round(pct / 100 * len(ranking))))
            rows.append({"seed": s, "percent": pct, "eer_top": eer(x_te[:, ranking[:n]], trials),
                         "eer_random": eer(x_te[:, rng.choice(len(ranking), n, replace=False)], trials)})
    return {"per_layer": per_layer, "neurons": rows, "trials": len(trials)}
