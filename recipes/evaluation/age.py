"""Scores of the age head (recipes/age.py): MAE and RMSE in years, overall, per gender and
per age group; the groups derived from the predicted years (through the label space's
bins) beside the group heads' own predictions, with the agreement rate of the two.

An exact-age row scores |predicted - age| ("exact"); an age-group-only row scores the
distance from the prediction to its bin, 0 inside ("interval error", reported apart); a row
without an age is not scored.
"""

import numpy as np

from recipes.age import derived_sub_index
from recipes.labels import MISSING


def interval_distance(pred, lower, upper):
    """Distance in years from each prediction to [lower, upper] (0 inside)."""
    return np.maximum(lower - pred, 0.0) + np.maximum(pred - upper, 0.0)


def error_stats(err):
    """n, MAE and RMSE of absolute errors (None when empty)."""
    err = np.asarray(err, dtype=float)
    if len(err) == 0:
        return {"n": 0, "mae": None, "rmse": None}
    return {"n": int(len(err)), "mae": float(np.mean(err)), "rmse": float(np.sqrt(np.mean(err ** 2)))}


def age_results(pred, lower, upper, gender_true, sub_true, sub_head, sup_head, label_space, sigma=None):
    """Dict of the age head's scores (arrays of one stage, (n,) each; NaN bounds: no age)."""
    pred, lower, upper = (np.asarray(a, dtype=float) for a in (pred, lower, upper))
    gender_true, sub_true = np.asarray(gender_true), np.asarray(sub_true)
    known = ~(np.isnan(lower) | np.isnan(upper))
    exact, interval = known & (lower == upper), known & (lower != upper)
    err = interval_distance(pred, np.nan_to_num(lower), np.nan_to_num(upper))

    def block(rows):
        b = {"exact": error_stats(err[rows & exact]), "interval": error_stats(err[rows & interval])}
        b["interval"]["inside"] = float(np.mean(err[rows & interval] == 0)) if (rows & interval).any() else None
        return b

    everyone = np.ones(len(pred), dtype=bool)
    out = {"n_scored": int(known.sum()), **block(everyone),
           "per_gender": {g: block(gender_true == i) for i, g in enumerate(label_space.genders)},
           "per_age_group": {s: block(sub_true == i) for i, s in enumerate(label_space.age_sub)}}
    sub_years = derived_sub_index(pred, label_space).numpy() if len(pred) else np.zeros(0, dtype=int)
    parent = label_space.parent_index().numpy()
    sup_true = np.where(sub_true != MISSING, parent[np.maximum(sub_true, 0)], MISSING)
    out["derived_groups"] = {
        "age_sub": group_agreement(sub_years, np.asarray(sub_head), sub_true),
        "age_sup": group_agreement(parent[sub_years] if len(sub_years) else sub_years, np.asarray(sup_head), sup_true),
    }
    if sigma is not None and len(sigma):
        out["mean_sigma"] = float(np.mean(sigma))
    return out


def group_agreement(from_years, from_head, true):
    """Accuracy of the groups derived from years and of the head's groups (labelled rows),
    and their agreement rate (every row)."""
    lab = true != MISSING
    acc = lambda p: float(np.mean(p[lab] == true[lab])) if lab.any() else None  # noqa: E731
    return {"accuracy_from_years": acc(from_years), "accuracy_head": acc(from_head),
            "agreement": float(np.mean(from_years == from_head)) if len(from_head) else None}


def _fmt(x, pct=False):
    if x is None:
        return "-"
    return f"{100 * x:.2f}" if pct else f"{x:.2f}"


def age_table(res):
    """Markdown lines of ``age_results``."""
    lines = ["| age in years | n exact | MAE | RMSE | n interval | interval MAE | interval RMSE | inside bin % |",
             "|---|---|---|---|---|---|---|---|"]

    def row(name, b):
        e, i = b["exact"], b["interval"]
        lines.append(f"| {name} | {e['n']} | {_fmt(e['mae'])} | {_fmt(e['rmse'])} | {i['n']} | "
                     f"{_fmt(i['mae'])} | {_fmt(i['rmse'])} | {_fmt(i['inside'], pct=True)} |")

    row("all", res)
    for g, b in res["per_gender"].items():
        row(f"gender {g}", b)
    for s, b in res["per_age_group"].items():
        row(f"age group {s}", b)
    lines.append("\n| groups | accuracy from years % | accuracy of the head % | agreement % |\n|---|---|---|---|")
    for t, d in res["derived_groups"].items():
        lines.append(f"| {t} | {_fmt(d['accuracy_from_years'], True)} | {_fmt(d['accuracy_head'], True)} | "
                     f"{_fmt(d['agreement'], True)} |")
    if "mean_sigma" in res:
        lines.append(f"\nmean predicted sigma: {res['mean_sigma']:.2f} years")
    return lines
