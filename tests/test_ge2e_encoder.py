"""The frozen pretrained GE2E teacher (recipes/encoders/ge2e.py): front-end, partials, weights,
padding invariance, freezing, and a demo training whose folder loads in the inference class."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

from recipes.encoders.ge2e import GE2EEncoder, GE2EFrontEnd, partial_starts, wheel_weights


def _wheel_present():
    try:
        wheel_weights()
        return True
    except FileNotFoundError:
        return False


needs_wheel = pytest.mark.skipif(not _wheel_present(), reason="resemblyzer wheel not installed "
                                 "(README line 1: pip install --no-deps resemblyzer==0.1.4)")


def test_front_end_matches_librosa_mel_power():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(16000)).astype(np.float32)  # -20 dBFS: no gain applied
    ref = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    ours = GE2EFrontEnd(sample_rate=16000)(torch.from_numpy(wav).unsqueeze(0))[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())


def test_front_end_raises_quiet_audio_only():
    fe = GE2EFrontEnd(sample_rate=16000)
    loud = 0.3 * torch.randn(1, 16000)
    quiet = loud / 100
    # a -50 dBFS copy is raised to -30 dBFS; a louder one (-10 dBFS) is left as it is
    level = lambda x: 10 * torch.log10((x ** 2).mean())  # noqa: E731
    assert abs(level(quiet) - (level(loud) - 40)) < 0.1
    ratio = fe(loud).sum() / fe(quiet).sum()
    gain_quiet = 10 ** ((-30 - float(level(quiet))) / 10)  # power gain given to the quiet copy
    assert abs(float(ratio) - 1e4 / gain_quiet) / (1e4 / gain_quiet) < 0.01


def test_partials_follow_the_wheel_rule():
    assert partial_starts(50) == [0]              # shorter than one partial: one, zero-padded
    assert partial_starts(200) == [0, 77]         # 2 s: the second covers 77 % of 1.6 s, kept
    assert partial_starts(190) == [0]             # ... 71 %: dropped
    starts = partial_starts(1000)
    assert starts[0] == 0 and all(b - a == 77 for a, b in zip(starts, starts[1:]))


@needs_wheel
def test_weights_loaded_frozen_and_random_twin_differs():
    enc = GE2EEncoder()
    state = torch.load(wheel_weights(), map_location="cpu")["model_state"]
    assert torch.equal(enc.lstm2.weight_hh_l0, state["lstm.weight_hh_l1"])
    assert torch.equal(enc.linear.weight, state["linear.weight"])
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training  # frozen: stays in eval mode inside a training Brain
    rand = enc.random_state_dict()
    assert not torch.equal(rand["lstm1.weight_ih_l0"], enc.lstm1.weight_ih_l0)


@needs_wheel
def test_padded_batch_equals_one_at_a_time_and_taps_are_utterance_level():
    fe, enc = GE2EFrontEnd(8000), GE2EEncoder().eval()
    torch.manual_seed(0)
    wavs = [0.1 * torch.randn(n) for n in (8000 * 3, 8000, 8000 * 5 // 2)]
    batch = torch.zeros(3, max(len(w) for w in wavs))
    for i, w in enumerate(wavs):
        batch[i, :len(w)] = w
    lens = torch.tensor([len(w) / batch.shape[1] for w in wavs])
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
             for n, m in enc.named_layers().items()]
    with torch.no_grad():
        together = enc(fe(batch), lens)
        for h in hooks:
            h.remove()
        alone = torch.cat([enc(fe(w.unsqueeze(0))) for w in wavs])
    # only the resampler's edge (last frame) differs from the padded batch
    torch.testing.assert_close(together, alone, atol=2e-3, rtol=0)
    assert torch.allclose(together.norm(dim=1), torch.ones(3))
    assert set(seen) == {"lstm1", "lstm2", "lstm3", "embedding"}
    assert all(v.shape == (3, 256) for v in seen.values())


@needs_wheel
def test_demo_training_trains_heads_only_and_loads(tmp_path):
    out, data = tmp_path / "out", tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, "train.py", "hparams/demo_ge2e.yaml", f"--output_folder={out}",
         f"--data_folder={data}", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3",
         "--number_of_epochs=1", "--noprogressbar"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with open(out / "results.json") as f:
        assert "gender" in json.load(f)["test"]
    # the frozen encoder embedded each whole training utterance once (the demo has one broken file)
    cache = torch.load(out / "encoder_cache.pt")["emb"]
    with open(out / "manifests" / "train.csv") as f:
        n_train = sum(1 for _ in f) - 1
    assert n_train - 2 <= len(cache) < n_train + 1 and len(cache) > 0
    assert all(v.shape == (256,) for v in cache.values())
    # once every training utterance is cached, training batches stop reading audio (not otherwise)
    skipped = "training batches read ids and labels only" in res.stdout + res.stderr
    assert skipped == (len(cache) == n_train), (len(cache), n_train)
    from recipes.inference.interface import SpeakerProfilerInterface

    prof = SpeakerProfilerInterface.from_folder(str(out))
    pretrained = GE2EEncoder()
    # the encoder is the wheel's, untouched by training; the heads are not their random init
    assert torch.equal(prof.model.encoder.lstm3.weight_ih_l0, pretrained.lstm3.weight_ih_l0)
    wav = sorted((data / "wav").glob("*.wav"))[0]
    result = prof.classify_file(str(wav))
    assert result["gender"]["label"] in ("f", "m")
    from recipes.inference.deploy import ExportableProfiler

    with pytest.raises(ValueError, match="cannot be exported"):  # a trace would freeze the partials
        ExportableProfiler(prof.model)
    control = SpeakerProfilerInterface.from_folder(str(out), random_init=True)
    assert not torch.equal(control.model.encoder.lstm3.weight_ih_l0, pretrained.lstm3.weight_ih_l0)
