#!/usr/bin/env python3
"""Reference point for the core recipe: logistic regression on utterance-level Fbank
statistics (mean and std of the 80 log-mel bands, whole utterance), with exactly the
recipe's labels, bins and speaker-disjoint train/test split of speechocean762-8k.

    python benchmarks/fbank_lr_baseline.py [--manifests results/bench_core/ecapa_cpu_base/1234/manifests]
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from hyperpyyaml import load_hyperpyyaml  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import precision_recall_fscore_support  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from speechbrain.lobes.features import Fbank  # noqa: E402

from benchmarks.common import ROOT, read_csv, script_command, table_path, write_markdown  # noqa: E402
from recipes.data.audio import load_audio  # noqa: E402


def stats(rows, fbank):
    out = []
    for r in rows:
        with torch.no_grad():
            f = fbank(load_audio(r["wav"], 8000).unsqueeze(0))[0]
        out.append(torch.cat([f.mean(0), f.std(0)]).numpy())
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifests", default=os.path.join(ROOT, "results", "bench_core", "ecapa_cpu_base", "1234", "manifests"))
    args = ap.parse_args()
    with open(os.path.join(ROOT, "hparams", "labels", "speechocean762.yaml")) as f:
        ls = load_hyperpyyaml(f)["label_space"]
    fbank = Fbank(sample_rate=8000, n_mels=80, f_max=4000)
    data = {}
    for split in ("train", "valid", "test"):
        rows = read_csv(os.path.join(args.manifests, f"{split}.csv"))
        sub = np.array([ls.sub_index(r["age"]) for r in rows])
        data[split] = (stats(rows, fbank), {"gender": np.array([ls.gender_index(r["gender"]) for r in rows]),
                                            "age_sup": np.array([ls.sup_index(s) for s in sub]), "age_sub": sub})
    x_tr = np.concatenate([data["train"][0], data["valid"][0]])
    lines = ["| task | P | R | F1 |", "|---|---|---|---|"]
    for task in ("gender", "age_sup", "age_sub"):
        y_tr = np.concatenate([data["train"][1][task], data["valid"][1][task]])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1)).fit(x_tr, y_tr)
        p, r, f1, _ = precision_recall_fscore_support(data["test"][1][task], clf.predict(data["test"][0]),
                                                      average="macro", zero_division=0)
        lines.append(f"| {task} | {100 * p:.1f} | {100 * r:.1f} | {100 * f1:.1f} |")
    text = ("# Logistic regression on utterance Fbank statistics (speechocean762-8k test split)\n\n"
            "Same labels, bins (hparams/labels/speechocean762.yaml) and speaker split as the core recipe; "
            "80 log-mel means + stds per utterance, standardised, L2 logistic regression (C=0.1).\n\n"
            + "\n".join(lines) + f"\n\nCommand: `{script_command(__file__, *sys.argv[1:])}`\n")
    write_markdown(table_path("fbank_lr_baseline.md"), text)


if __name__ == "__main__":
    main()
