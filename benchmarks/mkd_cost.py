#!/usr/bin/env python3
"""Cost of MKD: time of a training step of the student with teacher + mixup + KD against a
plain student step (same model, batch, crops). Writes benchmarks/results/mkd_cost_<pair>.md.

    python benchmarks/mkd_cost.py --pair ecapa_cpu --teacher results/bench_core/ecapa_cpu_ch/1234
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import ROOT, SO_DATA, machine, table_path, write_markdown  # noqa: E402

os.chdir(ROOT)

import speechbrain as sb  # noqa: E402
import yaml  # noqa: E402
from speechbrain.dataio.dataloader import make_dataloader  # noqa: E402

from recipes.data.datasets import build_datasets  # noqa: E402
from recipes.config.recipe_yaml import load_recipe  # noqa: E402


def load_mkd(pair, overrides):
    """hparams/speechocean762/mkd.yaml with the pair's student (encoders/<pair>_student.yaml)."""
    text = yaml.safe_dump(overrides) + f"model: !include:../encoders/{pair}_student.yaml\n"
    return load_recipe("hparams/speechocean762/mkd.yaml", text)


def make_brain(pair, overrides):
    """A brain ready for training steps, and its one-off setup time (teacher load + cache)."""
    hp = load_mkd(pair, overrides)
    brain = hp["brain_class"](modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                              checkpointer=None, run_opts={"device": "cpu"})
    cache = os.path.join(hp["output_folder"], "teacher_cache.pt")
    if os.path.exists(cache):
        os.remove(cache)  # count the one-off pass every time
    t0 = time.perf_counter()
    brain.on_fit_start()  # loads the teacher; with teacher_cache, embeds the training set once
    setup = time.perf_counter() - t0
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()
    return brain, setup


def time_interleaved(brains, batches, warmup=2):
    """Median s/step of each brain, the brains taking turns on every batch, so that any
    other load on the machine hits them alike."""
    times = [[] for _ in brains]
    for i, batch in enumerate(batches):
        for k, brain in enumerate(brains):
            t0 = time.perf_counter()
            brain.fit_batch(batch)
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="ecapa_cpu", help="ecapa_cpu, resnet_cpu, ... (encoders/<pair>_student.yaml)")
    ap.add_argument("--data_folder", default=SO_DATA, help="the speechocean762 folder")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    base = {"teacher_folder": args.teacher, "manifest_folder": os.path.join(args.teacher, "manifests"),
            "output_folder": "results/bench_mkd_cost", "data_folder": args.data_folder}
    hp = load_mkd(args.pair, base)
    torch.manual_seed(0)
    loader = make_dataloader(build_datasets(hp)["train"], **hp["train_dataloader_opts"])
    batches = [b for _, b in zip(range(args.steps), loader)]  # audio read + channel once, outside the timing
    os.makedirs("results/bench_mkd_cost", exist_ok=True)
    nocache = {"mkd": True, "teacher_cache": False}
    cache = {"mkd": True, "teacher_cache": True}
    configs = [("student (plain)", {"mkd": False}),
               ("+ teacher on every crop + mixup + KD, concat_teacher", nocache),
               ("+ teacher on every crop + mixup + KD, student-only heads", {**nocache, "concat_teacher": False}),
               ("+ cached teacher + mixup + KD, concat_teacher", cache),
               ("+ cached teacher + mixup + KD, student-only heads", {**cache, "concat_teacher": False})]
    brains, setups = zip(*[make_brain(args.pair, {**base, **extra}) for _, extra in configs])
    rows = list(zip([n for n, _ in configs], time_interleaved(brains, batches), setups))
    plain = rows[0][1]
    n_train = len(build_datasets(hp)["train"])
    epoch_steps = -(-n_train // hp["batch_size"])
    lines = [f"# Cost of MKD per training step ({args.pair} pair)", "",
             f"Machine: {machine(f'{torch.get_num_threads()} torch threads')}. "
             f"Batch {hp['batch_size']}, {hp['crop_seconds']} s crops, median of {args.steps - 2} steps "
             "after 2 warm-up steps (data loading excluded); the five set-ups take turns on every batch, so "
             "other load on the machine hits them alike.", "",
             "| training step | s/step | ratio to plain | one-off setup s | ratio incl. setup over 1 / 10 epochs |",
             "|---|---|---|---|---|"]
    for n, t, setup in rows:
        amort = [(t * epoch_steps * e + setup) / (plain * epoch_steps * e) for e in (1, 10)]
        lines.append(f"| {n} | {t:.3f} | {t / plain:.2f}x | {setup:.1f} | {amort[0]:.2f}x / {amort[1]:.2f}x |")
    lines += ["", f"One epoch = {epoch_steps} steps ({n_train} training utterances). Setup = loading the teacher "
              "and, with the cache, reading, channel-simulating and embedding every whole training utterance once "
              "(saved in the output folder, so a resumed run does not pay it again); most of it is the data pass "
              "(every epoch pays one too, with num_workers: 0); unlike the steps, it is not interleaved, so other "
              "load on the machine inflates it. "
              "The last column adds the setup to the step compute only (data loading excluded), so it overstates "
              "the cost of the cache."]
    lines += ["", f"Command: `python benchmarks/mkd_cost.py --pair {args.pair} --teacher {os.path.relpath(args.teacher, ROOT)}`"]
    write_markdown(table_path(f"mkd_cost_{args.pair}.md"), lines)


if __name__ == "__main__":
    main()
