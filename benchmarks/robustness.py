#!/usr/bin/env python3
"""Robustness benchmark -> benchmarks/results/robustness.md (each part replaces its own section).

``padding``: accuracy of a trained model on test clips as they are and padded before and
after with 1-3 s (uniform, per side and per clip, seeded) of digital silence, of -60 dBFS
and of -80 dBFS white noise, with two inference rules:

- ``window floor`` (the previous inference, reproduced here): windows of the whole
  recording, a window used when its RMS level is >= floor_dbfs and >= (loudest window -
  threshold_db);
- ``speech frames`` (recipes/inference/windows.py, the default): non-speech frames of
  recipes/data/speech.py dropped, then the speech cut into windows.

"changed" counts the clips whose label differs from the same rule's answer on the clean
clip. ``faults``: benchmarks/robustness_faults.py runs each kind of bad input or fault with the
real commands and records what happens (exit code, message).

``degraded``: a trained model (default: the Common Voice ge2e_ch_plain row trained with the
current code, results/bench_cv_current/ge2e_ch_plain/1234) on a seeded sample of its Common
Voice test clips (gender and age decade) and of speechocean762's adult test clips (gender),
each clean, clipped (x30 gain), with a DC offset of +0.1, with 50 Hz mains hum (and harmonics
2-5) 20 dB under the clip, with white noise at 10 dB SNR, and replaced by white noise of its
length and RMS ("noise only": noise taken for a person); each through the batch inference
(classify_signals) with the energy and the silero speech detector: share profiled, accuracy
on the profiled clips, labels changed from the clean clip's, mean clipped_fraction.

    python benchmarks/robustness.py padding --smoke           # a 1-epoch demo model, 16 clips
    python benchmarks/robustness.py padding --model_folder results/demo/1234 \\
        --manifest results/demo/1234/manifests/test.csv --name demo
    python benchmarks/robustness.py faults                    # the table of bad inputs / faults
    python benchmarks/robustness.py degraded --smoke          # a 1-epoch demo model, 6 clips per corpus
    python benchmarks/robustness.py degraded --model_folder results/bench_cv_current/ge2e_ch_plain/1234
"""

import argparse
import os
import platform
import random
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from benchmarks.common import (ROOT, SO_DATA, demo_model, in_root, manifest_clips, script_command,  # noqa: E402
                               table_path)
from benchmarks.robustness_degraded import DEGRADED_MODEL, degraded_benchmark, degraded_markdown  # noqa: E402
from recipes.data.audio import AudioError, load_audio  # noqa: E402
from recipes.data.pipelines import label_tensors  # noqa: E402
from recipes.data.speech import SpeechConfig  # noqa: E402
from recipes.inference.interface import TASKS, SpeakerProfilerInterface  # noqa: E402
from recipes.inference.windows import window_bounds  # noqa: E402

MD = table_path("robustness.md")
CONDITIONS = ("clean", "silence", "noise -60 dBFS", "noise -80 dBFS")
RULES = ("window floor", "speech frames")


def pad(sig, condition, sr, rng):
    """``sig`` with 1-3 s of ``condition`` before and after (``rng``: per clip)."""
    if condition == "clean":
        return sig
    sides = []
    for _ in range(2):
        n = int(rng.uniform(1.0, 3.0) * sr)
        if condition == "silence":
            sides.append(torch.zeros(n))
        else:
            dbfs = float(condition.split()[1])
            g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
            sides.append(torch.randn(n, generator=g) * 10 ** (dbfs / 20))
    return torch.cat([sides[0], sig, sides[1]])


def window_floor_results(profiler, signals):
    """Result dicts of the previous rule: windows of the whole signal above the level thresholds."""
    hp, speech = profiler.hparams, SpeechConfig.coerce(getattr(profiler.hparams, "speech", None))
    sr = profiler.sample_rate
    window, hop = int(round(hp.window_seconds * sr)), int(round(hp.hop_seconds * sr))
    windows, owner = [], []
    for i, sig in enumerate(signals):
        bounds = window_bounds(sig.numel(), window, hop)
        rms = torch.stack([sig[a:b].pow(2).mean().sqrt() for a, b in bounds])
        level = 20 * torch.log10(rms.clamp_min(1e-12))
        keep = torch.ones_like(level, dtype=torch.bool)
        if speech.floor_dbfs is not None:
            keep &= level >= speech.floor_dbfs
        if speech.threshold_db is not None:
            keep &= level >= level.max() - speech.threshold_db
        windows += [sig[a:b] for (a, b), k in zip(bounds, keep.tolist()) if k]
        owner += [i] * int(keep.sum())
    probs, embs = profiler.run_windows(windows)
    owner = torch.tensor(owner, dtype=torch.long)
    out = []
    for i in range(len(signals)):
        sel = owner == i
        mean = {t: p[sel].mean(0) for t, p in probs.items()} if sel.any() else None
        out.append(profiler._result(mean, None, 0, int(sel.sum())))
    return out


def padding_benchmark(model_folder, manifest, limit=0, seed=0, batch=16):
    """{(rule, condition): {task: (correct, scored, changed)}}, number of clips read."""
    profiler = SpeakerProfilerInterface.from_folder(model_folder)
    sr, ls = profiler.sample_rate, profiler.label_space
    rows, truth = [], []
    for r in manifest_clips(manifest, limit):
        try:
            sig = load_audio(r["wav"], sr)
        except AudioError as err:
            print(f"skipping {r['ID']}: {err}", file=sys.stderr)
            continue
        idx = label_tensors(ls, r.get("gender", ""), r.get("age", ""), r.get("age_group", ""), r["ID"])
        rows.append(sig)
        truth.append({t: int(i) for t, i in zip(TASKS, idx)})
    table = {}
    for rule in RULES:
        clean_labels = None
        for cond in CONDITIONS:
            rng = random.Random(seed)  # the same pads for both rules
            labels = []
            for k in range(0, len(rows), batch):
                sigs = [pad(s, cond, sr, rng) for s in rows[k:k + batch]]
                res = profiler.classify_signals(sigs) if rule == "speech frames" else \
                    window_floor_results(profiler, sigs)
                labels += [{t: (r[t]["label"] if not r["silent"] else None) for t in TASKS} for r in res]
            clean_labels = clean_labels or labels
            cell = {}
            for t in TASKS:
                names = profiler.class_names[t]
                scored = [(lab[t], tr[t]) for lab, tr in zip(labels, truth) if tr[t] >= 0]
                correct = sum(lab == names[i] for lab, i in scored)
                changed = sum(a[t] != b[t] for a, b in zip(labels, clean_labels))
                cell[t] = (correct, len(scored), changed)
            table[(rule, cond)] = cell
            print(rule, cond, cell, flush=True)
    return table, len(rows)


def padding_markdown(table, n, name, command, seconds):
    lines = [f"### {name}", "", f"`{command}` ({n} clips, {seconds:.0f} s on {platform.machine()} CPU)", "",
             "| inference rule | input | " + " | ".join(f"{t} acc" for t in TASKS) + " | gender changed |",
             "|---|---|" + "---|" * (len(TASKS) + 1)]
    for (rule, cond), cell in table.items():
        accs = [f"{c / max(s, 1):.3f} ({c}/{s})" for c, s, _ in (cell[t] for t in TASKS)]
        lines.append(f"| {rule} | {cond} | " + " | ".join(accs) + f" | {cell['gender'][2]}/{n} |")
    return "\n".join(lines) + "\n"


def replace_section(key, text, path=MD):
    """Replace (or append) the ``<!-- key -->`` ... ``<!-- /key -->`` block of the markdown."""
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    body = open(path).read() if os.path.isfile(path) else "# Robustness: silence, bad inputs, faults\n\n"
    block = f"{begin}\n{text}{end}\n"
    if begin in body and end in body:
        body = body[:body.index(begin)] + block + body[body.index(end) + len(end) + 1:]
    else:
        body += "\n" + block
    with open(path + ".tmp", "w") as f:
        f.write(body)
    os.replace(path + ".tmp", path)


def smoke_model(work):
    """A 1-epoch demo model (as tests/conftest.py tiny_run): (model folder, test manifest)."""
    out = demo_model(os.path.join(work, "out"), os.path.join(work, "demo"), os.path.join(work, "train.log"))
    return out, os.path.join(out, "manifests", "test.csv")


def thread_count():
    """OMP_NUM_THREADS when it is set (a shared machine), else up to 4 of the cores."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, min(4, os.cpu_count() or 1))


def run_degraded(args, out_md, work):
    if args.smoke:
        args.model_folder, manifest = smoke_model(work)
        args.manifest = args.manifest or manifest
        args.limit, args.name = args.limit or 6, args.name or "smoke (1-epoch demo model)"
    args.model_folder = args.model_folder or DEGRADED_MODEL
    args.manifest = args.manifest or os.path.join(args.model_folder, "manifests", "test.csv")
    args.limit = 300 if args.limit is None else args.limit
    if not os.path.isfile(in_root(args.manifest)):
        sys.exit(f"error: {args.manifest} not found (train the model first, or give --manifest)")
    from recipes.model_folder import PRETRAINED_YAML, pretrained_source, read_tree

    speech = read_tree(os.path.join(pretrained_source(in_root(args.model_folder)), PRETRAINED_YAML)).get("speech") or {}
    trained = speech.get("detector", "energy (not set)")
    t0 = time.time()
    cv_name = "demo corpus test (in place of Common Voice)" if args.smoke else "Common Voice test"
    tables, sizes = degraded_benchmark(in_root(args.model_folder), in_root(args.manifest), args.so_data,
                                       args.limit, args.seed, cv_name)
    name = args.name or args.model_folder
    own_test = args.manifest == os.path.join(args.model_folder, "manifests", "test.csv")
    command = script_command(__file__, "degraded", "--smoke" if args.smoke else (
        f"--model_folder {args.model_folder}" + ("" if own_test else f" --manifest {args.manifest}")
        + (f" --limit {args.limit}" if args.limit != 300 else "")
        + (f" --seed {args.seed}" if args.seed else "")))
    text = degraded_markdown(tables, sizes, name, command, time.time() - t0, trained)
    if out_md:
        replace_section(f"degraded {name}", text, out_md)
    print(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["padding", "faults", "degraded"])
    ap.add_argument("--model_folder", help="padding, degraded: a train.py output folder or an exported folder "
                                           f"(degraded: default {DEGRADED_MODEL})")
    ap.add_argument("--manifest", help="padding: a test manifest CSV (ID, wav, gender, age, age_group); degraded: "
                                       "the Common Voice test manifest (default <model_folder>/manifests/test.csv)")
    ap.add_argument("--so_data", default=SO_DATA, help="degraded: the speechocean762 folder (its test split's "
                                                       "adult speakers; skipped when absent)")
    ap.add_argument("--name", default=None, help="padding, degraded: the section's title (default: the model folder)")
    ap.add_argument("--limit", type=int, default=None, help="padding: first N clips only (default 0: all); "
                                                            "degraded: a seeded sample of N clips per corpus "
                                                            "(default 300, 0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="a 1-epoch demo model trained here; padding: 16 clips, "
                                                         "degraded: 6 clips per corpus")
    ap.add_argument("--out", default=None, help=f"markdown to update (default {os.path.relpath(MD, ROOT)}; "
                                                 "--smoke: none, the table is printed)")
    args = ap.parse_args(argv)
    torch.set_num_threads(thread_count())
    out_md = args.out or (None if args.smoke else MD)
    if args.part == "faults":
        from benchmarks.robustness_faults import faults_markdown

        replace_section("faults", faults_markdown(), out_md or MD)
        return 0
    with tempfile.TemporaryDirectory() as work:
        if args.part == "degraded":
            run_degraded(args, out_md, work)
            return 0
        args.limit = args.limit or 0
        if args.smoke:
            args.model_folder, args.manifest = smoke_model(work)
            args.limit, args.name = args.limit or 16, args.name or "smoke (1-epoch demo model)"
        if not (args.model_folder and args.manifest):
            ap.error("padding needs --model_folder and --manifest (or --smoke)")
        t0 = time.time()
        table, n = padding_benchmark(args.model_folder, args.manifest, args.limit, args.seed)
        name = args.name or args.model_folder
        command = script_command(__file__, "padding", "--smoke" if args.smoke else (
            f"--model_folder {args.model_folder} --manifest {args.manifest}"
            + (f" --limit {args.limit}" if args.limit else "")))
        text = padding_markdown(table, n, name, command, time.time() - t0)
    if out_md:
        replace_section(f"padding {name}", text, out_md)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
