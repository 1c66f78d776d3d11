#!/usr/bin/env python3
"""Table-1-style benchmark of mixup KD (paper 004) on degraded speechocean762-8k.

Teacher: a core-recipe output folder trained on the clean train split (default: the "+CH"
run of benchmarks/core_recipe.py). Students: same speakers through the telephone channel
(band limit, mu-law, noise, packet loss) with 10% neighbour label noise; rows base /
+MKD / +CH / +MKD+CH from hparams/speechocean762/<pair>_mkd.yaml. Test: the degraded copy
of the test split. Writes benchmarks/mkd_table.md.

    python benchmarks/mkd_table.py --pair ecapa_cpu --epochs 6 --seeds 1234
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hyperpyyaml import load_hyperpyyaml  # noqa: E402
from speechbrain.dataio.dataloader import make_dataloader  # noqa: E402

from recipes.data.pipelines import SkipBadCollate, make_dataset  # noqa: E402
from recipes.evaluation import PredictionCollector, compute_results  # noqa: E402
from recipes.inference import SpeakerProfiler  # noqa: E402

ROWS = [("base", False, False), ("+MKD", True, False), ("+CH", False, True), ("+MKD+CH", True, True)]


def evaluate_teacher(folder, yaml_path, manifest):
    """The frozen teacher on the degraded test set (same channel as the students')."""
    with open(yaml_path) as f:
        hp = load_hyperpyyaml(f, {"teacher_folder": folder})
    model = SpeakerProfiler.from_folder(folder)
    ds = make_dataset(manifest, model.label_space, model.sample_rate, sort=True, channel=hp["test_channel"])
    col = PredictionCollector()
    for batch in make_dataloader(ds, batch_size=16, collate_fn=SkipBadCollate()):
        probs, _ = model(*batch.sig)
        targets = {t: getattr(batch, f"{t}_idx").data.view(-1) for t in ("gender", "age_sup", "age_sub")}
        col.append(batch.id, {k: v.log() for k, v in probs.items()}, targets)
    return compute_results(col, model.label_space), sum(p.numel() for p in model.encoder.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="ecapa_cpu")
    ap.add_argument("--teacher", default=None, help="default: results/bench_core/<pair>_ch/<seed>")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234])
    ap.add_argument("--results", default=os.path.join(ROOT, "results", "bench_mkd"))
    args = ap.parse_args()
    yaml_path = os.path.join(ROOT, "hparams", "speechocean762", f"{args.pair}_mkd.yaml")
    teacher = args.teacher or os.path.join(ROOT, "results", "bench_core", f"{args.pair}_ch", str(args.seeds[0]))
    manifests = os.path.join(teacher, "manifests")
    os.makedirs(args.results, exist_ok=True)
    t_res, t_params = evaluate_teacher(teacher, yaml_path, os.path.join(manifests, "test.csv"))
    table = [("teacher (clean-trained, +CH)", "-", t_res, t_params, None)]
    cmds = []
    for name, mkd, ch in ROWS:
        runs = []
        for seed in args.seeds:
            out = os.path.join(args.results, f"{args.pair}_{name.strip('+').replace('+', '_') or 'base'}", str(seed))
            cmd = [sys.executable, "train.py", f"hparams/speechocean762/{args.pair}_mkd.yaml", f"--mkd={mkd}",
                   f"--hierarchical={ch}", f"--teacher_folder={teacher}", f"--manifest_folder={manifests}",
                   f"--output_folder={out}", f"--seed={seed}", f"--number_of_epochs={args.epochs}",
                   f"--lr={args.lr}", "--noprogressbar"]
            t0 = time.time()
            if not os.path.isfile(os.path.join(out, "results.json")):
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "bench.log"), "a") as log:
                    subprocess.run(cmd, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
            cmds.append((" ".join(cmd[1:]), time.time() - t0))
            with open(os.path.join(out, "results.json")) as f:
                runs.append(json.load(f)["test"])
        with open(yaml_path) as f:
            hp = load_hyperpyyaml(f, {"teacher_folder": teacher})
        table.append((name, len(args.seeds), runs, hp["encoder"].n_params(), None))
        write_table(args, table, cmds, t_params)  # after every row: a partial table survives


def fmt(runs, task, metric):
    vals = [100 * r[task][metric] for r in (runs if isinstance(runs, list) else [runs])]
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.1f}"
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{m:.1f}±{sd:.1f}"


def write_table(args, table, cmds, t_params):
    lines = [f"# Mixup KD on degraded speechocean762-8k ({args.pair} pair)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU (torch {torch.__version__}). "
             f"Students: {args.epochs} epochs, Adam lr {args.lr}, batch 12, 2 s crops, seeds {args.seeds} "
             "(mean±sd when several). Test: the telephone-degraded copy of the test split "
             "(125 unseen speakers). Student training data: the same 113 train speakers as the teacher, "
             "through the telephone channel, 10% neighbour age-label noise.", "",
             "| model | seeds | encoder params | gender P | R | F1 | age-sup P | R | F1 | age-sub P | R | F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, seeds, runs, params, _ in table:
        cells = [fmt(runs, t, m) for t in ("gender", "age_sup", "age_sub") for m in ("precision", "recall", "f1")]
        lines.append(f"| {name} | {seeds} | {params / 1e6:.2f}M ({100 * params / t_params:.0f}%) | " + " | ".join(cells) + " |")
    lines += ["", "Commands (repository root):", ""] + [f"- `python {c}` ({s / 60:.0f} min)" for c, s in cmds]
    with open(os.path.join(ROOT, "benchmarks", f"mkd_table_{args.pair}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
