#!/usr/bin/env python3
"""Probe a trained encoder: where gender, age, speaker, language and channel are encoded.

    python probe.py hparams/probe/demo.yaml --model_folder=results/demo/1234          # about a minute
    python probe.py hparams/probe/speechocean762.yaml --model_folder=results/... [--key=value]

Writes <output_folder>/report.md, *.csv, probing.png and results.json (papers 000, 001).
"""

import sys

from recipes.config.entry import BAD_FOLDER, guarded, load_run
from recipes.probing.probe_run import run_probe


def main(argv):
    text = run_probe(load_run(argv))
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(guarded(main, sys.argv[1:], BAD_FOLDER))
