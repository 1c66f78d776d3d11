"""Self-supervised encoders (recipes/encoders/ssl.py): a tiny random WavLM written by
local/make_tiny_ssl.py (transformers config + save_pretrained) is loaded through the same
``source`` path as a real checkpoint; nothing is downloaded (HF_HUB_OFFLINE)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
import torchaudio

from local.make_tiny_ssl import make_tiny_ssl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = ["--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3", "--noprogressbar", "--number_of_epochs=1"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(make_tiny_ssl(str(tmp_path_factory.mktemp("ssl") / "tiny_wavlm")))


def encoder(source, **kwargs):
    from recipes.encoders.ssl import SSLEncoder

    torch.manual_seed(0)
    return SSLEncoder(source, emb_dim=16, attention_channels=8, **kwargs)


def train(recipe, out, data, *extra):
    res = subprocess.run([sys.executable, "train.py", recipe, f"--output_folder={out}", f"--data_folder={data}",
                          *DEMO, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def ssl_run(tiny, tmp_path_factory):
    """hparams/demo_ssl.yaml (tiny WavLM, fine-tuned) for one epoch: (root, output folder)."""
    root = tmp_path_factory.mktemp("ssl_run")
    train("hparams/demo_ssl.yaml", root / "out", root / "demo", f"--ssl_source={tiny}")
    return root, root / "out"


def test_a_folder_and_a_cached_hub_name_load_through_one_path(tiny, tmp_path, monkeypatch):
    enc = encoder(tiny).eval()
    out = enc(torch.randn(3, 8000), torch.tensor([1.0, 0.8, 0.5]))
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    assert enc.ssl_rate == 16000 and enc.input_rate == 8000  # the checkpoint's rate, the recipe's
    assert list(enc.named_layers()) == ["layer0", "layer1", "layer2", "pooling", "embedding"]
    # a checkpoint name resolves to its snapshot in the Hugging Face cache, without network
    from huggingface_hub import constants

    snap = tmp_path / "hub" / "models--tiny--wavlm" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny, snap)
    (tmp_path / "hub" / "models--tiny--wavlm" / "refs").mkdir()
    (tmp_path / "hub" / "models--tiny--wavlm" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    by_name = encoder("tiny/wavlm").eval()
    assert torch.equal(by_name.ssl.model.encoder.layers[0].feed_forward.output_dense.weight,
                       enc.ssl.model.encoder.layers[0].feed_forward.output_dense.weight)


def test_frozen_trains_only_the_top_and_fine_tuning_keeps_the_cnn(tiny):
    frozen = encoder(tiny, freeze=True).train()
    assert not any(p.requires_grad for p in frozen.ssl.parameters())
    assert not frozen.ssl.model.training  # no dropout in a frozen model, even in a training stage
    frozen(torch.randn(2, 8000)).pow(2).sum().backward()
    assert frozen.layer_weights.grad is not None and frozen.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.ssl.parameters())
    tuned = encoder(tiny, freeze=False, freeze_feature_extractor=True).train()
    tuned(torch.randn(2, 8000)).pow(2).sum().backward()
    assert all(p.grad is None for p in tuned.ssl.model.feature_extractor.parameters())
    assert tuned.ssl.model.encoder.layers[-1].feed_forward.output_dense.weight.grad.abs().sum() > 0


def test_8k_input_is_resampled_to_the_checkpoint_rate(tiny):
    """The same (band-limited) signal at 8 and at 16 kHz gives close embeddings; the 8 kHz
    signal read as if it were 16 kHz (no resampling) does not."""
    t = torch.arange(16000) / 16000
    sig16 = sum(torch.sin(2 * torch.pi * f * t * (1 + 0.1 * t)) / k for k, f in enumerate((150, 420, 900, 2300), 1))
    sig16 = torchaudio.functional.resample(torchaudio.functional.resample(sig16, 16000, 8000), 8000, 16000)
    sig8 = torchaudio.functional.resample(sig16, 16000, 8000)
    at8 = encoder(tiny, input_rate=8000).eval()
    at16 = encoder(tiny, input_rate=16000).eval()
    at16.load_state_dict(at8.state_dict())
    with torch.no_grad():
        e8, e16, wrong = at8(sig8[None]), at16(sig16[None]), at16(sig8[None])

    def distance(a, b):  # relative
        return float((a - b).norm() / b.norm())

    assert distance(e8, e16) < 0.01  # measured 0.0008
    assert distance(wrong, e16) > 0.1  # measured 0.26


def test_a_missing_checkpoint_is_one_error_naming_the_source(tiny, tmp_path):
    from recipes.encoders.ssl import SSLSourceError

    with pytest.raises(SSLSourceError, match=r"ssl_source '.*no_such_model': no such folder \(looked for a folder "
                                             r"with config.json"):
        encoder(str(tmp_path / "no_such_model"))
    with pytest.raises(SSLSourceError, match=r"'nobody/no-such-ssl-model': no such folder, and no checkpoint "
                                             r"of that name in the Hugging Face cache"):
        encoder("nobody/no-such-ssl-model")
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(os.path.join(tiny, "config.json"), half)
    with pytest.raises(SSLSourceError, match=r"'.*half': the folder lacks preprocessor_config.json, the weights "
                                             r"\(model.safetensors"):
        encoder(str(half))
    # train.py: that message alone ("error: ..."), no traceback from transformers, nothing written
    res = subprocess.run([sys.executable, "train.py", "hparams/demo_ssl.yaml", f"--ssl_source={tmp_path / 'nope'}",
                          f"--output_folder={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"error: ssl_source '{tmp_path / 'nope'}': no such folder")
    assert not (tmp_path / "out").exists()


def test_trained_folder_answers_at_8_and_16_khz(ssl_run, tmp_path):
    """The 8 kHz demo folder, and the same network as a 16 kHz recipe's folder (its
    inference.yaml at sample_rate / input_rate 16000), each on a clip at 8 and at 16 kHz."""
    import glob

    import ruamel.yaml

    from recipes.data.audio import load_audio
    from recipes.inference.interface import SpeakerProfilerInterface
    from recipes.model_folder import export_pretrained

    root, out = ssl_run
    assert "SSLEncoder" in (out / "inference.yaml").read_text()
    folder16 = tmp_path / "at16k"
    shutil.copytree(out, folder16)
    yaml = ruamel.yaml.YAML()
    tree = yaml.load(folder16 / "inference.yaml")
    tree["sample_rate"], tree["encoder"]["input_rate"] = 16000, 16000
    yaml.dump(tree, folder16 / "inference.yaml")
    shutil.rmtree(folder16 / "pretrained")
    export_pretrained(str(folder16))  # the pretrained folder the inference class reads, from it
    sig8 = load_audio(sorted(glob.glob(str(root / "demo" / "wav" / "*.wav")))[0], 8000)
    sig16 = torchaudio.functional.resample(sig8, 8000, 16000)  # the same clip at 16 kHz
    embs = {}
    for model, folder in ((8000, out), (16000, folder16)):
        profiler = SpeakerProfilerInterface.from_folder(str(folder))
        assert profiler.sample_rate == profiler.model.encoder.input_rate == model
        for audio, sig in ((8000, sig8), (16000, sig16), ("16 kHz read as 8 kHz", sig16)):
            res = profiler.classify_signals([sig], sample_rate=8000 if isinstance(audio, str) else audio,
                                            dc_removed=True)[0]
            assert res["gender"]["label"] in ("f", "m")
            embs[model, audio] = torch.as_tensor(res["embedding"])

    def distance(a, b):  # relative
        return float((embs[a] - embs[b]).norm() / embs[b].norm())

    # one embedding whatever the model's and the audio's rate (windows are resampled one by one, the
    # speech decision runs at the model's rate: measured 0.05); a wrong rate is far off (measured 0.35-0.39)
    for key in embs:
        if isinstance(key[1], int):
            assert distance(key, (8000, 8000)) < 0.12, key
        else:
            assert distance(key, (8000, 8000)) > 0.25, key


def test_probing_taps_every_transformer_layer(ssl_run):
    from recipes.data.audio import load_audio
    from recipes.inference.model import ProfilerModel
    from recipes.probing.extract import extract
    import glob

    root, out = ssl_run
    wavs = [load_audio(p, 8000)[:8000] for p in sorted(glob.glob(str(root / "demo" / "wav" / "*.wav")))[:6]]
    batch = [(list("abcdef"), torch.stack(wavs), torch.ones(6))]
    ids, trained = extract(ProfilerModel.from_folder(str(out)), batch)
    _, random = extract(ProfilerModel.from_folder(str(out), random_init=True), batch)
    assert list(trained)[:5] == ["layer0", "layer1", "layer2", "pooling", "embedding"]
    for layer in ("layer0", "layer1", "layer2"):
        assert trained[layer].shape == (6, 32)  # hidden size, pooled over frames
    assert trained["pooling"].shape == (6, 64) and trained["embedding"].shape == (6, 64)
    assert abs(trained["layer2"] - trained["layer1"]).max() > 1e-3  # distinct layers
    assert abs(trained["layer1"] - random["layer1"]).max() > 1e-3  # the random-init twin differs


def test_mkd_with_an_ssl_teacher_and_an_ecapa_student(ssl_run):
    root, teacher = ssl_run
    out = root / "mkd"
    train("hparams/demo_mkd_ssl.yaml", out, root / "demo", f"--teacher_folder={teacher}")
    assert "SSLEncoder" in (out / "teacher" / "inference.yaml").read_text()  # the stored teacher
    student = (out / "inference.yaml").read_text()
    assert "EcapaEncoder" in student and "input_size: 128" in student  # heads on [student 64; teacher 64]
    assert os.path.isfile(out / "teacher_cache.pt") and os.path.isfile(out / "results.json")


def test_export_refuses_it_with_one_error(ssl_run, tmp_path):
    res = subprocess.run([sys.executable, "export.py", str(ssl_run[1]), "--out", str(tmp_path / "exp")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: SSLEncoder cannot be exported to TorchScript / ONNX")
