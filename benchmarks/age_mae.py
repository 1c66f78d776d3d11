#!/usr/bin/env python3
"""Age in years: the age head's test scores of trained folders (train.py with
--age_regression=True) against a constant baseline, in one markdown file.

    python benchmarks/age_mae.py --row "speechocean762 ECAPA=results/bench_age/<folder>/1234" \
        [--row "Common Voice GE2E=<folder>"] [--command "NAME=<train command>"] [--wall "NAME=<time>"] \
        [--out benchmarks/results/age_mae.md]

Per row, from the folder's results.json (recipes/evaluation/age.py): MAE / RMSE in years on the
test split for exact ages, overall, per gender and per age group; the interval error for
age-group-only labels (distance from the predicted age to the true bin, 0 inside, and the share
inside); the groups derived from the predicted years beside the group heads. The baseline
predicts one constant for every test row, fitted on the folder's manifests/train.csv: the
median (the constant of least mean absolute / interval distance) and the mean (least squared
distance), scored on the same test rows (predictions_test.csv). Wall time: the span of the
folder's log.txt unless --wall gives it.
"""

import argparse
import datetime
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import rel, script_command, table_path, write_markdown  # noqa: E402
from recipes.age import age_interval  # noqa: E402
from recipes.evaluation.age import error_stats, interval_distance  # noqa: E402
from recipes.evaluation.group_errors import read_predictions  # noqa: E402
from recipes.labels import LabelSpace  # noqa: E402
from recipes.model_folder import label_space_tree  # noqa: E402

MACHINE = "2 CPU cores (AMD EPYC), no GPU"
REFERENCES = [
    "wav2vec 2.0 fine-tuned for age and gender on several corpora (aGender, Common Voice, TIMIT, "
    "VoxCeleb2, SpeechDat II): 7.1-10.8 years MAE depending on the corpus (Burkhardt et al. 2023, "
    "\"Speech-based Age and Gender Prediction with Transformers\", arXiv:2306.16962)",
    "TIMIT test, x-vector / QuartzNet embedders pre-trained on VoxCeleb and Common Voice: 5.12 (male) and "
    "5.29 (female) years MAE (Kwasny and Hemmerling 2020, \"Joint gender and age estimation based on speech "
    "signals using x-vectors and transfer learning\", arXiv:2012.01551)",
]


def label_space_of(folder):
    """The LabelSpace saved in a trained or exported folder."""
    return LabelSpace(**label_space_tree(folder))


def read_csv(path):
    return read_predictions(path, "not found: is it a train.py output folder?")


def _num(x):
    try:
        return float(x) if str(x).strip() != "" else np.nan
    except ValueError:
        return np.nan


def train_intervals(folder, ls):
    """(lower, upper) years of the training manifest's labelled rows."""
    path = os.path.join(folder, "manifests", "train.csv")
    bounds = []
    for n, row in enumerate(read_csv(path), start=2):
        try:
            bounds.append(age_interval(ls, row.get("age"), row.get("age_group")))
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}, line {n}: bad age / age_group ({err})") from None
    b = np.array(bounds, dtype=float).reshape(-1, 2)
    return b[~np.isnan(b).any(axis=1)]


def constants(bounds, step=0.1):
    """{median, mean}: the constants of least mean absolute and least mean squared distance to the
    training intervals (for exact ages: the median and the mean)."""
    if len(bounds) == 0:
        return {}
    lo, hi = bounds[:, 0], bounds[:, 1]
    if np.all(lo == hi):
        return {"median": float(np.median(lo)), "mean": float(np.mean(lo))}
    grid = np.arange(np.floor(lo.min()), np.ceil(np.minimum(hi, 100).max()) + step, step)
    dist = interval_distance(grid[:, None], lo[None, :], hi[None, :])  # (grid, n)
    return {"median": float(grid[np.argmin(dist.mean(axis=1))]),
            "mean": float(grid[np.argmin((dist ** 2).mean(axis=1))])}


def baseline(folder, ls, res_test):
    """Scores of the training constants on the scored test rows (predictions_test.csv):
    {name: (constant, block)}, a block shaped like results.json's (overall, per gender and age group)."""
    rows = read_csv(os.path.join(folder, "predictions_test.csv"))
    true = np.array([_num(r.get("age_true")) for r in rows])
    lo = np.where(np.isnan(true), [_num(r.get("age_lo")) for r in rows], true)
    hi = np.where(np.isnan(true), [_num(r.get("age_hi")) for r in rows], true)
    gender = np.array([r.get("gender_true", "") for r in rows])
    sub = np.array([r.get("age_sub_true", "") for r in rows])
    known = ~(np.isnan(lo) | np.isnan(hi))
    exact = known & (lo == hi)
    out = {}
    for name, c in constants(train_intervals(folder, ls)).items():
        err = interval_distance(np.full(len(rows), c), np.nan_to_num(lo), np.nan_to_num(hi))

        def block(sel):
            i = sel & known & ~exact
            b = {"exact": error_stats(err[sel & exact]), "interval": error_stats(err[i])}
            b["interval"]["inside"] = float(np.mean(err[i] == 0)) if i.any() else None
            return b

        out[name] = (c, {**block(np.ones(len(rows), dtype=bool)),
                         "per_gender": {g: block(gender == g) for g in ls.genders},
                         "per_age_group": {a: block(sub == a) for a in ls.age_sub}})
    return out


def wall_time(folder):
    """Minutes between the first and the last time stamp of the folder's log.txt (None: no log)."""
    path = os.path.join(folder, "log.txt")
    if not os.path.isfile(path):
        return None
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", open(path).read(), re.M)
    if len(stamps) < 2:
        return None
    t0, t1 = (datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in (stamps[0], stamps[-1]))
    return f"{(t1 - t0).total_seconds() / 60:.0f} min (log.txt span)"


def load_row(name, folder):
    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (row {name!r}): has the training finished?")
    with open(path) as f:
        test = json.load(f).get("test", {})
    if "age_years" not in test:
        raise ValueError(f"{path}: no test age_years (row {name!r}): train with --age_regression=True")
    ls = label_space_of(folder)
    return {"name": name, "folder": folder, "age": test["age_years"], "baseline": baseline(folder, ls, test),
            "n_utterances": test.get("n_utterances")}


def _f(x, pct=False):
    return "-" if x is None else (f"{100 * x:.1f}" if pct else f"{x:.2f}")


def _cells(b):
    e, i = b["exact"], b["interval"]
    return [str(e["n"]), _f(e["mae"]), _f(e["rmse"]), str(i["n"]), _f(i["mae"]), _f(i["rmse"]),
            _f(i.get("inside"), pct=True)]


def _mae(b):
    """The exact-age MAE of a block, else its interval MAE."""
    return b["exact"]["mae"] if b["exact"]["n"] else b["interval"]["mae"]


HEADER = ["| row | split / group | n exact | MAE (years) | RMSE | n interval | interval MAE | interval RMSE | inside bin % |",
          "|---|---|---|---|---|---|---|---|---|"]


def tables(rows):
    """Markdown lines: the summary (model and baselines), the breakdown per gender and age group,
    the derived groups."""
    lines = ["## Test split: the model against a constant", ""] + HEADER
    for r in rows:
        lines.append("| " + " | ".join([f"**{r['name']}**", "all"] + _cells(r["age"])) + " |")
        for bname, (c, b) in r["baseline"].items():
            lines.append("| " + " | ".join([f"{r['name']}: constant {c:.1f} y (train {bname})", "all"] + _cells(b)) + " |")
    lines += ["", "## Per gender and age group (test)", "",
              HEADER[0] + " constants' MAE (median / mean) |", HEADER[1] + "---|"]
    for r in rows:
        for key, label in (("per_gender", "gender"), ("per_age_group", "age group")):
            for g, b in r["age"][key].items():
                lines.append("| " + " | ".join([r["name"], f"{label} {g}"] + _cells(b) + [
                    " / ".join(_f(_mae(bb[key][g])) for _, bb in r["baseline"].values())]) + " |")
    lines += ["", "## Groups derived from the predicted years vs the group heads (test)", "",
              "| row | task | accuracy from years % | accuracy of the head % | agreement % |", "|---|---|---|---|---|"]
    for r in rows:
        for task, d in r["age"].get("derived_groups", {}).items():
            lines.append(f"| {r['name']} | {task} | {_f(d['accuracy_from_years'], True)} | "
                         f"{_f(d['accuracy_head'], True)} | {_f(d['agreement'], True)} |")
    return lines


def standing(rows):
    """One sentence per row: the head's error against the training median's, then the caveat."""
    out = []
    for r in rows:
        kind = "MAE" if r["age"]["exact"]["n"] else "interval error"
        model = _mae(r["age"])
        base = _mae(r["baseline"]["median"][1]) if "median" in r["baseline"] else None
        if model is None or base is None:
            out.append(f"- {r['name']}: no scored test rows.")
            continue
        change = 100 * (base - model) / base if base else 0.0
        out.append(f"- {r['name']}: {kind} {model:.2f} years against {base:.2f} for the training median "
                   f"({abs(change):.0f}% {'lower' if change >= 0 else 'higher'}).")
    out.append("- Not directly comparable with the published figures below: other corpora and age ranges, "
               "16 kHz audio and large pretrained models there, 8 kHz audio and small CPU-sized encoders here; "
               "an interval error (0 anywhere inside the true decade) is smaller than the MAE to the unknown "
               "exact age would be.")
    return out


def document(rows, commands, walls):
    lines = ["# Age in years: MAE of the age head", "",
             "Written by `benchmarks/age_mae.py` from the trained folders' `results.json` (test split). "
             f"Machine: {MACHINE}. Exact ages score |predicted - age|; age-group-only labels (Common Voice's "
             "decades) score the distance from the predicted age to the true bin (0 inside; \"inside bin\": the "
             "share of predictions inside it). The constant rows predict the training split's median or mean "
             "age (for intervals: the constant of least mean absolute / squared distance to the training bins) "
             "for every test row: a head that learnt nothing scores about the same.", "",
             "| row | folder | command | wall time |", "|---|---|---|---|"]
    for r in rows:
        cmd = commands.get(r["name"])
        lines.append(f"| {r['name']} | `{rel(r['folder'])}` | {f'`{cmd}`' if cmd else '-'} | "
                     f"{walls.get(r['name']) or wall_time(r['folder']) or '-'} |")
    again = " ".join(f'--row "{r["name"]}={rel(r["folder"])}"' for r in rows)
    lines += ["", f"This file: `{script_command(__file__, again)}` (with `--command` / `--wall` per row)."]
    lines += [""] + tables(rows) + ["", "## Where this recipe stands", ""] + standing(rows)
    lines += ["", "## Published reference points", ""] + [f"- {x}" for x in REFERENCES]
    return "\n".join(lines) + "\n"


def pairs(values, what, last=False):
    """NAME=VALUE options -> dict; split at the last "=" with ``last`` (a row's folder holds none,
    its name may), else at the first (a command holds many)."""
    out = {}
    for v in values or []:
        if "=" not in v:
            raise SystemExit(f"error: {what} {v!r}: expected NAME=VALUE")
        k, val = v.rsplit("=", 1) if last else v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", action="append", required=True, help="NAME=FOLDER (a train.py output folder)")
    p.add_argument("--command", action="append", help="NAME=the command that trained the row")
    p.add_argument("--wall", action="append", help="NAME=wall time of the row (else: log.txt span)")
    p.add_argument("--notes", default=None, help="a markdown file appended at the end")
    p.add_argument("--out", default=table_path("age_mae.md"))
    a = p.parse_args(argv)
    try:
        rows = [load_row(k, v) for k, v in pairs(a.row, "--row", last=True).items()]
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    text = document(rows, pairs(a.command, "--command"), pairs(a.wall, "--wall"))
    if a.notes:
        text += "\n" + open(a.notes).read()
    write_markdown(a.out, text)
    return a.out


if __name__ == "__main__":
    main()
