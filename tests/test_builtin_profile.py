"""The profile shipped in the repository (``builtin``: recipes/builtin_profile/, docs/builtin_profile.md):
it loads by name on a machine with no training, answers on a clip, and initialises a fine-tuning run."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo corpus: (folder, rows of its labels.csv)."""
    from local.make_demo_corpus import make_demo_corpus

    folder = tmp_path_factory.mktemp("builtin") / "demo"
    rows = list(csv.DictReader(open(make_demo_corpus(str(folder), 2, 2))))
    return folder, rows


def test_builtin_is_shipped_heads_only():
    """The shipped folder holds the heads; the encoder weights come from the wheel (no copy)."""
    from recipes.model_folder import BUILTIN_DIR, PRETRAINED_YAML, read_tree

    names = set(os.listdir(BUILTIN_DIR))
    assert {PRETRAINED_YAML, "heads.ckpt", "normalizer.ckpt", "custom_interface.py"} <= names
    assert "encoder.ckpt" not in names
    assert "encoder" not in read_tree(os.path.join(BUILTIN_DIR, PRETRAINED_YAML))["pretrainer"]["loadables"]
    assert sum(os.path.getsize(os.path.join(BUILTIN_DIR, n)) for n in names) < 5e6


def test_builtin_answers_by_name(demo):
    from recipes.inference.interface import SpeakerProfilerInterface

    folder, rows = demo
    profiler = SpeakerProfilerInterface.from_folder("builtin")
    assert profiler.label_space.age_sub == ["child", "teen", "20s", "30s", "40s", "50s", "60+"]
    res = profiler.classify_file(str(folder / rows[0]["path"]))
    assert not res["silent"]
    for task in ("gender", "age_sup", "age_sub"):
        probs = res[task]["probs"]
        assert res[task]["label"] in probs and abs(sum(probs.values()) - 1.0) < 1e-4
    # the same answer at 16 kHz as at the model's 8 kHz (the interface resamples)
    import torchaudio

    from recipes.data.audio import load_audio

    up = torchaudio.functional.resample(load_audio(str(folder / rows[0]["path"]), 8000), 8000, 16000)
    res16 = profiler.classify_signals([up], sample_rate=16000)[0]
    assert abs(res16["gender"]["probs"]["f"] - res["gender"]["probs"]["f"]) < 0.1


def test_infer_builtin_json(demo):
    folder, rows = demo
    clip = str(folder / rows[0]["path"])
    out = subprocess.run([sys.executable, "infer.py", "builtin", clip, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["file"] == clip and record["gender"]["label"] in ("f", "m")


def test_init_from_builtin_loads_its_heads_and_refuses_other_label_spaces(label_space):
    from recipes.heads import ProfilingHeads
    from recipes.init_from import init_from_folder
    from recipes.model_folder import BUILTIN_DIR
    from recipes.inference.interface import SpeakerProfilerInterface

    profiler = SpeakerProfilerInterface.from_folder("builtin")
    shipped = profiler.model.heads
    heads = ProfilingHeads(shipped.input_size, profiler.label_space, age_regression=shipped.age is not None)
    assert init_from_folder("builtin", {"heads": heads}, resuming=False)
    saved = torch.load(os.path.join(BUILTIN_DIR, "heads.ckpt"), map_location="cpu")
    assert all(torch.equal(heads.state_dict()[k], v) for k, v in saved.items())
    other = ProfilingHeads(shipped.input_size, label_space, age_regression=shipped.age is not None)
    with pytest.raises(ValueError, match="init_from builtin: its heads.ckpt does not fit this recipe's heads"):
        init_from_folder("builtin", {"heads": other}, resuming=False)
    with pytest.raises(FileNotFoundError, match="neither a train.py output folder"):
        init_from_folder(os.path.join(ROOT, "no_such_folder"), {"heads": heads}, resuming=False)


def test_fine_tune_builtin_on_a_csv(demo, tmp_path):
    """hparams/callcenter/builtin.yaml: a user's CSV, the shipped heads as the starting point."""
    folder, rows = demo
    with open(tmp_path / "calls.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "gender", "age"])
        w.writeheader()
        for r in rows:
            w.writerow({"path": str(folder / r["path"]), "speaker": r["speaker"], "gender": r["gender"],
                        "age": r["age"]})
    res = subprocess.run(
        [sys.executable, "train.py", "hparams/callcenter/builtin.yaml", f"--input_csv={tmp_path}/calls.csv",
         f"--output_folder={tmp_path}/out", "--number_of_epochs=1", "--batch_size=8", "--noprogressbar",
         "--ckpt_interval_minutes=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "initialised ['encoder', 'heads'] from builtin" in log
    assert os.path.isfile(tmp_path / "out" / "results.json")


def test_call_voiceprints_reuse_the_embeddings_of_a_ge2e_profile(demo, tiny_run):
    """The shipped profile's embedding is the GE2E voiceprint: a call embeds each window once."""
    from recipes.calls.voiceprint import Voiceprints
    from recipes.data.audio import load_audio
    from recipes.inference.interface import SpeakerProfilerInterface

    folder, rows = demo
    windows = [load_audio(str(folder / r["path"]), 8000)[:16000] for r in rows[:3]]
    profiler = SpeakerProfilerInterface.from_folder("builtin")
    prints = Voiceprints("ge2e", profiler.model, 8000)
    assert prints.same_as_model
    _, embs = profiler.run_windows(windows)
    fresh = prints.embed(windows)
    assert torch.allclose(prints.embed(windows, model_embeddings=embs), fresh, atol=1e-4)
    other = SpeakerProfilerInterface.from_folder(str(tiny_run[1]))  # a tiny ECAPA: its own embedding differs
    assert not Voiceprints("ge2e", other.model, 8000).same_as_model
