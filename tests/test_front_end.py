"""The front-end in front of every model: a DC offset is removed, clipping is measured and
reported, and the speech decision (detector: silero) does not take noise, hum or tones for a
person while it keeps speech."""

import os

import numpy as np
import pytest
import torch

from conftest import ROOT

SR = 8000
CLIP = os.path.join(ROOT, "tests", "fixtures", "legacy_clip.wav")


def tone_speech(seconds=2.0):
    """The demo corpus's kind of voiced sound (the fixture clip, looped)."""
    from recipes.data.audio import load_audio

    x = load_audio(CLIP, SR)
    return x.repeat(int(np.ceil(seconds * SR / x.numel())))[: int(seconds * SR)]


def test_load_audio_removes_the_dc_offset(tmp_path):
    import soundfile as sf

    from recipes.data.audio import load_audio

    x = tone_speech().numpy()
    sf.write(tmp_path / "clean.wav", x, SR, subtype="FLOAT")
    sf.write(tmp_path / "dc.wav", np.clip(x + 0.2, -1, 1), SR, subtype="FLOAT")
    clean, shifted = load_audio(str(tmp_path / "clean.wav"), SR), load_audio(str(tmp_path / "dc.wav"), SR)
    settled = int(0.1 * SR)  # the 20 Hz high-pass settles within tens of ms of the step at the start
    assert abs(float(shifted[settled:].mean())) < 1e-3
    assert torch.allclose(shifted[settled:], clean[settled:], atol=1e-3)


def test_a_dc_offset_changes_neither_the_speech_decision_nor_the_answer(tiny_run):
    from recipes.data.speech import speech_seconds
    from recipes.inference.interface import SpeakerProfilerInterface

    x = tone_speech()
    assert speech_seconds(x + 0.3, SR) == speech_seconds(x, SR)
    assert speech_seconds(torch.zeros(SR * 2) + 0.3, SR) == 0.0  # a constant offset is no speech
    profiler = SpeakerProfilerInterface.from_folder(str(tiny_run[1]))
    clean, shifted = profiler.classify_signals([x, x + 0.1])
    for task in ("gender", "age_sub"):
        assert clean[task]["probs"] == pytest.approx(shifted[task]["probs"], abs=1e-4)


def test_clipping_is_measured_and_reported(tiny_run):
    from recipes.data.audio import clipped_fraction
    from recipes.inference.interface import SpeakerProfilerInterface

    x = tone_speech()
    clipped = (x * 30).clamp(-1, 1)
    assert clipped_fraction(x) == 0.0 and clipped_fraction(clipped) > 0.1
    res = SpeakerProfilerInterface.from_folder(str(tiny_run[1])).classify_signals([x, clipped])
    assert res[0]["clipped_fraction"] == 0.0 and res[1]["clipped_fraction"] > 0.1


@pytest.mark.parametrize("kind", ["white noise", "hum", "dtmf"])
def test_the_trained_detector_rejects_what_the_energy_rule_takes_for_speech(kind):
    from recipes.data.speech import SpeechConfig, speech_seconds

    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    sound = {"white noise": 0.1 * rng.standard_normal(t.size),
             "hum": sum(0.1 / k * np.sin(2 * np.pi * 50 * k * t) for k in range(1, 6)),
             "dtmf": 0.3 * (np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1336 * t)) * ((t * 5) % 1 < 0.5)}[kind]
    x = torch.as_tensor(sound, dtype=torch.float32)
    assert speech_seconds(x, SR, SpeechConfig(detector="energy")) > 1.0  # the energy rule alone
    assert speech_seconds(x, SR, SpeechConfig(detector="silero")) < 0.5  # not a person: "silent"


def test_the_trained_detector_keeps_voiced_sound():
    from recipes.data.speech import SpeechConfig, speech_seconds

    x = tone_speech(3.0)
    assert speech_seconds(x, SR, SpeechConfig(detector="silero")) > 1.0


def test_white_noise_is_not_profiled_as_a_person(tiny_run):
    """A folder trained with the current recipe (detector: silero) answers "silent" on noise."""
    from recipes.inference.interface import SpeakerProfilerInterface

    profiler = SpeakerProfilerInterface.from_folder(str(tiny_run[1]))
    assert profiler.hparams.speech.detector == "silero"
    noise = 0.1 * torch.randn(3 * SR, generator=torch.Generator().manual_seed(0))
    res = profiler.classify_signals([noise, tone_speech(3.0)])
    assert res[0]["silent"] and res[0]["gender"]["label"] is None
    assert not res[1]["silent"]


def test_an_unknown_detector_is_an_error():
    from recipes.data.speech import SpeechConfig

    with pytest.raises(ValueError, match="speech detector must be one of"):
        SpeechConfig(detector="webrtc")


def test_long_signals_run_the_detector_in_segments_with_the_same_decision():
    """Above VAD_BATCH_ABOVE_SECONDS the Silero model runs on warmed-up segments as one batch:
    the same speech / non-speech decision as one sequential pass on voiced sound and pauses,
    and still none on noise."""
    from recipes.data import speech

    voiced = tone_speech(2.0)
    pause = torch.zeros(SR)
    x = torch.cat([torch.cat([voiced, pause]) for _ in range(10)])  # 30 s: batched
    assert x.numel() > speech.VAD_BATCH_ABOVE_SECONDS * SR
    cfg = speech.SpeechConfig(detector="silero")
    frame = speech.frame_length(SR, cfg)
    n = x.numel() // frame
    batched = speech.vad_frame_mask(x, SR, n, frame, 0.5)
    old = speech.VAD_BATCH_ABOVE_SECONDS
    speech.VAD_BATCH_ABOVE_SECONDS = 1e9  # one sequential pass
    try:
        sequential = speech.vad_frame_mask(x, SR, n, frame, 0.5)
    finally:
        speech.VAD_BATCH_ABOVE_SECONDS = old
    assert batched.size == sequential.size == n
    assert (batched == sequential).mean() > 0.95
    assert 15.0 < batched.sum() * frame / SR < 25.0  # the 20 s of voiced sound, not the pauses
    noise = 0.1 * torch.randn(30 * SR, generator=torch.Generator().manual_seed(1))
    assert speech.vad_frame_mask(noise, SR, n, frame, 0.5).mean() < 0.05


def test_the_trained_detector_leaves_the_torch_thread_count_alone():
    """Importing the silero-vad wheel sets the process to one torch thread; after the first
    speech decision (preparation screens every clip before training) the count is the caller's."""
    import subprocess
    import sys

    code = ("import sys, torch\nsys.path.insert(0, '.')\ntorch.set_num_threads(2)\n"
            "from recipes.data.speech import SpeechConfig, speech_mask\n"
            "speech_mask(0.1 * torch.randn(16000), 8000, SpeechConfig(detector='silero'))\n"
            "print(torch.get_num_threads())\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "2"


def test_the_detector_gives_each_thread_the_same_answer_as_one_thread():
    """The Silero model keeps a recurrent state: service worker threads deciding speech at the
    same time each get the answer a single thread gets (a shared model would mix their states)."""
    from concurrent.futures import ThreadPoolExecutor

    from recipes.data import speech

    frame = speech.frame_length(SR, speech.SpeechConfig(detector="silero"))
    g = torch.Generator().manual_seed(0)
    signals = []
    for k in range(4):  # sound and pauses at different places in each, under 20 s (one sequence)
        parts = [tone_speech(1.0 + 0.5 * k) if i % 2 == 0 else 0.01 * torch.randn(SR * (k + 1), generator=g)
                 for i in range(6)]
        signals.append(torch.cat(parts))
    alone = [speech.vad_frame_mask(x, SR, x.numel() // frame, frame, 0.5) for x in signals]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda x: speech.vad_frame_mask(x, SR, x.numel() // frame, frame, 0.5), signals))
            assert all((a == b).all() for a, b in zip(alone, together))
