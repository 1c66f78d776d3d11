#!/usr/bin/env python3
"""Iterative global magnitude pruning of a trained model (paper 002, Sections II-C, IV-C).

    python prune.py hparams/speechocean762/prune.yaml --model_folder=<train.py output folder>   # 002 schedule
    python prune.py hparams/speechocean762/prune_sparsity.yaml --model_folder=...             # share of weights

The architecture, weights, label space and data split come from the model folder (any
train.py output: ECAPA or ResNet, core, logit-KD or LCMR student). Rounds of prune +
retrain run until the validation F1 drops more than the tolerance below the unpruned
model's; the last good model is kept. Running the same command again resumes.

``--teacher_folder=<folder> --lam=0.5`` retrains every round with logit KD from that teacher
(paper 002, Eq. 4; ``lam: 0``, the default, loads none).

``prune_method: structured`` (hparams/<corpus>/prune_structured.yaml) removes whole channels
instead (recipes/compression/structured.py, criterion l1 / l2 / bn_scale / probe): the
result is a smaller dense encoder; its inference.yaml rebuilds it at the pruned widths.

Outputs in <output_folder> (default <model_folder>/pruned, structured: <model_folder>/pruned_structured): save/ (checkpoints with the
masks; the final one is the last good model, so infer.py works on the folder),
inference.yaml, pruned_model.pt (compressed sparse form; recipes.compression.sparse.
load_sparse_profiler reads it back), pruning_rounds.csv, pruning_layers.csv/.md (per-layer
non-zero counts), prune_summary.json and pruning_report.md (non-zero parameters, file size,
CPU forward time dense vs sparse, F1 per task), results.json (test).
"""

import sys

from recipes.brains.pruning_run import run_pruning
from recipes.config.entry import BAD_FOLDER, guarded, load_run


def main(argv):
    return run_pruning(load_run(argv))


if __name__ == "__main__":
    sys.exit(guarded(main, sys.argv[1:], BAD_FOLDER))
