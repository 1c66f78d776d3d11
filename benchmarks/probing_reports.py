#!/usr/bin/env python3
"""Committed probing reports (papers 000 / 001) for an ECAPA teacher, its MKD student
and a random-init ECAPA: runs probe.py on each (extraction is cached, so a rerun only redoes
what is missing) and copies report.md, the CSVs, results.json and probing.png to
benchmarks/results/probing/<name>/. The summary against paper 001 is benchmarks/results/probing/README.md.

    python benchmarks/probing_reports.py [--teacher results/bench_core/ecapa_cpu_ch/1234]
        [--student results/bench_mkd/ecapa_cpu_MKD_CH/1234] [--n_seeds 5]
"""

import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import ROOT, table_path  # noqa: E402

FILES = ("report.md", "layerwise.csv", "neurons.csv", "distribution.csv", "results.json", "probing.png")


def done_with(report, n_seeds):
    """An existing report made with the same number of seeds (else probe.py runs again;
    the extracted representations are cached, so only the probes are redone)."""
    if not os.path.isfile(report):
        return False
    with open(report) as f:
        return f"; {n_seeds} seeds;" in f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="results/bench_core/ecapa_cpu_ch/1234")
    ap.add_argument("--student", default="results/bench_mkd/ecapa_cpu_MKD_CH/1234")
    ap.add_argument("--n_seeds", type=int, default=5)
    ap.add_argument("--max_per_speaker", type=int, default=4)
    ap.add_argument("--channel_per_speaker", type=int, default=1)
    args = ap.parse_args()
    common = [f"--n_seeds={args.n_seeds}", f"--max_per_speaker={args.max_per_speaker}",
              f"--channel_per_speaker={args.channel_per_speaker}"]
    runs = [("teacher", args.teacher, ["--title=ECAPA teacher C 256, clean, +CH"], False),
            ("student", args.student, ["--title=ECAPA MKD student C 160, +MKD+CH, telephone domain"], False),
            ("random_init", args.teacher, ["--title=ECAPA C 256, random init", "--random_init=True",
                                           "--random_init_baseline=False"], True)]
    for name, folder, extra, rand in runs:
        out = os.path.join(folder, f"probe_random_{rand}")
        if not done_with(os.path.join(out, "report.md"), args.n_seeds):
            cmd = [sys.executable, "probe.py", "hparams/probe/speechocean762.yaml", f"--model_folder={folder}",
                   *common, *extra]
            subprocess.run(cmd, cwd=ROOT, check=True)
        dest = table_path("probing", name)
        os.makedirs(dest, exist_ok=True)
        for f in FILES:
            shutil.copy(os.path.join(ROOT, out, f), dest)
        print(f"{name}: {dest}")


if __name__ == "__main__":
    main()
