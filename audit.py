#!/usr/bin/env python3
"""Bias audit of a trained folder: for whom does it fail, and what else does it leak?

    python audit.py hparams/audit/demo.yaml --model_folder=results/demo/1234 [--key=value]
    python audit.py hparams/audit/commonvoice.yaml --model_folder=<folder trained on Common Voice>

Writes <output_folder>/audit.md (a plain-language summary first), audit.png, audit.json and
predictions_audit.csv, for the same model:
1. the per-group error table (recipes/evaluation/group_errors.py) on the test manifest;
2. leakage per layer (recipes/probing, as probe.py): how well gender, age group, language or
   channel and speaker identity are decoded from each named layer and ALL, with the majority
   and random-init baselines and the selectivity;
3. the neurons that carry gender (Algorithm 1, paper 001) in one layer and what the other
   tasks lose when they are masked or removed (recipes/probing/audit.py).
"""

import sys

from recipes.config.entry import BAD_FOLDER, guarded, load_run
from recipes.probing.audit_run import run_audit


def main(argv):
    text = run_audit(load_run(argv))
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(guarded(main, sys.argv[1:], BAD_FOLDER))
