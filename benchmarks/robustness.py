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
from benchmarks.common import (ROOT, SO_DATA, demo_model, in_root, machine, read_csv,  # noqa: E402
                               script_command, table_path)
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


def manifest_clips(path, limit):
    rows = read_csv(path)
    rows = rows[:limit] if limit else rows
    folder = os.path.dirname(os.path.abspath(path))
    for r in rows:
        if not os.path.isabs(r["wav"]) and not os.path.exists(r["wav"]):
            r["wav"] = os.path.join(folder, r["wav"])
    return rows


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


# ---- degraded: clipping, DC offset, hum, noise, noise alone ---------------------------------
DEGRADATIONS = ("clean", "clipped (x30)", "DC offset +0.1", "hum 50 Hz -20 dB", "white noise 10 dB SNR",
                "noise only")
DETECTORS = ("energy", "silero")
HUM_HZ, HUM_HARMONICS = 50.0, 5  # the fundamental and harmonics 2-5
NO_LABEL = "(silent)"
SO_NAME = "speechocean762 test, adults"


def clip_generator(seed, corpus, clip, condition):
    """A torch Generator of one clip and condition (the same draws for both detectors)."""
    return torch.Generator().manual_seed(random.Random(f"{seed}:{corpus}:{clip}:{condition}").randrange(2 ** 31))


def rms(sig):
    return float(sig.pow(2).mean().sqrt()) if sig.numel() else 0.0


def degrade(sig, condition, sr, gen):
    """``sig`` (DC-free, as load_audio gives it) under ``condition`` (one of DEGRADATIONS);
    levels relative to the clip's RMS over its whole length."""
    level = rms(sig)
    if condition == "clean":
        return sig
    if condition == "clipped (x30)":
        return (sig * 30.0).clamp(-1.0, 1.0)
    if condition == "DC offset +0.1":
        return sig + 0.1
    if condition == "hum 50 Hz -20 dB":
        t = torch.arange(sig.numel(), dtype=torch.float64) / sr
        phases = torch.rand(HUM_HARMONICS, generator=gen, dtype=torch.float64) * 2 * torch.pi
        hum = sum(torch.sin(2 * torch.pi * HUM_HZ * k * t + phases[k - 1]) for k in range(1, HUM_HARMONICS + 1))
        hum = hum.float()
        return sig + hum * (level * 10 ** (-20 / 20) / max(rms(hum), 1e-12))
    noise = torch.randn(sig.numel(), generator=gen)
    noise = noise * (level / max(rms(noise), 1e-12))
    if condition == "white noise 10 dB SNR":
        return sig + noise * 10 ** (-10 / 20)
    if condition == "noise only":
        return noise
    raise ValueError(f"unknown condition {condition!r}; known: {DEGRADATIONS}")


def sample_rows(rows, limit, seed):
    """At most ``limit`` rows (0: all), a seeded sample kept in manifest order."""
    if not limit or len(rows) <= limit:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def speechocean_adult_rows(so_data):
    """speechocean762 test utterances of the adult speakers (>= 20 y), read from test/wav.scp
    and its speaker lists (local/prepare_speechocean762.py's reader, no screening)."""
    from local.prepare_speechocean762 import read_split
    return [r for _, r in read_split(in_root(so_data), "test") if float(r["age"]) >= 20]


def load_corpus(rows, sr, ls, with_age):
    """(signals, truth {task: index, -1 not scored}) of manifest rows; unreadable files skipped."""
    sigs, truth = [], []
    for r in rows:
        try:
            sig = load_audio(in_root(r["wav"]), sr)
        except AudioError as err:
            print(f"skipping {r['ID']}: {err}", file=sys.stderr)
            continue
        age, group = (r.get("age", ""), r.get("age_group", "")) if with_age else ("", "")
        idx = label_tensors(ls, r.get("gender", ""), age, group, r["ID"])
        sigs.append(sig)
        truth.append({t: int(i) for t, i in zip(TASKS, idx)})
    return sigs, truth


def degraded_cells(profilers, corpus, signals, truth, seed, batch=16):
    """{(condition, detector): cell} of one corpus: clips, profiled, gender / age-group
    (age_sub) right and scored among the profiled clips, gender / age-group labels changed
    from the same detector's clean answer (a clip that turns silent counts as changed),
    summed clipped_fraction."""
    any_prof = next(iter(profilers.values()))
    sr, names = any_prof.sample_rate, any_prof.class_names
    cells, clean = {}, {}
    for cond in DEGRADATIONS:
        sigs = [degrade(s, cond, sr, clip_generator(seed, corpus, i, cond)) for i, s in enumerate(signals)]
        for det, prof in profilers.items():
            res = []
            for k in range(0, len(sigs), batch):
                res += prof.classify_signals(sigs[k:k + batch])
            labels = [{t: (NO_LABEL if r["silent"] else r[t]["label"]) for t in ("gender", "age_sub")} for r in res]
            clean.setdefault(det, labels)
            cell = {"clips": len(res), "profiled": sum(not r["silent"] for r in res),
                    "clipped": sum(r["clipped_fraction"] for r in res)}
            for t in ("gender", "age_sub"):
                scored = [(lab[t], tr[t]) for lab, tr in zip(labels, truth) if lab[t] != NO_LABEL and tr[t] >= 0]
                cell[t] = (sum(lab == names[t][i] for lab, i in scored), len(scored))
                cell[f"{t} changed"] = sum(a[t] != b[t] for a, b in zip(labels, clean[det]))
            cells[(cond, det)] = cell
            print(corpus, cond, det, cell, flush=True)
    return cells


def degraded_benchmark(model_folder, cv_manifest, so_data, limit=300, seed=0, cv_name="Common Voice test"):
    """{corpus: {(condition, detector): cell}}, {corpus: clips}: the Common Voice test clips of
    ``cv_manifest`` (gender and age group) and speechocean762's adult test clips (gender)."""
    profilers = {det: SpeakerProfilerInterface.from_folder(model_folder, overrides={"speech": {"detector": det}})
                 for det in DETECTORS}
    prof = profilers[DETECTORS[0]]
    corpora = {cv_name: (sample_rows(manifest_clips(cv_manifest, 0), limit, seed), True)}
    if so_data and os.path.isdir(in_root(so_data)):
        corpora[SO_NAME] = (sample_rows(speechocean_adult_rows(so_data), limit, seed), False)
    else:
        print(f"speechocean762 not found at {so_data}: Common Voice only", file=sys.stderr)
    tables, sizes = {}, {}
    for corpus, (rows, with_age) in corpora.items():
        signals, truth = load_corpus(rows, prof.sample_rate, prof.label_space, with_age)
        tables[corpus] = degraded_cells(profilers, corpus, signals, truth, seed)
        genders = [t["gender"] for t in truth if t["gender"] >= 0]
        top = max(set(genders), key=genders.count) if genders else None
        sizes[corpus] = (len(signals), len({r.get("spk_id") for r in rows}),
                         (prof.class_names["gender"][top], genders.count(top), len(genders)) if genders else None)
    return tables, sizes


def share(n, total):
    return f"{100 * n / total:.1f} % ({n}/{total})" if total else "n/a"


def acc(right_scored):
    right, scored = right_scored
    return f"{100 * right / scored:.1f} ({right}/{scored})" if scored else "n/a"


def degraded_markdown(tables, sizes, name, command, seconds, detector_trained):
    where = machine(f"{torch.get_num_threads()} torch thread(s)")
    lines = [f"## Degraded input: clipping, DC offset, hum, noise, noise alone ({name})", "",
             "Each clip (read by load_audio: mono, the model's sample rate, DC and sub-audio removed by its 20 Hz high-pass) is profiled as it is "
             "and degraded, seeded per clip and condition: **clipped (x30)**: x30 gain then clipped to [-1, 1]; "
             "**DC offset +0.1** added; **hum 50 Hz -20 dB**: 50 Hz and its harmonics 2-5 (equal amplitudes, "
             "random phases), in all 20 dB below the clip's RMS; **white noise 10 dB SNR** (relative to the clip's "
             "RMS over its whole length, pauses included); **noise only**: white noise of the clip's length and "
             "RMS, no speech. Each input goes through SpeakerProfilerInterface.classify_signals (the batch "
             "inference) with each speech detector: **energy** (the energy rule alone) and **silero** (the energy "
             "rule AND the Silero VAD model), the rest of the model folder's `speech` block as it is.", "",
             "Columns: **profiled**: clips with enough speech for an answer (not `silent`); in the noise-only "
             "rows that is noise taken for a person (lower is better); the accuracies count the profiled clips "
             "only (in the noise-only rows they compare a guess about noise with the speaker it replaced: no "
             "meaning beyond the model's prior, compare the corpus's most frequent gender); **changed**: clips "
             "whose label differs from the same detector's answer on the clean clip (a clip that turns silent "
             "counts as changed); **mean clipped_fraction**: the result dict's share of samples flat at the "
             "signal's extremes, over all clips. The age group is the Common Voice decade (age_sub), scored on "
             "Common Voice only; speechocean762's clips are its adult speakers' (>= 20 y: the only ones a Common "
             "Voice model's gender is comparable on), gender only.", "",
             f"`{command}` ({seconds / 60:.1f} min wall time; machine: {where}; "
             f"the model's folder has `detector: {detector_trained}`, both detectors are set at inference "
             "with `from_folder(..., overrides={\"speech\": {\"detector\": ...}})`)", ""]
    for corpus, cells in tables.items():
        n, spk, top = sizes[corpus]
        age = corpus != SO_NAME
        most = f"; most frequent gender {top[0]}: {share(top[1], top[2])} of them" if top else ""
        lines += [f"**{corpus}** ({n} clips / {spk} speakers{most})", "",
                  "| input | detector | profiled (not silent) | gender acc, % | "
                  + ("age group acc, % | " if age else "") + "gender changed | "
                  + ("age group changed | " if age else "") + "mean clipped_fraction |",
                  "|---|---|---|---|" + ("---|" if age else "") + "---|" + ("---|" if age else "") + "---|"]
        for (cond, det), c in cells.items():
            row = [cond, det, share(c["profiled"], c["clips"]), acc(c["gender"])]
            row += [acc(c["age_sub"])] if age else []
            row += [share(c["gender changed"], c["clips"])]
            row += [share(c["age_sub changed"], c["clips"])] if age else []
            row += [f"{c['clipped'] / max(c['clips'], 1):.4f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


DEGRADED_MODEL = "results/bench_cv_current/ge2e_ch_plain/1234"  # the Common Voice ge2e_ch_plain row, current code


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
    from recipes.model_folder import PRETRAINED_YAML, pretrained_source
    with open(os.path.join(pretrained_source(in_root(args.model_folder)), PRETRAINED_YAML)) as f:
        trained = next((line.split(":", 1)[1].split("#")[0].strip() for line in f
                        if line.strip().startswith("detector:")), "energy (not set)")
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
