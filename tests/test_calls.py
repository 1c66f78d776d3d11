"""Calls: the caller profiled, not the call. Calls assembled from two synthetic demo speakers
(an adult man as the agent, a girl as the caller): stereo with crosstalk, mono,
enrolled agents, identical channels, and bad calls."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT

SR = 8000


@pytest.fixture(scope="module")
def call_set(tiny_run, tmp_path_factory):
    """Calls made from the tiny run's demo corpus; returns (model folder, paths, truth)."""
    from recipes.data.audio import load_audio

    root, out = tiny_run
    with open(root / "demo" / "corpus.csv") as f:
        rows = list(csv.DictReader(f))
    by = {}
    for r in rows:
        by.setdefault(r["speaker"], []).append(str(root / "demo" / r["path"]))
    agent, caller = by["adult_m0"], by["child_f1"]  # voices far apart: GE2E hears synthetic voices as close
    d = tmp_path_factory.mktemp("calls")
    gap = np.zeros(SR // 2, dtype=np.float32)
    left, right, mono, turns = [], [], [], []
    t = 0.0
    for i in range(4):  # agent, caller, agent, caller (the demo has 3 clips a speaker: the third enrols the agent)
        who = "agent" if i % 2 == 0 else "caller"
        x = load_audio((agent if who == "agent" else caller)[i // 2], SR).numpy()
        own, other = (left, right) if who == "agent" else (right, left)
        own.append(x)
        other.append(x * 10 ** (-20 / 20))  # crosstalk 20 dB lower
        mono.append(x)
        turns.append((who, t, t + len(x) / SR))
        t += len(x) / SR + 0.5
        for part in (left, right, mono):
            part.append(gap)
    paths = {"stereo": d / "stereo.wav", "mono": d / "mono.wav", "same": d / "same.wav",
             "caller_alone": d / "caller_alone.wav", "silence": d / "silence.wav", "empty": d / "empty.wav",
             "truncated": d / "truncated.wav"}
    sf.write(paths["stereo"], np.stack([np.concatenate(left), np.concatenate(right)], 1), SR, subtype="PCM_16")
    sf.write(paths["mono"], np.concatenate(mono), SR, subtype="PCM_16")
    sf.write(paths["same"], np.stack([np.concatenate(mono)] * 2, 1), SR, subtype="PCM_16")
    sf.write(paths["caller_alone"], np.concatenate([load_audio(p, SR).numpy() for p in caller[:2]]), SR)
    sf.write(paths["silence"], np.zeros(SR * 5, dtype=np.float32), SR)
    paths["empty"].write_bytes(b"")
    raw = paths["stereo"].read_bytes()
    paths["truncated"].write_bytes(raw[: len(raw) // 3])
    agents = d / "agents"
    agents.mkdir()
    sf.write(agents / "adult_m0.wav", load_audio(agent[2], SR).numpy(), SR)
    return out, paths, turns, agents


def profiler_for(folder, **call):
    from recipes.inference.interface import SpeakerProfilerInterface

    return SpeakerProfilerInterface.from_folder(str(folder), overrides={"call": call} if call else None)


def test_stereo_caller_is_the_caller_channel_and_crosstalk_is_left_out(call_set):
    out, paths, turns, _ = call_set
    profiler = profiler_for(out)
    records = profiler.profile_call(str(paths["stereo"]), caller_channel="right")
    roles = {r["role"]: r for r in records}
    assert set(roles) == {"caller", "agent"} and roles["caller"]["speaker"] == "right"
    alone = profiler.classify_file(str(paths["caller_alone"]))
    assert roles["caller"]["gender"]["label"] == alone["gender"]["label"]
    assert roles["caller"]["gender"]["prob"] == pytest.approx(alone["gender"]["prob"], abs=0.1)
    caller_turns = [(a, b) for who, a, b in turns if who == "caller"]
    for a, b in roles["caller"]["segments"]:  # the agent's crosstalk on the right channel is not the caller
        assert any(a >= ta - 0.3 and b <= tb + 0.3 for ta, tb in caller_turns), (a, b)
    assert roles["caller"]["call"]["mode"] == "stereo"


def test_mono_call_voices_told_apart_with_rttm(call_set, tmp_path):
    out, paths, turns, _ = call_set
    profiler = profiler_for(out)
    records = profiler.profile_call(str(paths["mono"]), rttm=str(tmp_path))
    assert len(records) == 2 and {r["role"] for r in records} == {"unknown"}
    agent_turns = [(a, b) for who, a, b in turns if who == "agent"]
    first = records[0]  # S1 speaks first: the agent
    inside = sum(min(b, tb) - max(a, ta) for a, b in first["segments"] for ta, tb in agent_turns if min(b, tb) > max(a, ta))
    assert inside >= 0.8 * first["speech_seconds"]
    lines = (tmp_path / "mono.rttm").read_text().splitlines()
    assert lines and all(line.startswith("SPEAKER mono 1 ") for line in lines)


def test_enrolled_agent_makes_the_other_voice_the_caller(call_set):
    out, paths, _, agents = call_set
    profiler = profiler_for(out)
    records = profiler.profile_call(str(paths["mono"]), agents=str(agents))
    roles = {r["role"]: r for r in records}
    assert roles["agent"]["agent"] == "adult_m0" and roles["agent"]["speaker"] == "S1"
    assert roles["caller"]["speaker"] == "S2"


def test_a_stereo_file_with_identical_channels_is_a_mono_call(call_set):
    out, paths, _, _ = call_set
    records = profiler_for(out).profile_call(str(paths["same"]), caller_channel="left")
    call = records[0]["call"]
    assert call["mode"] == "mono" and any("same signal" in n for n in call["notes"])
    assert any("caller_channel left ignored" in n for n in call["notes"])


def test_bad_calls_get_records_and_the_others_are_profiled(call_set):
    out, paths, _, _ = call_set
    files = [paths["silence"], paths["empty"], paths["truncated"], paths["stereo"], paths["empty"].parent / "none.wav"]
    res = subprocess.run([sys.executable, "infer.py", str(out), *map(str, files), "--speakers", "auto",
                          "--caller-channel", "right", "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in res.stderr and res.returncode == 1
    records = [json.loads(line) for line in res.stdout.splitlines()]
    by_file = {}
    for r in records:
        by_file.setdefault(os.path.basename(r["file"]), []).append(r)
    assert by_file["silence.wav"][0]["silent"] and by_file["silence.wav"][0]["speaker"] is None
    assert "0 bytes" in by_file["empty.wav"][0]["error"]
    assert "truncated WAV" in by_file["truncated.wav"][0]["error"]
    assert "not found" in by_file["none.wav"][0]["error"]
    assert {r["role"] for r in by_file["stereo.wav"]} == {"caller", "agent"}
    for r in by_file["stereo.wav"]:
        assert {"file", "speaker", "role", "speech_seconds", "segments", "gender", "age_sup", "age_sub"} <= set(r)


def test_call_options_are_checked():
    from recipes.calls.call import parse_caller_channel
    from recipes.calls.options import CallOptions

    assert parse_caller_channel("Right") == 1 and parse_caller_channel(0) == 0
    with pytest.raises(ValueError, match="caller_channel must be"):
        parse_caller_channel("middle")
    with pytest.raises(ValueError, match="max_speakers"):
        CallOptions(max_speakers=0)


@pytest.mark.parametrize("kind", ["stereo", "mono"])
def test_streaming_ends_with_the_offline_answer(call_set, kind):
    """Chunks of 20 ms to 3 s as they arrive; after the last one the records equal the
    offline path's on the same audio (with its blocks the stream's size)."""
    from recipes.calls.call import profile_call
    from recipes.calls.streaming import StreamingProfiler

    out, paths, _, _ = call_set
    profiler = profiler_for(out)
    audio, rate = sf.read(str(paths[kind]), dtype="float32", always_2d=True)
    caller = "right" if kind == "stereo" else None
    stream = StreamingProfiler(profiler, rate, channels=audio.shape[1], caller_channel=caller)
    rng = np.random.default_rng(0)
    pos, seen = 0, []
    while pos < len(audio):
        n = int(rng.choice([int(0.02 * rate), int(0.5 * rate), int(3 * rate)]))
        seen.append(stream.push(audio[pos:pos + n]))
        pos += n
    final = stream.finish()
    assert any(seen[:-1]) and all(isinstance(r, list) for r in seen)  # running profiles came before the end
    opts = dict(profiler.hparams.call.to_dict(), block_seconds=profiler.hparams.call.stream_block_seconds)
    offline = profile_call(profiler, str(paths[kind]), caller_channel=caller, options=opts)
    assert [r["speaker"] for r in final] == [r["speaker"] for r in offline]
    for a, b in zip(final, offline):
        assert a["role"] == b["role"] and a["segments"] == b["segments"]
        assert a["gender"]["probs"] == pytest.approx(b["gender"]["probs"], abs=1e-5)
        assert isinstance(a["decided"], bool)


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW"])
def test_g711_calls_at_another_rate(call_set, tmp_path, subtype):
    """A G.711 (mu-law / A-law) WAV at 16 kHz: read in blocks, resampled, the same parties."""
    import torch
    import torchaudio.functional as AF

    out, paths, _, _ = call_set
    audio, rate = sf.read(str(paths["stereo"]), dtype="float32", always_2d=True)
    up = AF.resample(torch.from_numpy(audio.T.copy()), rate, 16000).T.numpy()
    path = tmp_path / f"call_{subtype}.wav"
    sf.write(path, up, 16000, subtype=subtype)
    records = profiler_for(out).profile_call(str(path), caller_channel="right")
    assert {r["role"]: r["speaker"] for r in records} == {"caller": "right", "agent": "left"}
    assert records[0]["call"]["channels"] == 2


def test_channels_are_one_signal_only_at_a_like_level():
    """A copy at another gain or polarity is one signal; crosstalk 20 dB lower is not."""
    import torch

    from recipes.calls.reader import channels_identical

    x = torch.randn(8000, generator=torch.Generator().manual_seed(0))
    assert channels_identical(torch.stack([x, 0.9 * x])) and channels_identical(torch.stack([x, -x]))
    assert not channels_identical(torch.stack([x, 0.1 * x]))  # the other party's crosstalk
    assert not channels_identical(torch.stack([x, torch.randn(8000)]))


def test_segments_are_the_speech_inside_the_windows_not_the_pauses():
    from recipes.calls.diarize import merge_close, within

    spans = [[0.0, 4.0], [6.0, 9.0]]              # what a speaker's windows cover
    speech = [(0.5, 1.5), (1.7, 3.0), (3.9, 6.5), (8.0, 8.02), (8.5, 10.0)]  # its stream's speech frames
    parts = within(spans, speech)
    assert parts == [[0.5, 1.5], [1.7, 3.0], [3.9, 4.0], [6.0, 6.5], [8.5, 9.0]]  # the 20 ms blip left out
    assert merge_close(parts, 0.5) == [[0.5, 3.0], [3.9, 4.0], [6.0, 6.5], [8.5, 9.0]]
    assert merge_close(parts, 1.0) == [[0.5, 4.0], [6.0, 6.5], [8.5, 9.0]]


def test_stereo_keeps_a_quiet_party_over_the_other_lines_noise(call_set):
    """The caller's quiet frames are about as loud as the agent channel's line noise: they stay the
    caller's (the other channel is compared above its noise floor), with its pauses inside the
    turn; the caller's 20 dB crosstalk in the agent channel and overlapped speech stay out."""
    import torch

    from recipes.calls.call import CallSession, runs, stream_masks
    from recipes.data.audio import load_audio
    from recipes.data.speech import SpeechConfig, frame_length, speech_mask

    out, paths, turns, _ = call_set
    caller_alone = load_audio(str(paths["caller_alone"]), SR)
    caller = torch.cat([caller_alone, torch.zeros(SR)]) / caller_alone.abs().max() * 0.5
    rms = float(caller.pow(2).mean().sqrt())
    g = torch.Generator().manual_seed(0)
    left = 0.1 * caller + rms * 10 ** (-18 / 20) * torch.randn(caller.numel(), generator=g)  # crosstalk + noise
    right = caller + rms * 10 ** (-35 / 20) * torch.randn(caller.numel(), generator=g)
    cfg = SpeechConfig(detector="silero")
    own_speech = speech_mask(right, SR, cfg).numpy()
    masks = stream_masks(torch.stack([left, right]), SR, cfg, 10.0, mono=False)
    caller_mask, blocked = masks[1]
    assert caller_mask.sum() >= 0.9 * own_speech.sum() > 0
    assert masks[0][0].sum() <= 0.05 * own_speech.sum()  # the crosstalk is not the agent channel's party
    # overlap: both channels carry speech at a like level -> neither party's
    both = stream_masks(torch.stack([caller, 0.8 * caller]), SR, cfg, 10.0, mono=False)
    assert both[0][0].sum() == 0 and both[1][0].sum() == 0
    # the caller's profile reads its turns whole (pauses inside them filled), not 20 ms slivers
    session = CallSession(profiler_for(out), 2, False, caller_channel="right")
    session.add_block(0.0, torch.stack([left, right]))
    n = frame_length(SR, cfg)
    longest = max(b - a for a, b in runs(own_speech)) * n / SR
    caller_rec = next(r for r in session.records("quiet.wav") if r["role"] == "caller")
    assert caller_rec["speech_seconds"] >= 0.8 * own_speech.sum() * n / SR and longest > 0


def _voices(rng, centre, n, spread=0.15):
    x = centre + spread * rng.standard_normal((n, centre.size))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _unit(v):
    return v / np.linalg.norm(v)


def test_a_caller_clustered_into_an_enrolled_voice_is_split_off():
    """Mono, agent and caller clustered as one voice beside the IVR prompt: every voice is an
    enrolled one, so the half farther from the agent's enrolled voiceprint becomes the caller."""
    from recipes.calls.roles import split_enrolled_voice

    rng = np.random.default_rng(0)
    d = 64
    agent, ivr = _unit(rng.standard_normal(d)), _unit(rng.standard_normal(d))
    caller = _unit(agent + 0.9 * _unit(rng.standard_normal(d)))  # a voice close to the agent's
    embs = np.concatenate([_voices(rng, ivr, 5, 0.05), _voices(rng, agent, 12, 0.05), _voices(rng, caller, 8, 0.05)])
    labels = np.array([0] * 5 + [1] * 20)
    enrolled = np.stack([agent, ivr])
    out = split_enrolled_voice(embs, labels, enrolled, threshold=0.7, margin=0.05)
    assert out.max() == 2 and (out[17:] == 2).all() and (out[:17] != 2).all()
    # a third voice that sounds like an enrolled one (a piece of the prompt): still split
    piece = _voices(rng, ivr, 3, 0.05)
    with_piece = split_enrolled_voice(np.concatenate([embs, piece]), np.concatenate([labels, [2] * 3]), enrolled, 0.7, 0.05)
    assert with_piece.max() == 3 and (with_piece[17:25] == 3).all()
    # a voice unlike the enrolled ones was heard: nothing is split
    other = _voices(rng, _unit(agent + 2.0 * _unit(rng.standard_normal(d))), 8, 0.05)
    three = np.concatenate([labels, [2] * 8])
    assert (split_enrolled_voice(np.concatenate([embs, other]), three, enrolled, 0.7, 0.05) == three).all()


def test_a_voice_is_split_along_its_similarity_to_the_enrolled_one_not_its_recording_conditions():
    """The agent and the caller clustered as one voice, each heard in two recording conditions
    that move the voiceprints more than the two people differ: the split follows the similarity
    to the agent's enrolled voiceprint (all caller windows split off, no agent window), not the
    conditions."""
    from recipes.calls.roles import similarity_cut, split_enrolled_voice

    rng = np.random.default_rng(1)
    d = 64
    agent, ivr = _unit(rng.standard_normal(d)), _unit(rng.standard_normal(d))
    caller = _unit(agent + 0.9 * _unit(rng.standard_normal(d)))
    condition = 1.5 * _unit(rng.standard_normal(d))  # e.g. a headset and a speakerphone
    voices = [_voices(rng, _unit(v + sign * condition), 6, 0.03) for v in (agent, caller) for sign in (1, -1)]
    embs = np.concatenate([_voices(rng, ivr, 5, 0.05)] + voices)
    labels = np.array([0] * 5 + [1] * 24)
    enrolled = np.stack([_unit(_unit(agent + condition) + _unit(agent - condition)), ivr])
    out = split_enrolled_voice(embs, labels, enrolled, threshold=0.5, margin=0.05)
    assert (out[5:17] == 1).all() and (out[17:] == 2).all()
    # the caller also heard as a voice of its own, as like the agent as the threshold allows
    # (GE2E puts two voices of one gender that close): the caller is that voice, no enrolled
    # voice is cut (a split would cut a fragment off the agent's)
    more = np.concatenate([embs, _voices(rng, caller, 4, 0.03)])
    labels = np.concatenate([labels, [2] * 4])
    assert (enrolled[0] @ _unit(more[-4:].mean(0))) >= 0.5
    assert (split_enrolled_voice(more, labels, enrolled, threshold=0.5, margin=0.05) == labels).all()
    assert list(similarity_cut([0.8, 0.81, 0.79, 0.7, 0.69, 0.71])) == [1, 1, 1, 0, 0, 0]
    assert not similarity_cut([0.5, 0.5, 0.5]).any()


def test_the_caller_is_the_voice_farthest_from_the_enrolled_ones():
    import torch

    from recipes.calls.options import CallOptions
    from recipes.calls.roles import assign_roles

    rng = np.random.default_rng(1)
    a = _unit(rng.standard_normal(32))

    def near(cos):  # a unit vector at cosine ``cos`` from a
        r = rng.standard_normal(32)
        return torch.tensor(cos * a + np.sqrt(1 - cos ** 2) * _unit(r - (r @ a) * a), dtype=torch.float)

    prints = {"agent": torch.tensor(a, dtype=torch.float)}

    def speakers(*voices):
        return [{"channel": None, "voiceprint": near(cos), "speech_seconds": sec, "windows": int(sec),
                 "segments": [[i, i + 1]]} for i, (cos, sec) in enumerate(voices)]

    # the agent in two recording conditions (0.95 and 0.8 like its enrolment) and the caller (0.5)
    spk, notes = speakers((0.95, 10.0), (0.8, 20.0), (0.5, 6.0)), []
    assign_roles(spk, None, prints, CallOptions(), notes)
    assert [s["role"] for s in spk] == ["agent", "agent", "caller"] and spk[1]["agent"] == "agent"
    # every voice left sounds like the enrolled one: the least like it is the caller, said in the notes
    spk, notes = speakers((0.95, 10.0), (0.85, 20.0), (0.75, 6.0)), []
    assign_roles(spk, None, prints, CallOptions(), notes)
    assert [s["role"] for s in spk] == ["agent", "agent", "caller"] and "least like" in notes[0]
    # a 2-window fragment less like the agent than a 12-window voice (its caller clustered with
    # some of the agent's windows) is not taken for the caller; alone, it would be
    spk = speakers((0.95, 10.0), (0.76, 12.0), (0.7, 2.0))
    assign_roles(spk, None, prints, CallOptions(), [])
    assert [s["role"] for s in spk] == ["agent", "caller", "agent"]
    spk = speakers((0.95, 10.0), (0.7, 2.0))
    assign_roles(spk, None, prints, CallOptions(), [])
    assert [s["role"] for s in spk] == ["agent", "caller"]


def test_a_long_call_is_clustered_on_a_bounded_sample_of_its_windows(monkeypatch):
    """Past MAX_CLUSTERED windows the voices are found on an evenly spread sample (the
    clustering's memory grows with the square of its input), then every window goes to its
    nearest voice: the same voices as clustering them all; a one-window flicker is smoothed."""
    import sklearn.cluster

    from recipes.calls import diarize

    rng = np.random.default_rng(2)
    d = 32
    a, b = _unit(rng.standard_normal(d)), _unit(rng.standard_normal(d))
    turns = [_voices(rng, v, 30, 0.05) for v in (a, b, a, b, a, b, a, b)]
    embs = np.concatenate(turns)
    truth = np.repeat([0, 1] * 4, 30)
    sizes = []
    real = sklearn.cluster.AgglomerativeClustering.fit

    def spy(self, X, y=None):
        sizes.append(len(X))
        return real(self, X, y)

    monkeypatch.setattr(sklearn.cluster.AgglomerativeClustering, "fit", spy)
    everything = diarize.cluster(embs, 4, 0.3)
    monkeypatch.setattr(diarize, "MAX_CLUSTERED", 40)
    sampled = diarize.cluster(embs, 4, 0.3)
    assert sizes == [240, 40]
    assert (everything == truth).all() and (sampled == truth).all()
    flicker = embs.copy()
    flicker[15] = b  # one window of the other voice inside a turn of the first
    assert (diarize.cluster(flicker, 4, 0.3) == truth).all()
