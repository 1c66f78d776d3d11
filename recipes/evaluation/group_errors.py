"""Per-group error table: for whom does the profiler fail?

From the test manifest rows and the per-utterance predictions (predictions_test.csv,
recipes/evaluation/metrics.py ``write_predictions``), one table per grouping: gender x age group
always, language and channel when the manifest has more than one value in that column.
Each group row: count, gender accuracy, age-group (sub-group) accuracy, age-super-group
accuracy and, when the predictions have an ``age_pred`` column (years), the age MAE: the
distance to the true age (``age_true``, else the manifest's ``age``) or, for an interval
label (``age_lo`` / ``age_hi``), to the nearest edge of the interval (0 inside it).
Labels missing for an utterance (masked) are left out of that metric.
Then, per table and metric, the largest gap between two groups with at least
``min_count`` utterances (best and worst group named).
"""

import csv
import os

import numpy as np

MISSING = "(missing)"
METRICS = (("gender_acc", "gender acc %", 100.0), ("age_group_acc", "age-group acc %", 100.0),
           ("age_sup_acc", "age-sup acc %", 100.0), ("age_mae", "age MAE (years)", 1.0))
HIGHER_IS_BETTER = {"gender_acc": True, "age_group_acc": True, "age_sup_acc": True, "age_mae": False}


def read_predictions(path, what="predictions not found (written by train.py / audit.py)"):
    """Rows (dicts) of a CSV (predictions, a manifest); a clear error naming it when it is absent."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what}")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def age_error(pred, row, manifest_row):
    """|predicted years - true years|, or the distance to the interval [age_lo, age_hi];
    None when there is no prediction or no age label."""
    p = _float(pred)
    if p is None:
        return None
    true = _float(row.get("age_true"))
    if true is None and _float(row.get("age_lo")) is None:
        true = _float(manifest_row.get("age"))
    if true is not None:
        return abs(p - true)
    lo, hi = _float(row.get("age_lo")), _float(row.get("age_hi"))
    if lo is None or hi is None:
        return None
    return max(lo - p, 0.0, p - hi)


def _accuracy(pairs):
    pairs = [(t, p) for t, p in pairs if t not in ("", None)]
    return (float(np.mean([t == p for t, p in pairs])), len(pairs)) if pairs else (None, 0)


def group_metrics(preds, manifest):
    """Metrics of one group: preds = list of prediction rows, manifest = ID -> manifest row."""
    out = {"n": len(preds)}
    for key, task in (("gender_acc", "gender"), ("age_group_acc", "age_sub"), ("age_sup_acc", "age_sup")):
        out[key], out[f"{key}_n"] = _accuracy((r.get(f"{task}_true"), r.get(f"{task}_pred")) for r in preds)
    errs = [e for e in (age_error(r.get("age_pred"), r, manifest.get(r["ID"], {})) for r in preds) if e is not None]
    out["age_mae"], out["age_mae_n"] = (float(np.mean(errs)), len(errs)) if errs else (None, 0)
    return out


def largest_gaps(rows, min_count=1):
    """metric -> {gap, best, worst, best_value, worst_value} over the groups with at least
    ``min_count`` utterances labelled for that metric (at least two groups)."""
    gaps = {}
    for key, _, _ in METRICS:
        vals = [(r[key], r["group"]) for r in rows if r.get(key) is not None and r[f"{key}_n"] >= min_count]
        if len(vals) < 2:
            continue
        hi, lo = max(vals), min(vals)
        best, worst = (hi, lo) if HIGHER_IS_BETTER[key] else (lo, hi)
        gaps[key] = {"gap": float(hi[0] - lo[0]), "best": best[1], "worst": worst[1],
                     "best_value": float(best[0]), "worst_value": float(worst[0])}
    return gaps


def group_errors(manifest_rows, prediction_rows, label_order=None, min_count=1):
    """{"tables": {name: [group rows]}, "gaps": {name: largest_gaps}, "n": scored}.

    manifest_rows: the test manifest (dicts with ID, gender, age, age_group[, language,
    channel]); prediction_rows: predictions_test.csv rows (ID, <task>_true, <task>_pred
    [, age_pred, age_true | age_lo, age_hi]); only the predicted utterances are counted.
    label_order: optional {"gender": [...], "age_sub": [...]} to sort the groups.
    """
    manifest = {r["ID"]: r for r in manifest_rows}
    order = label_order or {}

    def rank(task, name):
        names = order.get(task, [])
        return (names.index(name) if name in names else len(names), name)

    groupings = {"gender x age group": lambda r, m: (r.get("gender_true") or m.get("gender") or MISSING,
                                                     r.get("age_sub_true") or m.get("age_group") or MISSING)}
    for col in ("language", "channel"):
        values = {(m.get(col) or "").strip() for m in manifest_rows}
        if len(values - {""}) > 1:
            groupings[col] = lambda r, m, col=col: ((m.get(col) or "").strip() or MISSING,)
    tables, gaps = {}, {}
    for name, key_fn in groupings.items():
        groups = {}
        for r in prediction_rows:
            groups.setdefault(key_fn(r, manifest.get(r["ID"], {})), []).append(r)
        if name == "gender x age group":
            keys = sorted(groups, key=lambda k: (rank("gender", k[0]), rank("age_sub", k[1])))
        else:
            keys = sorted(groups, key=lambda k: (k[0] == MISSING, k))
        tables[name] = [{"group": " / ".join(k), **group_metrics(groups[k], manifest)} for k in keys]
        gaps[name] = largest_gaps(tables[name], min_count)
    return {"tables": tables, "gaps": gaps, "n": len(prediction_rows), "min_count": min_count}


def _fmt(value, scale, digits=1):
    return "-" if value is None else f"{scale * value:.{digits}f}"


def gap_sentence(key, gap):
    label, scale = {k: (lab, s) for k, lab, s in METRICS}[key]
    unit = " years" if key == "age_mae" else " points"
    return (f"{label.split(' %')[0].split(' (')[0]}: {_fmt(gap['gap'], scale)}{unit} "
            f"({gap['best']} {_fmt(gap['best_value'], scale)} vs {gap['worst']} {_fmt(gap['worst_value'], scale)})")


def group_markdown(result, title="Per-group errors (test)"):
    """Markdown of group_errors(): a table per grouping, then its largest gaps."""
    md = [f"## {title}"]
    for name, rows in result["tables"].items():
        keys = [(k, lab, s) for k, lab, s in METRICS if any(r.get(k) is not None for r in rows)]
        md += ["", f"### by {name}", "", "| group | n | " + " | ".join(lab for _, lab, _ in keys) + " |",
               "|---|---|" + "---|" * len(keys)]
        for r in rows:
            md.append(f"| {r['group']} | {r['n']} | " + " | ".join(_fmt(r[k], s) for k, _, s in keys) + " |")
        g = result["gaps"].get(name, {})
        if g:
            md += ["", f"largest gap between groups (at least {result['min_count']} labelled utterance(s)):"]
            md += [f"- {gap_sentence(k, v)}" for k, v in g.items()]
    return "\n".join(md)


def run_group_errors(output_folder, manifest_rows, label_space=None, min_count=1,
                     predictions="predictions_test.csv"):
    """group_errors() of a train.py output folder's predictions CSV (train.py stores it in
    results.json under test.groups, then appends ``append_markdown`` to results.md)."""
    order = None
    if label_space is not None:
        order = {"gender": label_space.genders, "age_sub": label_space.age_sub}
    return group_errors(manifest_rows, read_predictions(os.path.join(output_folder, predictions)), order, min_count)


def append_markdown(output_folder, result):
    """Append group_markdown(result) to <output_folder>/results.md; returns the Markdown."""
    md = group_markdown(result)
    with open(os.path.join(output_folder, "results.md"), "a") as f:
        f.write("\n" + md + "\n")
    return md
