#!/usr/bin/env python3
"""Benchmark of the Common Voice recipe: core rows on the Common Voice sample's speaker-disjoint
test, and every trained row scored on speechocean762's test split (adults / teens / children).

Each row is hparams/commonvoice/train.yaml with its own options (encoder, base or +CH, class
imbalance handling); its output folder is <results>/<row>/<seed>. A row is trained only with
``--train`` and only when its results.json is missing; otherwise the script collects what exists
and lists the rest as "not run yet". Wall times come from <results>/times.txt (lines
"<row> rc=<code> seconds=<s>", appended by --train or by whoever trained the row).

speechocean762 scoring goes through the public inference class
(recipes.inference.interface.SpeakerProfilerInterface) on the test manifest that
local/prepare_speechocean762.py writes (<results>/speechocean762_manifests); the scores of a
row are cached in <results>/speechocean762_scores/<row>.json with the checkpoint they came
from, so a re-run scores only new or retrained rows.

    python benchmarks/commonvoice.py                  # collect + score, write the table
    python benchmarks/commonvoice.py --train --rows ecapa_cpu_ch_plain
    python benchmarks/commonvoice.py --add-row "my_row --class_weighting=inverse"
"""

import argparse
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import (CV_DATA, ROOT, SO_DATA, TABLES, in_root, machine, read_csv,  # noqa: E402
                               run_logged, write_markdown)
from benchmarks.speechocean_groups import (SO_GROUPS, cached_speechocean, majority_speechocean,  # noqa: E402
                                           speechocean_manifest)
from recipes.labels import TASKS  # noqa: E402

RESULTS = "results/bench_cv"
DEFAULT_SEED = 1234  # hparams/blocks/train.yaml
TABLE = f"{TABLES}/commonvoice_core.md"
LABELS = "hparams/labels/commonvoice_decades.yaml"  # the recipe's label space (rows not trained yet)
BALANCED = "--balance_sampling_by=[gender,age_sub]"
RESNET = "--model=!include:../encoders/resnet_cpu_teacher.yaml"
BASE = "--hierarchical=False"
WEIGHTED = "--class_weighting=inverse"
GE2E = "hparams/commonvoice/ge2e.yaml"  # a row whose options start with a YAML trains that recipe
POOLED = "hparams/pooled/ge2e.yaml"  # trained on Common Voice + speechocean762 (multi-condition)
# name -> extra train.py options (ECAPA / ResNet CPU teachers, base / +CH, balanced sampling or class weights on / off)
ROWS = {
    "ecapa_cpu_ch_balanced": [BALANCED],
    "ecapa_cpu_ch_plain": [],
    "ecapa_cpu_base_balanced": [BASE, BALANCED],
    "ecapa_cpu_base_plain": [BASE],
    "resnet_cpu_ch_balanced": [RESNET, BALANCED],
    "resnet_cpu_ch_plain": [RESNET],
    "resnet_cpu_base_balanced": [RESNET, BASE, BALANCED],
    "resnet_cpu_base_plain": [RESNET, BASE],
    "ecapa_cpu_ch_weighted": [WEIGHTED],  # class weights in the losses instead of balanced sampling
    "resnet_cpu_ch_weighted": [RESNET, WEIGHTED],
    # the frozen pretrained GE2E speaker encoder (resemblyzer wheel) with trained heads
    # (with the age-in-years head: the encoder is frozen, so it cannot change the group heads)
    "ge2e_ch_plain": [GE2E, "--age_regression=True"],
    "ge2e_ch_balanced": [GE2E, BALANCED, "--age_regression=True"],
    "ge2e_ch_weighted": [GE2E, WEIGHTED, "--age_regression=True"],
    # paper 004's MKD teacher setting: pooled clean corpora, telephone channel on half the
    # training clips; its Common Voice rows are the Common Voice part of its pooled test
    "ge2e_pooled_mc": [POOLED, f"--speechocean_folder={SO_DATA}", "--age_regression=True"],
}
# goals on the Common Voice test: (label, results.json task, metric, threshold, higher is better)
CV_GOALS = (("gender F1 >= 0.96", "gender", "f1", 0.96, True),
            ("age-sub F1 >= 0.45", "age_sub", "f1", 0.45, True),
            ("MACE <= 0.86", "age_sub", "mace", 0.86, False))
SO_GOAL = 0.95  # speechocean762 adult gender accuracy


def train_command(name, opts, args):
    """train.py's arguments of a row; a trained row's epoch count is the one it was trained with."""
    out = f"{args.results}/{name}/{args.seed}"
    epochs, used = args.epochs, os.path.join(in_root(out), "hyperparams.yaml")
    if os.path.isfile(used):
        with open(used) as f:
            m = re.search(r"^number_of_epochs: (\d+)$", f.read(), re.M)
        epochs = int(m.group(1)) if m else epochs
    seed = [] if args.seed == DEFAULT_SEED else [f"--seed={args.seed}"]  # the YAML's seed otherwise
    yaml = "hparams/commonvoice/train.yaml"
    if opts and opts[0].endswith(".yaml") and not opts[0].startswith("--"):  # not an --opt=...yaml
        yaml, opts = opts[0], opts[1:]
    return ["train.py", yaml, f"--data_folder={args.data}", f"--output_folder={out}",
            f"--number_of_epochs={epochs}", f"--lr={args.lr}", *seed, "--noprogressbar", *opts]


def read_times(path):
    """row -> (seconds, note after them) of its last successful run in a times.txt."""
    times = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                m = re.match(r"(\S+) rc=(\d+) seconds=(\d+)\s*(.*)", line.strip())
                if m and m.group(2) == "0":
                    times[m.group(1)] = (int(m.group(3)), m.group(4).strip("() "))
    return times


def train_row(name, cmd, args):
    """Run train.py for one row (its log in <results>/<row>.log) and append its wall time."""
    results = in_root(args.results)
    os.makedirs(results, exist_ok=True)
    rc, seconds = run_logged([sys.executable, *cmd], os.path.join(results, f"{name}.log"), check=False)
    with open(os.path.join(results, "times.txt"), "a") as f:
        f.write(f"{name} rc={rc} seconds={int(seconds)}\n")
    if rc != 0:
        print(f"{name}: train.py failed (rc={rc}), see {results}/{name}.log", file=sys.stderr)


# ---- Common Voice test: majority-class baseline -------------------------------------------
def label_space_of(folder=None):
    """A trained folder's label space, or (None) the recipe's (hparams/labels/commonvoice_decades.yaml)."""
    if folder is None:
        from hyperpyyaml import load_hyperpyyaml
        with open(os.path.join(ROOT, LABELS)) as f:
            return load_hyperpyyaml(f)["label_space"]
    from recipes.inference.model import ProfilerModel
    return ProfilerModel.from_folder(str(folder)).label_space


def true_indices(rows, space, manifest):
    """(gender, age_sup, age_sub) class indices of manifest rows (errors name file and row)."""
    from recipes.labels import LabelError
    out = []
    for n, r in enumerate(rows, 2):
        try:
            sub = space.sub_index(r.get("age"), r.get("age_group"))
            out.append((space.gender_index(r["gender"]), space.sup_index(sub), sub))
        except (LabelError, KeyError) as err:
            raise ValueError(f"{manifest}, row {n}: {err}") from None
    return out


def majority_baseline(manifest, space):
    """Always the test split's most frequent class, per task: P/R/F1 (macro), MACE of the ages."""
    from sklearn.metrics import precision_recall_fscore_support
    labels = true_indices(read_csv(manifest), space, manifest)
    sizes = (space.n_gender, space.n_sup, space.n_sub)
    out = {}
    for t, task in enumerate(TASKS):
        true = [lab[t] for lab in labels]
        maj = max(set(true), key=true.count)
        p, r, f, _ = precision_recall_fscore_support(true, [maj] * len(true), labels=list(range(sizes[t])),
                                                     average="macro", zero_division=0)
        out[task] = {"precision": p, "recall": r, "f1": f, "class": maj}
        if task != "gender":
            out[task]["mace"] = sum(abs(maj - y) for y in true) / len(true)
    return out


def pooled_cv_results(out, space, own=None):
    """Test metrics of a pooled model (its own label space) on the Common Voice part of its pooled
    test, in ``space``: true and predicted sub-groups go to the group of ``space`` holding the
    middle of their bin, super-groups follow; consistency is the model's own heads'."""
    import torch

    from recipes.evaluation.metrics import hierarchy_consistency, task_metrics
    own = own or label_space_of(out)  # the pooled model's label space
    cv_ids = {r["ID"] for r in read_csv(os.path.join(out, "manifests", "test.csv"))}
    rows = [r for r in read_csv(os.path.join(out, "predictions_test.csv")) if r["ID"] in cv_ids]
    arrays = {"gender": {}, "age_sup": {}, "age_sub": {}}
    for k in ("true", "pred"):
        mapped = own.to_space(space, torch.tensor([own.gender_index(r[f"gender_{k}"]) for r in rows]),
                              torch.tensor([own.age_sub.index(r[f"age_sub_{k}"]) for r in rows]))
        for task, idx in zip(("gender", "age_sup", "age_sub"), mapped):
            arrays[task][k] = idx.tolist()
    sizes = {"gender": space.n_gender, "age_sup": space.n_sup, "age_sub": space.n_sub}
    res = {t: task_metrics(arrays[t]["true"], arrays[t]["pred"], sizes[t], ordered=t != "gender") for t in TASKS}
    own_sub = [own.age_sub.index(r["age_sub_pred"]) for r in rows]
    own_sup = [own.age_sup.index(r["age_sup_pred"]) for r in rows]
    res["hierarchy_consistency"] = hierarchy_consistency(own_sub, own_sup, own.parent_index())
    res["n_scored"] = len(rows)
    return res


def goals_cv(res):
    met, missed = [], []
    for label, task, metric, thr, higher in CV_GOALS:
        v = res[task].get(metric)
        ok = v is not None and (v >= thr if higher else v <= thr)
        (met if ok else missed).append(label)
    return met, missed


# ---- the table ----------------------------------------------------------------------------
def pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def shell(cmd):
    return "python " + " ".join(shlex.quote(c) for c in cmd)


def cv_line(name, res, spk, wall):
    met, missed = goals_cv(res)
    cells = [pct(res[t][m]) for t in TASKS for m in ("precision", "recall", "f1")]
    mace = [f"{res[t]['mace']:.2f}" if res[t].get("mace") is not None else "n/a" for t in ("age_sup", "age_sub")]
    goal = "; ".join(x for x in (f"met: {', '.join(met)}" if met else "",
                                 f"MISSED: {', '.join(missed)}" if missed else "") if x)
    wall = f"{wall[0] / 60:.0f} min" + (" (see its command)" if wall[1] else "") if wall else "not recorded"
    return (f"| {name} | " + " | ".join(cells + mace) + f" | {pct(res['hierarchy_consistency'])} | "
            f"{res['n_scored']} / {spk} | {wall} | {goal} |")


def so_line(name, s):
    a = s["adult"]
    ok = a["gender_acc"] is not None and a["gender_acc"] >= SO_GOAL
    cells = []
    for g in SO_GROUPS:
        cells += [f"{s[g]['clips']} / {s[g]['speakers']}", pct(s[g]["gender_acc"]), pct(s[g]["gender_f1"])]
    mace = "n/a" if a["decade_mace"] is None else f"{a['decade_mace']:.2f}"
    return (f"| {name} | " + " | ".join(cells) + f" | {pct(a['decade_acc'])} | {mace} | "
            f"{'met' if ok else 'MISSED'}: adult gender acc >= {SO_GOAL} |")


def all_wrong(scores):
    """Adult speakers whose every clip a row gets the gender wrong on."""
    return {spk for spk, (right, n) in scores["adult"].get("gender_per_speaker", {}).items() if n and not right}


def contradicted_note(so_scores):
    """A paragraph: the adult speakers every scored row gets wrong on every clip, and each row's
    adult gender accuracy without them (an analysis; the goal is judged on all speakers)."""
    so_scores = {k: s for k, s in so_scores.items() if "gender_per_speaker" in s["adult"]}  # older caches lack it
    if len(so_scores) < 2:
        return []
    common = set.intersection(*(all_wrong(s) for s in so_scores.values()))
    if not common:
        return ["", f"No adult speaker is misjudged on every clip by every row scored per speaker ({', '.join(so_scores)})."]
    without = []
    for name, s in so_scores.items():
        per = s["adult"]["gender_per_speaker"]
        right = sum(r for spk, (r, n) in per.items() if spk not in common)
        clips = sum(n for spk, (r, n) in per.items() if spk not in common)
        without.append(f"{name} {pct(right / clips if clips else None)}")
    n_clips = sum(next(iter(so_scores.values()))["adult"]["gender_per_speaker"][spk][1] for spk in common)
    return ["", f"Adult speakers that every row scored per speaker ({', '.join(so_scores)}) gets wrong on "
            f"every clip: {', '.join(sorted(common))} "
            f"({n_clips} clips): every model hears the other gender there (a label error or an atypical voice; "
            "not checked by listening). Adult "
            "gender accuracy without them (an analysis, not the goal, which counts every speaker): "
            + "; ".join(without) + "."]


def status(out):
    """Why a row has no results.json: never started, or training (or interrupted) with checkpoints."""
    save = os.path.join(out, "save")
    if os.path.isdir(save) and os.listdir(save):
        return "not finished yet: checkpoints but no results.json"
    return "not run yet"


def build_table(rows, args, so_scores, baseline, so_manifest, so_note, so_base=None):
    header = ["# Common Voice recipe: core rows (Common Voice sample, speaker-disjoint test)", "",
              f"Machine: {machine()}. Seed {args.seed}, one seed per row; epochs and lr in each command "
              "(hparams/commonvoice/train.yaml, ECAPA / ResNet CPU teacher encoders trained here; ge2e rows: hparams/commonvoice/ge2e.yaml, the frozen pretrained GE2E speaker encoder of the resemblyzer wheel with trained heads and the age-in-years head, OMP_NUM_THREADS=1; "
              "ge2e_pooled_mc: hparams/pooled/ge2e.yaml, the same encoder with heads trained on the Common Voice sample and "
              "speechocean762's train split together, the telephone channel on half the clips (the mixup KD teacher's setting), "
              "so its speechocean762 row is in-domain; its Common Voice row is the Common Voice part of its pooled test, its "
              "child / teen / decade groups mapped onto the decades (child and teen -> teens)). Test on whole clips with "
              "the checkpoint of best validation mean F1. Wall time: the row's last successful train.py command "
              f"({args.results}/times.txt), with preparation and evaluation, measured while other jobs shared "
              "the cores; a resumed row counts only its resumed part (the note after its command says so). "
              "Written by `python benchmarks/commonvoice.py`.", "",
              "Goals: Common Voice test gender macro-F1 >= 0.96, age-sub (decade) macro-F1 >= 0.45, age-sub "
              f"MACE <= 0.86; speechocean762 adult gender accuracy >= {SO_GOAL}. A missed goal says MISSED.", "",
              "## Common Voice test (P / R / F1 macro, %; MACE: mean |predicted - true| group index)", "",
              "| row | gender P | R | F1 | age-sup P | R | F1 | age-sub P | R | F1 | MACE sup | MACE sub "
              "| consistency | test clips / speakers | wall time | goals |",
              "|---|" + "---|" * 15]
    lines, missing, so_lines = list(header), [], []
    for name, cmd, out, wall in rows:
        path = os.path.join(out, "results.json")
        if not os.path.isfile(path):
            missing.append((name, status(out)))
            continue
        if cmd[1] == POOLED:
            res = pooled_cv_results(out, label_space_of(None))
        else:
            with open(path) as f:
                res = json.load(f)["test"]
        spk = len({r["spk_id"] for r in read_csv(os.path.join(out, "manifests", "test.csv"))})
        lines.append(cv_line(name, res, spk, wall))
        if name in so_scores:
            so_lines.append(so_line(name, so_scores[name]))
    if baseline:
        b = baseline
        cells = [pct(b[t][m]) for t in TASKS for m in ("precision", "recall", "f1")]
        lines.append("| majority class (test split's most frequent class per task) | " + " | ".join(cells) +
                     f" | {b['age_sup']['mace']:.2f} | {b['age_sub']['mace']:.2f} | | | | |")
    for name, why in missing:
        lines.append(f"| {name} | " + " | ".join([why] + [""] * 14) + " |")
    lines += ["", "## speechocean762 test (unseen corpus: read English by Mandarin speakers; clips / speakers, "
              "gender accuracy and macro-F1, %)", "",
              f"Manifest: `{so_manifest}`. Age groups by the speakers' exact ages: adult >= 20, teen 16-19, "
              "child < 16 (Common Voice has no children: the child and teen columns show how far the models "
              "generalise, not a goal). Adult age decade: each adult's exact age mapped onto the model's own "
              "age-sub bins. Scored through recipes.inference.interface.SpeakerProfilerInterface (windows, speech "
              "frames only). " + so_note, "",
              "| row | adult clips / spk | adult gender acc | F1 | teen clips / spk | teen acc | F1 | child clips / "
              "spk | child acc | F1 | adult decade acc | adult decade MACE | goal |", "|---|" + "---|" * 12]
    lines += so_lines or ["| (no row scored yet) |" + " |" * 12]
    if so_base:
        lines.append(so_line("majority class (each group's most frequent gender, adults' decade)", so_base)
                     .rsplit(" | ", 1)[0] + " | |")
    lines += contradicted_note(so_scores)
    lines += ["", "## Commands (from the repository root)", ""]
    lines += [f"- {name}: `{shell(cmd)}`" + (f" ({wall[1]})" if wall and wall[1] else "") +
              ("" if os.path.isfile(os.path.join(out, "results.json")) else f" ({status(out)})")
              for name, cmd, out, wall in rows]
    if missing:
        lines += ["", "Without results yet: " + ", ".join(f"{n} ({why})" for n, why in missing) + ", left for lack "
                  "of CPU time (the wall-time column shows what a row costs here). Train one with "
                  "`python benchmarks/commonvoice.py --train --rows <row>`; the table is rewritten from whatever "
                  "results.json exists, and only new rows are scored on speechocean762."]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to list (default: all of {list(ROWS)})")
    ap.add_argument("--add-row", action="append", default=[], metavar="'NAME OPTIONS'",
                    help="an extra row: its name then its train.py options")
    ap.add_argument("--train", action="store_true", help="train the rows whose results.json is missing")
    ap.add_argument("--no-speechocean", action="store_true", help="do not score on speechocean762")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--data", default=CV_DATA, help="Common Voice folder (relative to the repository root)")
    ap.add_argument("--so-data", default=SO_DATA, help="speechocean762 folder (relative to the repository root)")
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--table", default=TABLE)
    args = ap.parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; known: {list(ROWS)} (or --add-row)")
    specs = [(r, ROWS[r]) for r in args.rows] + [(s.split()[0], s.split()[1:]) for s in args.add_row]
    rows = []
    for name, opts in specs:
        cmd = train_command(name, opts, args)
        out = in_root(f"{args.results}/{name}/{args.seed}")
        if args.train and not os.path.isfile(os.path.join(out, "results.json")):
            train_row(name, cmd, args)
        rows.append((name, cmd, out, None))
    times = read_times(os.path.join(in_root(args.results), "times.txt"))
    rows = [(n, c, o, times.get(n)) for n, c, o, _ in rows]
    done = [(n, o) for n, _, o, _ in rows if os.path.isfile(os.path.join(o, "results.json"))]
    baseline = so_manifest = None
    so_scores, so_note, so_base = {}, "", None
    space = label_space_of(None)  # the table's decade groups (a pooled row has its own)
    tests = [os.path.join(o, "manifests", "test.csv") for _, c, o, _ in rows  # written before training starts
             if c[1] != POOLED]  # a pooled row's manifests are in its own label space
    tests = [t for t in tests if os.path.isfile(t)]
    if tests:
        baseline = majority_baseline(tests[0], space)
    if args.no_speechocean:
        so_note = "Not scored in this run (--no-speechocean)."
    elif not os.path.isdir(in_root(args.so_data)):
        so_note = f"Not scored: {args.so_data} is absent on this machine."
    else:
        so_manifest = speechocean_manifest(args.results, args.so_data)
        for name, out in done:
            print(f"scoring {name} on speechocean762 ...", flush=True)
            so_scores[name] = cached_speechocean(name, out, so_manifest, args.results)
        so_base = majority_speechocean(so_manifest, space)
        so_manifest = os.path.relpath(so_manifest, ROOT)
    write_markdown(in_root(args.table), build_table(rows, args, so_scores, baseline, so_manifest, so_note, so_base))


if __name__ == "__main__":
    main()
