"""Evaluation: macro P/R/F1 and accuracy per task (paper 004 Table 1), the mean absolute
class error (MACE) of the ordered age groups, confusion matrices, hierarchy consistency,
results.json, a readable table and a PNG plot. A target of -1 (a label the utterance's
corpus does not have) is left out of that task's scores. With the age head, its MAE / RMSE
tables and derived groups (recipes/evaluation/age.py) join them."""

import json
import os

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from recipes.age import AGE_KEY, derived_sub_index, split_age_output
from recipes.evaluation.age import age_results, age_table
from recipes.labels import AGE_TASKS, MISSING, TASKS
from recipes.ordinal import decode_logits



class PredictionCollector:
    """Accumulates predictions and targets of the three tasks over a stage; ``decode`` (task ->
    argmax | median, the heads' ``decode``; default argmax) turns each head's logits into a class."""

    def __init__(self, decode=None):
        self.decode = dict(decode or {})
        self.pred = {t: [] for t in TASKS}
        self.true = {t: [] for t in TASKS}
        self.ids = []
        self.age_pred, self.age_true = [], []  # the age head: (batch, 1 or 2) years, (batch, 2) bounds

    def append(self, ids, logits, targets):
        self.ids.extend(ids)
        for t in TASKS:
            self.pred[t].append(decode_logits(logits[t].detach(), self.decode.get(t, "argmax")).cpu())
            self.true[t].append(targets[t].detach().cpu())
        if AGE_KEY in logits and AGE_KEY in targets:
            self.age_pred.append(logits[AGE_KEY].detach().float().cpu())
            self.age_true.append(targets[AGE_KEY].detach().float().cpu())

    def age_arrays(self):
        """(years, sigma or None, lower, upper) arrays, or None without an age head."""
        if not self.age_pred:
            return None
        years, sigma = split_age_output(torch.cat(self.age_pred))
        bounds = torch.cat(self.age_true)
        return (years.numpy(), None if sigma is None else sigma.numpy(), bounds[:, 0].numpy(),
                bounds[:, 1].numpy())

    def arrays(self):
        cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros(0, dtype=int)  # noqa: E731
        return {t: cat(self.pred[t]) for t in TASKS}, {t: cat(self.true[t]) for t in TASKS}


def task_metrics(y_true, y_pred, n_classes, ordered=False):
    """Macro P/R/F1, accuracy and confusion over the utterances with a label; with
    ``ordered``, also MACE: mean |predicted group index - true group index|."""
    keep = np.asarray(y_true) != MISSING
    y_true, y_pred = np.asarray(y_true)[keep], np.asarray(y_pred)[keep]
    labels = list(range(n_classes))
    p, r, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0)
    out = {"precision": float(p), "recall": float(r), "f1": float(f1),
           "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
           "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
           "n_labelled": int(len(y_true))}
    if ordered:
        out["mace"] = mace(y_true, y_pred)
    return out


def mace(y_true, y_pred):
    """Mean absolute class error over ordered groups: mean |pred index - true index|."""
    if len(y_true) == 0:
        return 0.0
    return float(np.mean(np.abs(np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float))))


def hierarchy_consistency(sub_pred, sup_pred, parent):
    """Share of utterances whose predicted age-sub lies inside the predicted age-sup."""
    if len(sub_pred) == 0:
        return 0.0
    return float(np.mean(parent.numpy()[sub_pred] == sup_pred))


def compute_results(collector, label_space):
    pred, true = collector.arrays()
    sizes = {"gender": label_space.n_gender, "age_sup": label_space.n_sup, "age_sub": label_space.n_sub}
    out = {t: task_metrics(true[t], pred[t], sizes[t], ordered=t in AGE_TASKS) for t in TASKS}
    out["hierarchy_consistency"] = hierarchy_consistency(pred["age_sub"], pred["age_sup"],
                                                         label_space.parent_index())
    out["n_utterances"] = int(len(true["gender"]))
    age = collector.age_arrays()
    if age is not None:
        years, sigma, lower, upper = age
        out[AGE_KEY] = age_results(years, lower, upper, true["gender"], true["age_sub"], pred["age_sub"],
                                   pred["age_sup"], label_space, sigma)
    return out


def add_coverage(results, manifest_ids, scored_ids):
    """Record how many of the manifest's rows were scored and the IDs that were not
    (audio that failed to load at evaluation is dropped from its batch)."""
    scored = set(scored_ids)
    results["n_manifest_rows"] = len(manifest_ids)
    results["n_scored"] = sum(uid in scored for uid in manifest_ids)
    results["not_scored"] = [uid for uid in manifest_ids if uid not in scored]
    return results


def mean_f1(results):
    return float(np.mean([results[t]["f1"] for t in TASKS]))


def results_table(results, title="test"):
    lines = [f"| {title} | P | R | F1 | Acc | MACE |", "|---|---|---|---|---|---|"]
    for t in TASKS:
        m = results[t]
        err = f"{m['mace']:.3f}" if "mace" in m else "-"
        lines.append(f"| {t} | {100 * m['precision']:.2f} | {100 * m['recall']:.2f} | "
                     f"{100 * m['f1']:.2f} | {100 * m['accuracy']:.2f} | {err} |")
    lines.append(f"\nhierarchy consistency: {100 * results['hierarchy_consistency']:.2f}% "
                 f"({results['n_utterances']} utterances)")
    if AGE_KEY in results:
        lines += [""] + age_table(results[AGE_KEY])
    if "n_manifest_rows" in results:
        lines.append(f"\nscored {results['n_scored']} of the manifest's {results['n_manifest_rows']} rows")
        if results["not_scored"]:  # audio that failed to load (warnings in the log)
            lines.append("not scored (unreadable audio): " + ", ".join(results["not_scored"]))
    return "\n".join(lines)


def plot_confusions(results, label_space, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"gender": label_space.genders, "age_sup": label_space.age_sup, "age_sub": label_space.age_sub}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, t in zip(axes, TASKS):
        cm = np.array(results[t]["confusion"])
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(names[t])), names[t], rotation=45, ha="right")
        ax.set_yticks(range(len(names[t])), names[t])
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_title(f"{t}  (F1 {100 * results[t]['f1']:.1f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(output_folder, stage_results, label_space):
    """results.json ({stage: {...}}), results.md and confusion_<stage>.png."""
    os.makedirs(output_folder, exist_ok=True)
    path = os.path.join(output_folder, "results.json")
    old = {}
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
    old.update(stage_results)
    with open(path + ".tmp", "w") as f:
        json.dump(old, f, indent=2)
    os.replace(path + ".tmp", path)
    tables = []
    for stage, res in old.items():
        tables.append(results_table(res, stage))
        plot_confusions(res, label_space, os.path.join(output_folder, f"confusion_{stage}.png"))
    with open(os.path.join(output_folder, "results.md"), "w") as f:
        f.write("\n\n".join(tables) + "\n")
    return "\n\n".join(tables)


def write_predictions(path, collector, label_space):
    """Per-utterance CSV: id, then true and predicted label names of each task; with the age
    head also age_pred (years), age_sigma (gaussian_nll), age_true (exact ages), age_lo /
    age_hi (age-group-only rows: the bin) and age_sub_from_years (the derived group)."""
    import csv

    pred, true = collector.arrays()
    names = {"gender": label_space.genders, "age_sup": label_space.age_sup, "age_sub": label_space.age_sub}
    age = collector.age_arrays()
    age_cols = []
    if age is not None:
        years, sigma, lower, upper = age
        derived = derived_sub_index(years, label_space).tolist() if len(years) else []
        age_cols = ["age_pred"] + (["age_sigma"] if sigma is not None else []) + [
            "age_true", "age_lo", "age_hi", "age_sub_from_years"]
    num = lambda x: "" if np.isnan(x) else f"{x:.2f}"  # noqa: E731
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID"] + [f"{t}_{k}" for t in TASKS for k in ("true", "pred")] + age_cols)
        for i, uid in enumerate(collector.ids):
            row = [names[t][a[t][i]] if a[t][i] != MISSING else "" for t in TASKS for a in (true, pred)]
            if age is not None:
                exact = lower[i] == upper[i]
                row += [num(years[i])] + ([num(sigma[i])] if sigma is not None else []) + [
                    num(lower[i]) if exact else "", "" if exact else num(lower[i]),
                    "" if exact else num(upper[i]), label_space.age_sub[derived[i]]]
            w.writerow([uid] + row)
