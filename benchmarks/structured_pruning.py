#!/usr/bin/env python3
"""Structured pruning benchmark: is the pruned model smaller AND faster on a CPU?

Prunes ``--source`` (a train.py output folder, e.g. the logit-KD student or the teacher)
with prune.py and ``--yaml`` twice, by the weight-norm criterion and probe-guided (paper 001
Algorithm 1), then measures every row in ONE process: the reference (``--reference``, the
teacher), optional extra folders (``--row NAME=FOLDER``, e.g. the logit-KD student and the
magnitude-pruned model) and the two structurally pruned models. Per row: parameters, non-zero
parameters, file size (the smaller of the dense checkpoint and prune.py's compressed sparse
file), CPU forward time at batch 1 and 32 as a speed-up over the reference (the models'
timings are interleaved, so machine load hits all alike), test F1 per task (results.json),
and whether the row reaches the goal (>= 10x fewer non-zero parameters than the reference,
>= 2x faster at both batch sizes, <= 2 points F1 lost on every task). A second table
compares the two criteria at the same sizes: valid F1 after every round (pruning_rounds.csv;
``--f1_tolerance=1.0``, passed on to prune.py, runs every round of the schedule for that comparison,
but then the final models are the most pruned ones).

    python benchmarks/structured_pruning.py --reference results/speechocean762/ecapa_cpu_ch_True/1234 \\
        --source results/speechocean762/ecapa_cpu_logit_kd/1234 \\
        --row "logit-KD student=results/speechocean762/ecapa_cpu_logit_kd/1234" \\
        --row "magnitude-pruned=results/speechocean762/ecapa_cpu_logit_kd/1234/pruned" \\
        --out benchmarks/results/compression_ecapa_cpu_structured.md
    python benchmarks/structured_pruning.py --smoke   # demo corpus, 1-epoch model, 2 rounds (a check, no numbers)
"""

import argparse
import json
import os
import shlex
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import (TABLES, argv_without, demo_model, machine, read_csv, run_logged,  # noqa: E402
                               script_command, write_markdown)
from recipes.compression.report import count_params, dense_file_bytes, forward_latency  # noqa: E402
from recipes.inference.model import ProfilerModel  # noqa: E402
from recipes.labels import TASKS  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="the model the speed-ups and compression are measured against (teacher)")
    ap.add_argument("--source", help="the model folder to prune (default: --reference)")
    ap.add_argument("--row", action="append", default=[], help="NAME=FOLDER: an extra row (repeatable)")
    ap.add_argument("--yaml", default="hparams/speechocean762/prune_structured.yaml")
    ap.add_argument("--criteria", nargs="+", default=["l2", "probe"])
    ap.add_argument("--prune_args", action="append", default=[],
                    help="a prune.py override, e.g. --prune_args=--max_rounds=5 (repeatable); other unknown "
                         "--key=value arguments are passed to prune.py as well")
    ap.add_argument("--results", default="results/bench_structured", help="pruned folders go here")
    ap.add_argument("--out", default=f"{TABLES}/compression_structured.md")
    ap.add_argument("--latency_seconds", type=float, default=4.0)
    ap.add_argument("--latency_repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--step", action="append", default=[],
                    help="NAME|SECONDS|COMMAND: an earlier step (training the source, ...) listed with its wall time")
    ap.add_argument("--note", action="append", default=[], help="a line for the table's notes (repeatable)")
    ap.add_argument("--smoke", action="store_true",
                    help="demo corpus: train a 1-epoch model, 2 rounds, table under --results")
    args, rest = ap.parse_known_args(argv)
    bad = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if bad:
        ap.error(f"unrecognized arguments {bad} (prune.py overrides are --key=value)")
    args.prune_args += rest
    if args.smoke:
        args.yaml, args.results = "hparams/demo_prune_structured.yaml", "results/bench_structured_smoke"
        args.out = os.path.join(args.results, "structured_pruning_smoke.md")
        args.prune_args = ["--max_rounds=2", "--probe_batches=2", "--f1_tolerance=1.0"] + args.prune_args
        args.latency_seconds, args.latency_repeats = 1.0, 2
    elif not args.reference:
        ap.error("--reference is required (or --smoke)")
    return args


def smoke_model(args):
    folder, data = os.path.join(args.results, "model"), f"{args.results}/demo"
    return demo_model(folder, data, os.path.join(args.results, "train.log"))


def prune_rows(args, source):
    """Prunes ``source`` with every criterion (resumes); (name, folder, command, seconds).
    A finished folder (prune_summary.json and the wall time of its run) is not pruned again:
    re-running the benchmark (e.g. with one more --row) only measures; delete it to redo."""
    rows = []
    for criterion in args.criteria:
        out = os.path.join(args.results, f"structured_{criterion}")
        cmd = [sys.executable, "prune.py", args.yaml, f"--model_folder={source}", f"--output_folder={out}",
               f"--structured_criterion={criterion}", "--noprogressbar", *args.prune_args]
        done = os.path.join(out, "benchmark_wall_seconds.txt")
        if os.path.isfile(done) and os.path.isfile(os.path.join(out, "prune_summary.json")):
            with open(done) as f:
                seconds = float(f.read())
        else:
            seconds = run_logged(cmd, os.path.join(args.results, f"structured_{criterion}.log"), mode="w")[1]
            with open(done, "w") as f:
                f.write(f"{seconds:.1f}\n")
        name = "structurally pruned (" + ("probe-guided" if criterion == "probe" else f"{criterion} norm") + ")"
        rows.append((name, out, " ".join(["python"] + cmd[1:]), seconds))
    return rows


def file_bytes(model, folder):
    sparse = os.path.join(folder, "pruned_model.pt")
    dense = dense_file_bytes(model)
    return min(dense, os.path.getsize(sparse)) if os.path.isfile(sparse) else dense


def test_f1(folder):
    with open(os.path.join(folder, "results.json")) as f:
        res = json.load(f)["test"]
    return {t: res[t]["f1"] for t in TASKS}


def measure(rows, args):
    """Size and F1 per row, then interleaved CPU timings: median seconds per batch size."""
    models = {name: ProfilerModel.from_folder(folder) for name, folder in rows}
    out = {}
    for name, folder in rows:
        params, nonzero = count_params(models[name])
        out[name] = {"folder": folder, "params": params, "nonzero": nonzero, "parts": breakdown(models[name]),
                     "file_bytes": file_bytes(models[name], folder), "f1": test_f1(folder), "latency_s": {}}
    for b in args.batches:
        times = {name: [] for name in models}
        for _ in range(args.latency_repeats):  # one timing of every model per pass
            for name, model in models.items():
                times[name].append(forward_latency(model, model.sample_rate, args.latency_seconds, b, repeats=1))
        for name in models:
            out[name]["latency_s"][str(b)] = statistics.median(times[name])
    return out


def breakdown(model):
    """Non-zero parameters of the encoder body, its embedding layer (the last convolution /
    linear layer, never pruned structurally: the heads read it) and the heads."""
    nz = lambda ps: sum(int(torch.count_nonzero(p)) for p in ps)  # noqa: E731
    layers = [m for m in model.encoder.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    emb = nz(layers[-1].parameters()) if layers else 0
    return {"encoder body": nz(model.encoder.parameters()) - emb, "embedding layer": emb,
            "heads": nz(model.heads.parameters())}


def verdict(fewer, speed, loss):
    """The goal (>= 10x fewer non-zero, >= 2x faster at every batch size, <= 2 F1 points
    lost on every task): "reached", or "MISSED" with the parts missed."""
    missed = ([f"{fewer:.1f}x fewer < 10x"] if fewer < 10 else []) + [
        f"b{b} {v:.2f}x < 2x" for b, v in speed.items() if v < 2] + ([f"F1 -{loss:.1f} pts"] if loss > 2 else [])
    return "reached" if not missed else "MISSED (" + ", ".join(missed) + ")"


def hardware():
    """CPU model, cores, GPU or none (the table's hardware line)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return machine(gpu, f"torch {torch.__version__}", gpu=None)


def rounds_table(pruned):
    """Valid F1 of each criterion after every round (same schedule: same sizes)."""
    per = {}
    for name, folder, _, _ in pruned:
        per[name] = {int(r["round"]): r for r in read_csv(os.path.join(folder, "pruning_rounds.csv"))}
    rounds = sorted({r for v in per.values() for r in v})
    names = list(per)
    lines = ["| round | level | " + " | ".join(f"{n}: params removed, valid mean F1" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for r in rounds:
        level = next(per[n][r]["level"] for n in names if r in per[n])
        cells = [f"{100 * float(per[n][r]['sparsity']):.1f}%, {float(per[n][r]['mean_f1']):.4f}"
                 + ("" if per[n][r]["accepted"] == "True" else " (rejected)") if r in per[n] else "-" for n in names]
        lines.append(f"| {r} | {float(level):.2f} | " + " | ".join(cells) + " |")
    return lines


def table_command(argv):
    """The benchmark's own arguments, quoted, without the --step / --note texts listed above."""
    kept, cut = argv_without(argv, ("--step", "--note"))
    return shlex.join(kept) + (" (+ the --step and --note texts above)" if cut else "")


def write_table(args, m, ref_name, pruned, commands):
    ref, parts = m[ref_name], list(m[ref_name]["parts"])
    head = ["| model | parameters | non-zero | x fewer non-zero | file MB | "
            + " | ".join(f"CPU b{b} (speed-up)" for b in args.batches) + " | " + " | ".join(f"{t} F1" for t in TASKS)
            + " | goal |", "|---" * (6 + len(args.batches) + len(TASKS)) + "|"]
    for name, r in m.items():
        fewer = ref["nonzero"] / max(r["nonzero"], 1)
        speed = {b: ref["latency_s"][str(b)] / r["latency_s"][str(b)] for b in args.batches}
        loss = max(100 * (ref["f1"][t] - r["f1"][t]) for t in TASKS)
        goal = "reference" if name == ref_name else verdict(fewer, speed, loss)
        head.append(f"| {name} | {r['params']} | {r['nonzero']} | {fewer:.2f}x | {r['file_bytes'] / 1e6:.2f} | "
                    + " | ".join(f"{1e3 * r['latency_s'][str(b)]:.1f} ms ({speed[b]:.2f}x)" for b in args.batches)
                    + " | "
                    + " | ".join(f"{100 * r['f1'][t]:.2f}" for t in TASKS) + f" | {goal} |")
    lines = [f"# Structured pruning on CPU{' (SMOKE: demo corpus, numbers mean nothing)' if args.smoke else ''}", "",
             f"Speed-ups: the reference's median forward time over each model's ({args.latency_seconds} s "
             f"utterances, features + encoder + heads, {torch.get_num_threads()} threads, "
             f"{args.latency_repeats} interleaved passes in one process; {hardware()}); "
             "reference times: " + ", ".join(f"batch {b}: {1e3 * ref['latency_s'][str(b)]:.1f} ms" for b in args.batches)
             + ". Goal: >= 10x fewer non-zero parameters than the reference, >= 2x faster at every batch "
             "size, <= 2 F1 points lost on every task (test split).", "", *head, "",
             "## Norm vs probe-guided criterion at the same sizes (validation, every round)", "",
             *rounds_table(pruned), "", "## Non-zero parameters per part", "",
             "| model | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    lines += [f"| {name} | " + " | ".join(f"{r['parts'][p]} ({100 * r['parts'][p] / max(r['nonzero'], 1):.0f}%)"
                                         for p in parts) + " |" for name, r in m.items()]
    lines += ["", "## Notes", "", *[f"- {n}" for n in args.note]] if args.note else []
    lines += ["", "## Commands (repository root)", ""]
    for step in args.step:
        name, seconds, cmd = step.split("|", 2)
        lines.append(f"- {name}: `{cmd}` ({float(seconds) / 60:.1f} min)")
    lines += [f"- {name}: `{cmd}` ({seconds / 60:.1f} min)" for name, cmd, seconds in commands]
    lines += [f"- this table: `{script_command(__file__, table_command(sys.argv[1:]))}`"]
    return write_markdown(args.out, lines, echo=False)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.results, exist_ok=True)
    reference = smoke_model(args) if args.smoke else args.reference
    source = args.source or reference
    pruned = prune_rows(args, source)
    rows = [("reference", reference)] + [tuple(r.split("=", 1)) for r in args.row]
    rows += [(name, folder) for name, folder, _, _ in pruned]
    if args.smoke:
        rows.insert(1, ("magnitude-pruned", magnitude_smoke(args, source)))
    m = measure(rows, args)
    with open(os.path.join(args.results, "structured_pruning.json"), "w") as f:
        json.dump(m, f, indent=2)
    print(write_table(args, m, "reference", pruned, [(n, c, s) for n, _, c, s in pruned]))


def magnitude_smoke(args, source):
    out = os.path.join(args.results, "magnitude")
    cmd = [sys.executable, "prune.py", "hparams/demo_prune.yaml", f"--model_folder={source}", f"--output_folder={out}",
           "--max_rounds=1", "--f1_tolerance=1.0", "--noprogressbar", "--latency_batches=[1]", "--latency_seconds=1.0",
           "--latency_repeats=1"]
    run_logged(cmd, os.path.join(args.results, "magnitude.log"), mode="w")
    return out


if __name__ == "__main__":
    main()
