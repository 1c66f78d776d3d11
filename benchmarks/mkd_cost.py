#!/usr/bin/env python3
"""Cost of MKD: time of a training step of the student with teacher + mixup + KD against a
plain student step (same model, batch, crops). Writes benchmarks/mkd_cost.md.

    python benchmarks/mkd_cost.py --pair ecapa_cpu --teacher results/bench_core/ecapa_cpu_ch/1234
"""

import argparse
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.chdir(ROOT)

import speechbrain as sb  # noqa: E402
from hyperpyyaml import load_hyperpyyaml  # noqa: E402
from speechbrain.dataio.dataloader import make_dataloader  # noqa: E402

from recipes.experiment import build_datasets  # noqa: E402


def time_steps(yaml_path, overrides, batches, warmup=2):
    with open(yaml_path) as f:
        hp = load_hyperpyyaml(f, overrides)
    brain = hp["brain_class"](modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                              checkpointer=None, run_opts={"device": "cpu"})
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()
    times = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        brain.fit_batch(batch)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="ecapa_cpu")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    yaml_path = f"hparams/speechocean762/{args.pair}_mkd.yaml"
    base = {"teacher_folder": args.teacher, "manifest_folder": os.path.join(args.teacher, "manifests"),
            "output_folder": "results/bench_mkd_cost"}
    with open(yaml_path) as f:
        hp = load_hyperpyyaml(f, base)
    torch.manual_seed(0)
    loader = make_dataloader(build_datasets(hp)["train"], **hp["train_dataloader_opts"])
    batches = [b for _, b in zip(range(args.steps), loader)]  # audio read + channel once, outside the timing
    rows = []
    for name, extra in [("student (plain)", {"mkd": False}),
                        ("student + teacher + mixup + KD, concat_teacher", {"mkd": True}),
                        ("student + teacher + mixup + KD, student-only heads", {"mkd": True, "concat_teacher": False})]:
        rows.append((name, time_steps(yaml_path, {**base, **extra}, batches)))
    plain = rows[0][1]
    lines = [f"# Cost of MKD per training step ({args.pair} pair)", "",
             f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads on {os.cpu_count()} CPU cores, "
             f"no GPU. Batch {hp['batch_size']}, {hp['crop_seconds']} s crops, mean of {args.steps - 2} steps "
             "after 2 warm-up steps (data loading excluded).", "",
             "| training step | s/step | ratio to plain |", "|---|---|---|"]
    lines += [f"| {n} | {t:.3f} | {t / plain:.2f}x |" for n, t in rows]
    lines += ["", f"Command: `python benchmarks/mkd_cost.py --pair {args.pair} --teacher {args.teacher}`"]
    with open(os.path.join(ROOT, "benchmarks", f"mkd_cost_{args.pair}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
