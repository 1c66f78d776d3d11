"""Inference interface (windows, silence, resampling, foreign_class), infer.py, export.py."""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

from conftest import ROOT
from recipes.data.audio import load_audio
from recipes.data.speech import keep_speech
from recipes.inference.windows import speech_windows, window_bounds


def demo_wav(root):
    return str(root / "demo" / "wav" / sorted(os.listdir(root / "demo" / "wav"))[0])


def test_windows_cover_and_silence_thresholds():
    assert window_bounds(5, 10, 4) == [(0, 5)]  # shorter than a window: one window
    b = window_bounds(25, 10, 4)
    assert b[0] == (0, 10) and b[-1] == (15, 25) and all(e - s == 10 for s, e in b)
    wav = torch.zeros(8000 * 10)
    wav[:8000 * 3] = 0.3 * torch.randn(8000 * 3)
    # the speech (3 s) is cut into windows; the 7 s of silence are dropped first
    windows, n_all, seconds = speech_windows(wav, 8000, 2.0, 1.0)
    assert n_all == 9 and len(windows) == 2 and abs(seconds - 3.0) < 1e-9
    assert torch.equal(torch.cat([windows[0], windows[1][-8000:]]), wav[:8000 * 3])
    # without dropping: the windows of the whole recording that hold a speech frame
    windows, n_all, _ = speech_windows(wav, 8000, 2.0, 1.0, drop_non_speech=False)
    assert n_all == 9 and len(windows) == 3
    assert speech_windows(wav, 8000, 2.0, 1.0, {"min_speech_seconds": 3.5})[0] == []  # too little speech


def test_interface_batch_resample_silence(tiny_run):
    from recipes.inference.model import ProfilerModel
    from recipes.inference.interface import SpeakerProfilerInterface

    root, out = tiny_run
    profiler = SpeakerProfilerInterface.from_folder(str(out), overrides={"window_seconds": 2.0, "hop_seconds": 1.0})
    path = demo_wav(root)
    speech, sr = sf.read(path, dtype="float32")  # 16 kHz files, the model runs at 8 kHz
    assert sr == 16000 and profiler.sample_rate == 8000
    one = torch.from_numpy(np.ascontiguousarray(speech.mean(axis=1) if speech.ndim == 2 else speech))
    gap = torch.zeros(sr * 6)
    long = torch.cat([one, gap, one])  # speech, 6 s of digital silence, speech
    batch = torch.nn.utils.rnn.pad_sequence([long, torch.zeros(len(long))], batch_first=True)
    res = profiler.classify_batch(batch, torch.tensor([1.0, 0.5]), sample_rate=sr)
    assert not res[0]["silent"] and 0 < res[0]["n_speech_windows"] < res[0]["n_windows"]
    for task, names in profiler.class_names.items():
        assert res[0][task]["label"] in names
        assert abs(sum(res[0][task]["probs"].values()) - 1.0) < 1e-5
    assert res[0]["embedding"].shape == (64,)
    assert res[1]["silent"] and res[1]["n_speech_windows"] == 0 and res[1]["embedding"] is None
    assert all(res[1][t]["label"] is None for t in profiler.class_names)
    # a 16 kHz waveform + its rate == the file (resampled on load); a one-window file ==
    # the plain model on its speech (non-speech frames dropped)
    whole = SpeakerProfilerInterface.from_folder(str(out), overrides={"window_seconds": 60.0})
    by_file = whole.classify_file(path)
    by_wave = whole.classify_batch(one, sample_rate=sr)[0]
    assert by_file["n_windows"] == 1 and by_file["gender"]["probs"] == by_wave["gender"]["probs"]
    speech_only = keep_speech(load_audio(path, 8000), 8000, whole.hparams.speech)  # the folder's speech decision
    probs, _ = ProfilerModel.from_folder(str(out))(speech_only[None])  # the checkpoint, directly
    for task in ("gender", "age_sup", "age_sub"):
        assert torch.allclose(torch.tensor(list(by_file[task]["probs"].values())), probs[task][0], atol=1e-5)


def test_foreign_class_loads_the_pretrained_folder(tiny_run):
    from speechbrain.inference.interfaces import foreign_class

    from recipes.inference.interface import SpeakerProfilerInterface
    from recipes.model_folder import exported_checkpoint

    root, out = tiny_run
    pre = out / "pretrained"  # written by train.py
    assert exported_checkpoint(str(pre)).startswith("CKPT+")
    model = foreign_class(source=str(pre), pymodule_file="custom_interface.py",
                          classname="SpeakerProfilerInterface")
    assert type(model).__name__ == "SpeakerProfilerInterface"
    a = model.classify_file(demo_wav(root))
    b = SpeakerProfilerInterface.from_folder(str(out)).classify_file(demo_wav(root))
    assert a["gender"] == b["gender"] and a["age_sub"] == b["age_sub"]


def test_infer_cli_json_windows_and_silent_file(tiny_run, tmp_path):
    root, out = tiny_run
    silent = str(tmp_path / "silent.wav")
    sf.write(silent, np.zeros(16000 * 3, dtype=np.float32), 16000)
    res = subprocess.run([sys.executable, "infer.py", str(out), demo_wav(root), silent, "--json",
                          "--window", "1", "--hop", "0.5", "--embedding"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert rows[0]["n_windows"] > 2 and rows[0]["gender"]["label"] in ("f", "m") and len(rows[0]["embedding"]) == 64
    assert rows[1]["silent"] and rows[1]["gender"]["label"] is None
    assert "no speech" in res.stderr


def test_infer_cli_json_records_every_input_and_fails_on_bad_ones(tiny_run, tmp_path):
    root, out = tiny_run
    missing, folder = str(tmp_path / "missing.wav"), str(tmp_path)
    res = subprocess.run([sys.executable, "infer.py", str(out), missing, demo_wav(root), folder, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]  # some input failed
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [r["file"] for r in rows] == [missing, demo_wav(root), folder]  # one record each, in order
    assert "not found" in rows[0]["error"] and "directory" in rows[2]["error"]
    assert "error" not in rows[1] and rows[1]["gender"]["label"] in ("f", "m")


def test_age_pair_respects_the_hierarchy(tiny_run):
    """An age-sup head that contradicts the age-sub head: the reported pair is the best
    consistent one, the raw argmaxes stay in the dict, and the table says so."""
    from recipes.inference.records import table_row
    from recipes.inference.interface import SpeakerProfilerInterface, consistent_age_pair

    parent = torch.tensor([0, 0, 1, 1])  # sub -> sup
    assert consistent_age_pair(torch.tensor([0.6, 0.4]), torch.tensor([0.1, 0.1, 0.7, 0.1]), parent) == (1, 2)
    assert consistent_age_pair(torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.3, 0.5, 0.1]), parent) == (0, 1)
    root, out = tiny_run
    profiler = SpeakerProfilerInterface.from_folder(str(out))
    names, ls = profiler.class_names, profiler.label_space
    for res in profiler.classify_files([str(p) for p in sorted((root / "demo" / "wav").iterdir())[:6]]):
        assert ls.sub_to_sup[res["age_sub"]["label"]] == res["age_sup"]["label"]
        assert res["hierarchy_adjusted"] == (ls.sub_to_sup[res["age_sub_raw"]] != res["age_sup_raw"])
    before = profiler.classify_file(demo_wav(root))
    other = next(s for s in names["age_sup"] if s != ls.sub_to_sup[before["age_sub_raw"]])
    with torch.no_grad():  # force the age-sup head onto the super-group the age-sub argmax is not in
        profiler.model.heads.heads["age_sup"].classifier.bias[names["age_sup"].index(other)] += 100.0
    res = profiler.classify_file(demo_wav(root))
    assert res["age_sup_raw"] == other and res["age_sub_raw"] == before["age_sub_raw"]
    assert res["hierarchy_adjusted"] and res["age_sup"]["label"] == other
    inside = {s: p for s, p in res["age_sub"]["probs"].items() if ls.sub_to_sup[s] == other}
    assert res["age_sub"]["label"] == max(inside, key=inside.get)  # best sub-group inside `other`
    assert res["age_sub"]["probs"] == before["age_sub"]["probs"]  # the probabilities are untouched
    assert "hierarchy-adjusted (raw: " in table_row("x.wav", res)
    assert ("hierarchy-adjusted" in table_row("x.wav", before)) == before["hierarchy_adjusted"]


def test_random_init_twin_keeps_the_feature_statistics(tiny_run):
    """The probing control: same architecture and normaliser, fresh weights, the same draw as
    instantiating the folder's YAML once after seeding."""
    from recipes.inference.model import ProfilerModel
    from recipes.inference.interface import SpeakerProfilerInterface

    root, out = tiny_run
    trained = SpeakerProfilerInterface.from_folder(str(out)).model
    torch.manual_seed(7)
    twin = SpeakerProfilerInterface.from_folder(str(out), random_init=True).model
    torch.manual_seed(7)
    direct = ProfilerModel.from_folder(str(out), random_init=True)
    assert torch.equal(twin.mean_var_norm.glob_mean, trained.mean_var_norm.glob_mean)
    for (name, a), b, c in zip(twin.encoder.state_dict().items(), trained.encoder.state_dict().values(),
                               direct.encoder.state_dict().values()):
        assert torch.equal(a, c), name
    assert not all(torch.equal(a, b) for a, b in zip(twin.heads.parameters(), trained.heads.parameters()))


def test_export_torchscript_onnx_int8(tiny_run, tmp_path):
    import onnxruntime

    from recipes.inference.deploy import example_input
    from recipes.inference.model import ProfilerModel

    root, out = tiny_run
    exp = tmp_path / "exported"
    res = subprocess.run([sys.executable, "export.py", str(out), "--out", str(exp), "--int8"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    report = json.loads((exp / "export.json").read_text())
    assert report["max_abs_diff_vs_pytorch"]["torchscript"] < 1e-4
    assert report["max_abs_diff_vs_pytorch"]["onnx"] < 1e-4
    assert report["max_abs_diff_vs_pytorch"]["torch_export"] < 1e-4
    assert set(report["int8_accuracy"]["int8"]) == {"gender", "age_sup", "age_sub"}
    # independent check on another batch size and length than the export's
    wavs, lens = example_input(8000, batch=4, seconds=5.0, seed=7)
    probs, emb = ProfilerModel.from_folder(str(out))(wavs, lens)
    ref = [probs["gender"], probs["age_sup"], probs["age_sub"], emb]
    with torch.no_grad():
        ts = torch.jit.load(str(exp / "model.pt"))(wavs, lens)
        q_ts = torch.jit.load(str(exp / "model_int8.pt"))(wavs, lens)
    sess = onnxruntime.InferenceSession(str(exp / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"wavs": wavs.numpy(), "lengths": lens.numpy()})
    for r, t, o in zip(ref, ts, onnx_out):
        assert float((r - t).abs().max()) < 1e-4
        assert float((r - torch.from_numpy(o)).abs().max()) < 1e-4
    q_onnx = onnxruntime.InferenceSession(str(exp / "model_int8.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"wavs": wavs.numpy(), "lengths": lens.numpy()})
    for q in (q_ts, [torch.from_numpy(x) for x in q_onnx]):
        for p in q[:3]:
            assert torch.isfinite(p).all() and torch.allclose(p.sum(-1), torch.ones(4), atol=1e-4)
    # the export folder is also a SpeechBrain pretrained folder
    from recipes.inference.interface import SpeakerProfilerInterface
    assert SpeakerProfilerInterface.from_folder(str(exp)).classify_file(demo_wav(root))["gender"]["label"] in ("f", "m")
