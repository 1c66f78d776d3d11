#!/usr/bin/env python3
"""Speed of the neuron analysis of one task (paper 001) on a ~10k-neuron "ALL"
representation over 5,000 utterances: probe, selectivity control, Algorithm 1 ranking,
masking and the minimal-neuron-set search (one seed). Synthetic features with a planted
class signal in 5% of the neurons. Writes benchmarks/results/probe_speed.md.

    python benchmarks/probe_speed.py
"""

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import machine, table_path, write_markdown  # noqa: E402
from recipes.probing.analysis import neuron_analysis  # noqa: E402


def main(n=5000, d=10240, k=4):
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    informative = rng.choice(d, d // 20, replace=False)
    x[:, informative] += 0.5 * (y[:, None] == (informative % k)[None, :])
    spans = {f"layer{i}": (i * d // 8, (i + 1) * d // 8) for i in range(8)}
    t0 = time.time()
    res = neuron_analysis(x[:4000], y[:4000], x[4000:], y[4000:], spans, [0],
                          dict(l1=1e-5, l2=1e-5, epochs=20, batch_size=128, lr=1e-3),
                          (1, 5, 10, 15, 20, 25, 50, 75), delta=1.0)
    secs = time.time() - t0
    lines = ["# Neuron-analysis speed (paper 001, one task, one seed)", "",
             f"Machine: {machine(f'{torch.get_num_threads()} torch threads')}.",
             f"Data: {n} utterances (4000 probe-train / 1000 test) x {d} neurons, {k} classes (synthetic).", "",
             "| step | result |", "|---|---|",
             f"| whole analysis (probe, shuffled-label control, Algorithm 1, masking, minimal set) | **{secs:.1f} s** |",
             f"| oracle accuracy | {100 * res['oracle'][0]:.1f}% |",
             f"| minimal neuron set | {res['minimal'][0]['percent']}% of neurons, acc {100 * res['minimal'][0]['acc_top']:.1f}% |",
             f"| masking top / bottom / random 20% | {100 * res['mask'][0]['top']:.1f} / {100 * res['mask'][0]['bottom']:.1f} / {100 * res['mask'][0]['random']:.1f}% |",
             "", "Goal: under 2 minutes on 2 CPU cores. Command: `python benchmarks/probe_speed.py`"]
    write_markdown(table_path("probe_speed.md"), lines)


if __name__ == "__main__":
    main()
