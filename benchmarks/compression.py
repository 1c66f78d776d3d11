#!/usr/bin/env python3
"""Compression benchmark (papers 002 and 003) on speechocean762-8k, CPU sizes.

Rows: the teacher (an existing core-recipe folder); the student without KD (logit-KD YAML
at lambda = 0); + logit KD on a (T, lambda) grid (002 Table III); the LCMR student trained
alone (p = 1) and + LCMR with each replacement scheduler (003); + pruning (002) of the best
student by validation mean F1. Per row: validation mean F1, test F1 per task, parameters,
non-zero parameters, file size, CPU forward time at batch 1 and 32. Each row's folder is
reused when its results.json exists (resumable); the table is rewritten after every row.

    python benchmarks/compression.py --teacher results/bench_core/ecapa_cpu_ch/1234 --epochs 6
    python benchmarks/compression.py ... --temperatures 2 5 --lambdas 0.2 0.5 --schedulers log linear
    python benchmarks/compression.py --smoke     # demo corpus, 1 epoch, tiny grid (a check, no numbers)
"""

import argparse
import glob
import json
import os
import sys

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import (ROOT, SO_DATA, SMOKE_DATA, command_item, demo_model, machine, run_once,  # noqa: E402
                               table_path, teacher_manifests, write_markdown)
from recipes.compression.report import count_params, dense_file_bytes, forward_latency  # noqa: E402
from recipes.compression.sparse import to_sparse_compute  # noqa: E402
from recipes.inference.interface import SpeakerProfilerInterface  # noqa: E402
from recipes.labels import TASKS  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="ecapa_cpu",
                    help="ecapa_cpu or resnet_cpu (encoders/<pair>_student.yaml, <pair>_lcmr_student.yaml, <pair>_teacher.yaml)")
    ap.add_argument("--data_folder", default=SO_DATA, help="the speechocean762 folder")
    ap.add_argument("--teacher", default=None, help="default: results/bench_core/<pair>_ch/<seed>")
    ap.add_argument("--epochs", type=int, default=6, help="student epochs (LCMR: replacing + fine-tuning)")
    ap.add_argument("--finetune_epochs", type=int, default=2, help="LCMR epochs at p = 1, out of --epochs")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1, 2, 5, 10])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.2, 0.5, 0.8, 1.0])
    ap.add_argument("--schedulers", nargs="+", default=["constant", "linear", "log", "exp"])
    ap.add_argument("--p0", type=float, default=0.3, help="LCMR basic replacing rate")
    ap.add_argument("--log_base", type=float, default=10.0, help="LCMR B of the log / exp schedulers (003's best: 40)")
    ap.add_argument("--strategy", type=int, default=2)
    ap.add_argument("--no_lcmr_baseline", action="store_true", help="skip the LCMR student trained alone")
    ap.add_argument("--prune_from", default="best", help="'best' (valid mean F1) or a row name")
    ap.add_argument("--prune_rounds", type=int, default=6)
    ap.add_argument("--prune_epochs_per_round", type=int, default=1)
    ap.add_argument("--prune_tolerance", type=float, default=0.02)
    ap.add_argument("--prune_stop_metrics", nargs="+", default=["mean_f1"],
                    help="one pruning row per validation metric that stops it (mean_f1, gender_f1, ...)")
    ap.add_argument("--latency_seconds", type=float, default=4.0)
    ap.add_argument("--latency_repeats", type=int, default=3)
    ap.add_argument("--refresh_latency", action="store_true",
                    help="measure the CPU forward times of every row again (trained rows are not retrained)")
    ap.add_argument("--sparse_min_sparsity", type=float, default=0.5, help="as in the prune YAML")
    ap.add_argument("--results", default=None, help="default: results/bench_compression(_smoke)")
    ap.add_argument("--smoke", action="store_true", help="demo YAMLs and corpus, 1 epoch, one KD cell")
    args = ap.parse_args()
    if args.smoke:
        args.pair, args.epochs, args.finetune_epochs = "demo", 2, 1
        args.temperatures, args.lambdas, args.prune_rounds = [2.0], [0.5], 2
        args.latency_seconds, args.latency_repeats = 1.0, 1
    args.results = args.results or os.path.join(ROOT, "results", "bench_compression" + ("_smoke" if args.smoke else ""))
    return args


def yaml_of(args, kind):
    """hparams file of a method (kind: logit_kd, lcmr, prune) and the options that choose the pair's
    student encoder and the corpus (pruning: the sparsity schedule the published table used); the
    teacher's architecture comes from --teacher_folder."""
    if args.smoke:
        return [f"hparams/demo_{kind}.yaml"]
    if kind == "prune":
        return ["hparams/speechocean762/prune_sparsity.yaml"]
    student = f"{args.pair}_student" if kind == "logit_kd" else f"{args.pair}_lcmr_student"
    return [f"hparams/speechocean762/{kind}.yaml", f"--model=!include:../encoders/{student}.yaml",
            f"--data_folder={args.data_folder}"]


def best_valid_f1(folder):
    """Best validation mean F1 among the checkpoints of a folder (their meta)."""
    vals = []
    for path in glob.glob(os.path.join(folder, "save", "CKPT+*", "CKPT.yaml")):
        with open(path) as f:
            meta = yaml.safe_load(f)
        if "mean_f1" in meta:
            vals.append(meta["mean_f1"])
    return max(vals) if vals else float("nan")


def measure(folder, args, extra=None, cache=None):
    """Size, speed and F1 of a model folder; cached in ``cache`` (<folder>/bench_metrics.json)."""
    path = cache or os.path.join(folder, "bench_metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            m = json.load(f)
        if args.refresh_latency and not m.get("latency_refreshed"):
            m = refresh_latency(m, folder, args, path)
        return m
    model = SpeakerProfilerInterface.from_folder(folder).model
    params, nonzero = count_params(model)
    with open(os.path.join(folder, "results.json")) as f:
        test = json.load(f)["test"]
    m = {"params": params, "nonzero": nonzero, "file_bytes": dense_file_bytes(model),
         "valid_mean_f1": best_valid_f1(folder), "test_f1": {t: test[t]["f1"] for t in TASKS},
         "latency_s": {str(b): forward_latency(model, model.sample_rate, args.latency_seconds, b, args.latency_repeats)
                       for b in (1, 32)}}
    m.update(extra or {})
    with open(path, "w") as f:
        json.dump(m, f, indent=2)
    return m


def refresh_latency(m, folder, args, path):
    """CPU forward times measured again (after all training, on a quiet machine)."""
    model = SpeakerProfilerInterface.from_folder(folder).model
    m["latency_s"] = {str(b): forward_latency(model, model.sample_rate, args.latency_seconds, b, args.latency_repeats)
                      for b in (1, 32)}
    if "sparse_latency_s" in m:
        sparse = to_sparse_compute(model, args.sparse_min_sparsity)[0]
        m["sparse_latency_s"] = {str(b): forward_latency(sparse, model.sample_rate, args.latency_seconds, b,
                                                         args.latency_repeats) for b in (1, 32)}
    m["latency_refreshed"] = True
    with open(path, "w") as f:
        json.dump(m, f, indent=2)
    return m


def common_args(args, teacher):
    data = SMOKE_DATA + [f"--data_folder={args.results}/demo"] if args.smoke else []
    return [f"--teacher_folder={teacher}", f"--manifest_folder={args.manifests}", f"--seed={args.seed}",
            f"--lr={args.lr}", "--noprogressbar", *data]


def smoke_teacher(args):
    folder = os.path.join(args.results, "teacher")
    return demo_model(folder, f"{args.results}/demo", os.path.join(folder, "bench.log"))


def student_rows(args, teacher):
    """(name, method, model folder, command, seconds) of every trained row."""
    py = sys.executable
    grid = [(1.0, 0.0)] + [(t, lam) for t in args.temperatures for lam in args.lambdas if lam > 0]
    for temperature, lam in grid:
        out = os.path.join(args.results, f"{args.pair}_kd_T{temperature:g}_lam{lam:g}", str(args.seed))
        cmd = [py, "train.py", *yaml_of(args, "logit_kd"), f"--output_folder={out}", f"--temperature={temperature}",
               f"--lam={lam}", f"--number_of_epochs={args.epochs}", *common_args(args, teacher)]
        name = "student w/o KD" if lam == 0 else f"+ logit KD T={temperature:g} λ={lam:g}"
        yield (name, "logit KD (002)", out, *run_once(out, cmd, os.path.join(out, "bench.log")))
    lcmr = [("constant", 1.0, False)] if not args.no_lcmr_baseline else []
    lcmr += [(s, args.p0, True) for s in args.schedulers]
    replacing = args.epochs - args.finetune_epochs
    for sched, p0, init in lcmr:
        tag = f"{sched}_p{p0:g}"
        out = os.path.join(args.results, f"{args.pair}_lcmr_{tag}_s{args.strategy}", str(args.seed))
        cmd = [py, "train.py", *yaml_of(args, "lcmr"), f"--output_folder={out}", f"--scheduler={sched}", f"--p0={p0}",
               f"--log_base={args.log_base}",
               f"--strategy={args.strategy}", f"--init_student_from_teacher={init}",
               f"--replacing_epochs={replacing}", f"--finetune_epochs={args.finetune_epochs}", *common_args(args, teacher)]
        name = "LCMR student w/o KD (p = 1)" if not init else f"+ LCMR {sched} (p0={p0:g}, strategy {args.strategy})"
        cmd_text, secs = run_once(out, cmd, os.path.join(out, "bench.log"))
        yield (name, "module replacing (003)", os.path.join(out, "student"), cmd_text, secs)


def prune_row(args, teacher, source, metric="mean_f1"):
    tag = "" if metric == "mean_f1" else f"_{metric}"
    out = os.path.join(args.results, f"{args.pair}_pruned{tag}", str(args.seed))
    cmd = [sys.executable, "prune.py", *yaml_of(args, "prune"), f"--model_folder={source}", f"--output_folder={out}",
           f"--manifest_folder={args.manifests}", f"--max_rounds={args.prune_rounds}", f"--stop_metric={metric}",
           f"--epochs_per_round={args.prune_epochs_per_round}", f"--f1_tolerance={args.prune_tolerance}",
           f"--lr={args.lr / 10}", f"--latency_seconds={args.latency_seconds}",
           f"--latency_repeats={args.latency_repeats}", "--latency_batches=[1,32]", "--noprogressbar"]
    cmd_text, secs = run_once(out, cmd, os.path.join(out, "bench.log"))
    with open(os.path.join(out, "prune_summary.json")) as f:
        s = json.load(f)
    extra = {"nonzero": s["nonzero_params"], "file_bytes": s["sparse_file_bytes"],
             "sparse_latency_s": s["latency_s"]["sparse"], "sparsity": s["sparsity_pruned_layers"],
             "final_round": s["final_round"], "stopped_at_round": s["stopped_at_round"]}
    return out, cmd_text, secs, extra


def write_table(args, rows, path):
    teacher = rows[0][3]
    lines = [f"# Compression on speechocean762-8k ({args.pair} pair{', SMOKE: demo corpus, not results' if args.smoke else ''})",
             "", f"Hardware: {machine(f'torch {torch.__version__} ({torch.get_num_threads()} threads)')}. Students: {args.epochs} epochs (LCMR: {args.epochs - args.finetune_epochs} "
             f"replacing + {args.finetune_epochs} at p = 1), Adam lr {args.lr}, seed {args.seed}. Test: the "
             "teacher's test split, checkpoint of best validation mean F1. File: encoder + heads + feature "
             "statistics (torch.save; pruned: compressed sparse file). CPU forward time: features + encoder + "
             f"heads on {args.latency_seconds:g} s utterances, median of {args.latency_repeats} (pruned: dense / "
             "CSR compute), " + ("measured again after all training (--refresh_latency), one model at a time."
                                 if args.refresh_latency else "measured while other jobs may share the cores."), "",
             "| model | method | valid mean F1 | gender F1 | age-sup F1 | age-sub F1 | params | non-zero | file | "
             "CPU batch 1 | CPU batch 32 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, method, _, m, _, _ in rows:
        lat = {b: f"{1e3 * m['latency_s'][b]:.0f} ms" for b in ("1", "32")}
        if "sparse_latency_s" in m:
            lat = {b: f"{lat[b]} / {1e3 * m['sparse_latency_s'][b]:.0f} ms" for b in lat}
        f1 = " | ".join(f"{100 * m['test_f1'][t]:.1f}" for t in TASKS)
        lines.append(f"| {name} | {method} | {100 * m['valid_mean_f1']:.1f} | {f1} | {m['params'] / 1e6:.2f}M "
                     f"({100 * m['params'] / teacher['params']:.0f}%) | {m['nonzero'] / 1e6:.3f}M | "
                     f"{m['file_bytes'] / 1e6:.2f} MB | {lat['1']} | {lat['32']} |")
    for pruned in [r for r in rows if "sparse_latency_s" in r[3]]:
        m = pruned[3]
        ratio = teacher["nonzero"] / m["nonzero"]
        loss = 100 * (teacher["test_f1"]["gender"] - m["test_f1"]["gender"])
        ok = ratio >= 10 and loss <= 2
        stop = (f"stopped at round {m['stopped_at_round']}" if m["stopped_at_round"] is not None
                else "ran all its rounds")
        lines += ["", f"Goal of paper 002 for «{pruned[0]}» (>= 10x fewer non-zero parameters than the teacher at <= 2 "
                  f"points gender F1 loss): {ratio:.1f}x fewer, gender F1 {-loss:+.1f} points against the teacher -> "
                  f"{'reached' if ok else 'not reached'}. Pruning {stop} (last good round {m['final_round']}, "
                  f"{100 * m['sparsity']:.0f}% of the pruned layers' weights zero)."]
    lines += ["", "Commands (repository root):", ""]
    lines += [command_item(cmd, secs) for _, _, _, _, cmd, secs in rows if cmd]
    write_markdown(path, lines)


def main():
    args = parse_args()
    os.makedirs(args.results, exist_ok=True)
    teacher = args.teacher or (smoke_teacher(args) if args.smoke else
                               os.path.join(ROOT, "results", "bench_core", f"{args.pair}_ch", str(args.seed)))
    teacher = os.path.abspath(teacher)
    if not os.path.isfile(os.path.join(teacher, "results.json")):
        sys.exit(f"error: {teacher}/results.json not found: train the teacher first (benchmarks/core_recipe.py)")
    args.manifests = teacher_manifests(teacher)  # the teacher's speakers: every student trains and tests on them
    path = (os.path.join(args.results, "compression_demo.md") if args.smoke
            else table_path(f"compression_{args.pair}.md"))
    teacher_cache = os.path.join(args.results, f"{args.pair}_teacher_metrics.json")
    rows = [("teacher", "core recipe (+CH)", teacher, measure(teacher, args, cache=teacher_cache), "", 0.0)]
    write_table(args, rows, path)
    for name, method, folder, cmd, secs in student_rows(args, teacher):
        rows.append((name, method, folder, measure(folder, args), cmd, secs))
        write_table(args, rows, path)  # after every row: a partial table survives
    students = {r[0]: r for r in rows[1:]}
    source = (max(students.values(), key=lambda r: r[3]["valid_mean_f1"]) if args.prune_from == "best"
              else students[args.prune_from])
    for metric in args.prune_stop_metrics:
        out, cmd, secs, extra = prune_row(args, teacher, source[2], metric)
        rows.append((f"+ pruning of «{source[0]}» (stop: valid {metric})", "magnitude pruning (002)", out,
                     measure(out, args, extra), cmd, secs))
        write_table(args, rows, path)


if __name__ == "__main__":
    main()
