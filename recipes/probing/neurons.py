"""Neuron-level analysis of paper 001: Algorithm 1 ranking, masking, minimal neuron sets,
and the distribution of salient neurons across layers."""

import numpy as np

from recipes.probing.probes import ElasticNetProbe


def top_neurons(weights, p):
    """Algorithm 1 (TopNeurons): per class, neurons sorted by |w| whose cumulative mass
    reaches the share p of the class's total mass; union over classes.

    weights: (n_classes, n_neurons). Returns a sorted array of neuron indices.
    """
    selected = set()
    for w in np.abs(np.asarray(weights)):
        order = np.argsort(-w, kind="stable")
        total = w.sum()
        if total <= 0:
            continue
        cum = np.cumsum(w[order]) / total
        n = int(np.searchsorted(cum, p - 1e-12) + 1)
        selected.update(order[:n].tolist())
    return np.array(sorted(selected), dtype=int)


def rank_neurons(weights, p_start=0.001, p_step=0.001):
    """Full ranking (paper 001, 3.3): grow p from p_start; each step appends the newly
    selected neurons (ordered by their largest |w| over classes) to the ranking."""
    weights = np.asarray(weights)
    strength = np.abs(weights).max(axis=0)
    ranking, seen = [], set()
    p = p_start
    while len(ranking) < weights.shape[1] and p <= 1.0 + p_step:
        new = [i for i in top_neurons(weights, min(p, 1.0)) if i not in seen]
        new.sort(key=lambda i: -strength[i])
        ranking.extend(new)
        seen.update(new)
        p += p_step
    rest = [i for i in np.argsort(-strength, kind="stable") if i not in seen]  # all-zero weights
    return np.array(ranking + rest, dtype=int)


def masking_test(probe, x, y, ranking, frac=0.2, seed=0):
    """Accuracy of the trained probe keeping only the top / bottom / random ``frac`` of
    neurons, the rest set to zero (paper 001, 3.3.1)."""
    n = max(1, int(round(frac * len(ranking))))
    rng = np.random.default_rng(seed)
    keep = {"top": ranking[:n], "bottom": ranking[-n:], "random": rng.choice(len(ranking), n, replace=False)}
    return {k: probe.score(x, y, keep=v)["accuracy"] for k, v in keep.items()}


def minimal_neuron_set(x_tr, y_tr, x_te, y_te, ranking, oracle_acc, percents=(1, 5, 10, 15, 20, 25, 50, 75),
                       delta=1.0, probe_kwargs=None, seed=0):
    """Retrain on the top N% neurons, N growing, until within ``delta`` accuracy points of
    the oracle; the same N% of random neurons for comparison (paper 001, 3.3.2)."""
    probe_kwargs = dict(probe_kwargs or {}, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for pct in percents:
        n = max(1, int(round(pct / 100 * len(ranking))))
        top, rand = ranking[:n], rng.choice(len(ranking), n, replace=False)
        acc_top = ElasticNetProbe(**probe_kwargs).fit(x_tr[:, top], y_tr).score(x_te[:, top], y_te)["accuracy"]
        acc_rand = ElasticNetProbe(**probe_kwargs).fit(x_tr[:, rand], y_tr).score(x_te[:, rand], y_te)["accuracy"]
        rows.append({"percent": pct, "neurons": n, "acc_top": acc_top, "acc_random": acc_rand})
        if 100 * acc_top >= 100 * oracle_acc - delta:
            break
    return rows, ranking[:rows[-1]["neurons"]]


def layer_distribution(selected, spans):
    """Count and share of selected neurons per layer (paper 001, Tables 5-7)."""
    selected = np.asarray(selected)
    out = {}
    for name, (a, b) in spans.items():
        c = int(((selected >= a) & (selected < b)).sum())
        out[name] = {"count": c, "percent_of_selected": 100.0 * c / max(len(selected), 1),
                     "percent_of_layer": 100.0 * c / (b - a)}
    return out
