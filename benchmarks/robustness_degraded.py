"""The ``degraded`` part of benchmarks/robustness.py (its docstring says what it measures): a trained
model on Common Voice and speechocean762 test clips clipped, with a DC offset, mains hum, white
noise, or replaced by noise, under the energy and the silero speech detector."""

import os
import random
import sys

import torch

from benchmarks.common import in_root, machine, manifest_clips
from recipes.data.audio import AudioError, load_audio
from recipes.data.pipelines import label_tensors
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.labels import TASKS


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
