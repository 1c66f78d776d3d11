"""Silence and low noise around speech do not change the answer; NaN audio is an error.

On the demo model (tests/conftest.py ``tiny_run``), each of a few demo clips is classified
clean and with 1-3 s of leading / trailing digital silence or -60 / -80 dBFS white noise.
Tolerances:

- pads of whole speech frames (multiples of 20 ms: 1 s, 1.5 s, 2 s, 3 s) of digital silence
  or -80 dBFS noise: the speech the model sees is the same samples, so labels are equal and
  every probability is within PROB_TOL_ALIGNED = 1e-4 (float noise of batching);
- LEADING pads of whole frames: the trained speech detector (detector: silero, the recipes'
  default) reads the recording in 32 ms chunks from its first sample, so a leading pad moves its
  chunk grid against the speech and a frame or two at the edges of a pause can change side:
  labels equal, probabilities within PROB_TOL_LEAD = 0.005;
- the same with -60 dBFS noise, which sits at the speech floor (-60 dBFS): a few noise
  frames can pass it (and the relative threshold of a quiet clip), so labels are equal and
  probabilities within PROB_TOL_AT_FLOOR = 0.02;
- pads that shift the frame grid (1.234 s, 2.71 s): the speech keeps up to one frame more
  or less at its edges and the windows move by a few ms, which moves the demo model's
  probabilities by up to ~0.1 (the same model, fed the clean clip shifted by 5-19 ms and
  no silence dropping, moves by up to 0.06); probabilities within PROB_TOL_SHIFTED = 0.15,
  labels equal where the clean answer is confident (top probability >= CONFIDENT = 0.65).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

from conftest import ROOT
from recipes.data.audio import load_audio

# a top-level "speech:" entry of a YAML file and its indented lines
SPEECH_BLOCK = r"^speech: .*\n(?:[ #].*\n|\n)*?(?=^\S|\Z)"
SR = 8000
PROB_TOL_ALIGNED = 1e-4
PROB_TOL_LEAD = 0.005
PROB_TOL_AT_FLOOR = 0.02
PROB_TOL_SHIFTED = 0.15
CONFIDENT = 0.65
TASKS = ("gender", "age_sup", "age_sub")


def noise(seconds, dbfs, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(int(round(seconds * SR)), generator=g) * 10 ** (dbfs / 20)


def silence(seconds):
    return torch.zeros(int(round(seconds * SR)))


def padded(x, seed):
    """name -> (signal, probability tolerance, labels must match) for one clean clip."""
    return {
        "silence lead 1 s": (torch.cat([silence(1.0), x]), PROB_TOL_LEAD, True),
        "silence tail 2 s": (torch.cat([x, silence(2.0)]), PROB_TOL_ALIGNED, True),
        "silence both 3 s": (torch.cat([silence(3.0), x, silence(3.0)]), PROB_TOL_LEAD, True),
        "-80 dBFS tail 3 s": (torch.cat([x, noise(3.0, -80, seed)]), PROB_TOL_ALIGNED, True),
        "-60 dBFS lead 1.5 s + tail 2 s": (torch.cat([noise(1.5, -60, seed), x, noise(2.0, -60, seed + 1)]),
                                           PROB_TOL_AT_FLOOR, True),
        "silence lead 1.234 s": (torch.cat([silence(1.234), x]), PROB_TOL_SHIFTED, False),
        "-60 dBFS lead 2.71 s": (torch.cat([noise(2.71, -60, seed), x]), PROB_TOL_SHIFTED, False),
    }


def demo_clips(root, n=4):
    wavs = sorted(os.listdir(root / "demo" / "wav"))
    step = max(1, len(wavs) // n)  # spread over the corpus (different ages / genders)
    return [str(root / "demo" / "wav" / w) for w in wavs[::step][:n]]


def test_padding_with_silence_or_low_noise_keeps_the_answer(tiny_run):
    from recipes.inference.interface import SpeakerProfilerInterface

    root, out = tiny_run
    profiler = SpeakerProfilerInterface.from_folder(str(out))
    failures = []
    for k, path in enumerate(demo_clips(root)):
        x = load_audio(path, SR)
        variants = padded(x, seed=10 * k)
        results = profiler.classify_signals([x] + [sig for sig, _, _ in variants.values()])
        clean = results[0]
        assert not clean["silent"]
        for (name, (_, tol, labels_match)), res in zip(variants.items(), results[1:]):
            for task in TASKS:
                diff = max(abs(res[task]["probs"][c] - p) for c, p in clean[task]["probs"].items())
                same = res[task]["label"] == clean[task]["label"]
                must_match = labels_match or clean[task]["prob"] >= CONFIDENT
                if diff > tol or (must_match and not same):
                    failures.append(f"{os.path.basename(path)} {name} {task}: {clean[task]['label']} "
                                    f"{clean[task]['prob']:.3f} -> {res[task]['label']} {res[task]['prob']:.3f} "
                                    f"(max prob change {diff:.4f}, tolerance {tol})")
    assert not failures, "\n".join(failures)


def test_nan_file_is_an_error_record_and_cancelling_stereo_is_speech(tiny_run, tmp_path):
    root, out = tiny_run
    speech, sr = sf.read(demo_clips(root, 1)[0], dtype="float32")
    speech = speech.mean(axis=1) if speech.ndim == 2 else speech
    nan = speech.copy()
    nan[len(nan) // 2] = np.nan
    sf.write(tmp_path / "nan.wav", nan, sr, subtype="FLOAT")
    sf.write(tmp_path / "cancel.wav", np.stack([speech, -speech], axis=1), sr)  # L = -R
    sf.write(tmp_path / "quiet.wav", speech * 10 ** (-25 / 20), sr)  # speech around -40..-70 dBFS
    sf.write(tmp_path / "silence.wav", np.zeros(sr * 2, dtype=np.float32), sr)
    files = [str(tmp_path / n) for n in ("nan.wav", "cancel.wav", "quiet.wav", "silence.wav")]
    res = subprocess.run([sys.executable, "infer.py", str(out), *files, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    rows = {os.path.basename(r["file"]): r for r in map(json.loads, res.stdout.strip().splitlines())}
    assert res.returncode == 1, res.stderr[-2000:]  # the NaN file failed
    assert "non-finite" in rows["nan.wav"]["error"] and "nan.wav" in rows["nan.wav"]["error"]
    assert "silent" not in rows["nan.wav"]
    assert not rows["cancel.wav"]["silent"] and rows["cancel.wav"]["gender"]["label"] in ("f", "m")
    assert not rows["quiet.wav"]["silent"]  # relative threshold: quiet speech is still speech
    assert rows["silence.wav"]["silent"] and rows["silence.wav"]["speech_seconds"] == 0


def test_inference_reads_the_training_speech_thresholds(tiny_run, tmp_path):
    """The trained folder's `speech` block (inference.yaml) reaches the pretrained folder and
    replaces interface.yaml's default; a command-line override changes one threshold."""
    import shutil

    from recipes.inference.interface import SpeakerProfilerInterface

    root, out = tiny_run
    with open(out / "pretrained" / "hyperparams.yaml") as f:  # train.py's export: one speech block
        assert len(re.findall(r"^speech:", f.read(), re.M)) == 1
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("pretrained"))
    with open(copy / "inference.yaml") as f:
        text = re.sub(SPEECH_BLOCK, "", f.read(), flags=re.M)  # the recipe's, if written
    with open(copy / "inference.yaml", "w") as f:
        f.write(text + "speech: !new:recipes.data.speech.SpeechConfig\n    floor_dbfs: -30.0\n"
                "    min_speech_seconds: 0.25\n")
    profiler = SpeakerProfilerInterface.from_folder(str(copy))
    assert profiler.hparams.speech.floor_dbfs == -30.0 and profiler.hparams.speech.min_speech_seconds == 0.25
    assert profiler.hparams.speech.threshold_db == 40.0  # the SpeechConfig default
    over = SpeakerProfilerInterface.from_folder(str(copy), overrides={"speech": {"floor_dbfs": -50.0}})
    assert over.hparams.speech.floor_dbfs == -50.0 and over.hparams.speech.min_speech_seconds == 0.25
    x = load_audio(demo_clips(root, 1)[0], SR)
    quiet = profiler.classify_signals([x * 10 ** (-40 / 20)])[0]  # all frames below -30 dBFS
    assert quiet["silent"] and quiet["speech_seconds"] < 0.25


def test_shard_crops_are_the_file_crops_and_hold_speech(label_space):
    """Shards crop like the file datasets (pipelines.training_crop, the speech module): a
    1.2 s utterance followed by 10 s of zeros never gives an all-silent crop."""
    import random

    from recipes.data.pipelines import training_crop
    from recipes.data.shards import shard_example

    sig = torch.cat([0.3 * torch.randn(int(1.2 * SR), generator=torch.Generator().manual_seed(0)), silence(10.0)])
    row = {"ID": "u1", "duration": str(sig.numel() / SR), "gender": "f", "age": "30", "age_group": ""}
    for seed in range(20):
        random.seed(seed)
        ex = shard_example({"json": row, "audio.npy": sig.numpy()}, label_space, SR, crop_seconds=2.0)
        random.seed(seed)
        assert ex["ok"] and torch.equal(ex["sig"], training_crop(sig, SR, 2.0, None, "u1"))
        assert ex["sig"].abs().max() > 0.01
    nan = sig.clone()
    nan[5] = float("nan")
    ex = shard_example({"json": row, "audio.npy": nan.numpy()}, label_space, SR, crop_seconds=2.0)
    assert not ex["ok"]  # an error (logged, dropped from its batch), never a crop of NaNs


def test_folder_exported_before_the_speech_options_loads_with_them(tiny_run, tmp_path):
    import shutil

    from recipes.inference.interface import SpeakerProfilerInterface

    _, out = tiny_run
    old = tmp_path / "exported"
    shutil.copytree(out / "pretrained", old)
    text = (old / "hyperparams.yaml").read_text()
    text = re.sub(r"^drop_non_speech:.*\n", "", re.sub(SPEECH_BLOCK, "", text, flags=re.M), flags=re.M)
    (old / "hyperparams.yaml").write_text(text)
    profiler = SpeakerProfilerInterface.from_folder(str(old), overrides={"speech": {"floor_dbfs": -50.0}})
    assert profiler.hparams.speech == {"floor_dbfs": -50.0}  # a plain dict, read with the defaults
    assert not profiler.classify_signals([silence(1.0)])[0]["n_speech_windows"]
