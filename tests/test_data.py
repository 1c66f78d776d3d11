import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from local.prepare_csv import prepare_csv
from recipes.data.audio import AudioError, load_audio
from recipes.data.manifest import (ManifestError, check_speaker_disjoint, read_rows, validate_manifest,
                                   write_manifest)


def tone(path, seconds=1.5, sr=16000, stereo=False, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    if stereo:
        y = np.stack([y, np.zeros_like(y)], axis=1)
    sf.write(path, y, sr)
    return path


def manifest_row(uid, wav, spk="s1", gender="f", age="30", age_group=""):
    return {"ID": uid, "wav": wav, "duration": "1.5", "spk_id": spk, "gender": gender,
            "age": age, "age_group": age_group}


def test_load_audio_resamples_and_downmixes(tmp_path):
    wav = load_audio(tone(str(tmp_path / "a.wav"), 1.0, 16000, stereo=True), 8000)
    assert wav.dim() == 1 and wav.shape[0] == 8000
    # left channel 0.3 amplitude, right silent -> mean has peak ~0.15
    assert 0.12 < float(wav.abs().max()) < 0.17
    seg = load_audio(str(tmp_path / "a.wav"), 8000, start_s=0.25, dur_s=0.5)
    assert seg.shape[0] == 4000


def test_load_audio_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(str(bad), 8000)
    with pytest.raises(AudioError, match="missing.wav"):
        load_audio(str(tmp_path / "missing.wav"), 8000)


def test_validate_manifest_reports_rows(tmp_path, label_space):
    a = tone(str(tmp_path / "a.wav"))
    rows = [manifest_row("u1", a), manifest_row("u1", a), manifest_row("u3", a, gender="x"),
            manifest_row("u4", a, age="200"), manifest_row("u5", str(tmp_path / "gone.wav"))]
    path = str(tmp_path / "m.csv")
    write_manifest(path, rows)
    with pytest.raises(ManifestError) as err:
        validate_manifest(path, label_space)
    msg = str(err.value)
    assert "row 3" in msg and "duplicate ID" in msg
    assert "row 4" in msg and "unknown gender" in msg
    assert "row 5" in msg and "outside every age bin" in msg
    assert "row 6" in msg and "gone.wav" in msg
    assert "m.csv" in msg


def test_missing_columns(tmp_path, label_space):
    path = tmp_path / "m.csv"
    path.write_text("ID,wav,duration\nu1,a.wav,1.0\n")
    with pytest.raises(ManifestError, match="missing columns"):
        validate_manifest(str(path), label_space)


def test_speaker_in_two_splits(tmp_path):
    a = tone(str(tmp_path / "a.wav"))
    write_manifest(str(tmp_path / "train.csv"), [manifest_row("u1", a, spk="s1")])
    write_manifest(str(tmp_path / "test.csv"), [manifest_row("u2", a, spk="s1")])
    paths = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    with pytest.raises(ManifestError, match="speaker 's1'") as from_files:
        check_speaker_disjoint(paths)
    # the rows already read by validate_manifest give the same error (file and row named)
    rows = {split: [dict(r) for _, r in read_rows(p)] for split, p in paths.items()}
    with pytest.raises(ManifestError) as from_rows:
        check_speaker_disjoint(paths, rows)
    assert str(from_rows.value) == str(from_files.value) and "test.csv, row 2" in str(from_rows.value)


def make_input_csv(tmp_path, n_spk=10, extra=()):
    rows = []
    for s in range(n_spk):
        for u in range(2):
            name = f"s{s}_{u}.wav"
            tone(str(tmp_path / name), 1.5)
            rows.append({"path": name, "speaker": f"s{s}", "gender": "fm"[s % 2], "age": 20 + s})
    rows.extend(extra)
    path = tmp_path / "in.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "gender", "age"])
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_prepare_csv_filters_and_splits(tmp_path):
    tone(str(tmp_path / "short.wav"), 0.5)
    tone(str(tmp_path / "long.wav"), 25.0)
    extra = [{"path": "short.wav", "speaker": "s0", "gender": "f", "age": 20},
             {"path": "long.wav", "speaker": "s0", "gender": "f", "age": 20}]
    out = prepare_csv(make_input_csv(tmp_path, extra=extra), str(tmp_path / "out"))
    spk, n = {}, 0
    for split, p in out.items():
        for r in csv.DictReader(open(p)):
            n += 1
            assert spk.setdefault(r["spk_id"], split) == split  # speaker-disjoint
            assert 1.0 <= float(r["duration"]) <= 20.0
    assert n == 20  # the short and the long file were filtered out
    assert len({v for v in spk.values()}) == 3


def test_prepare_csv_rejects_silent_and_unreadable_audio(tmp_path):
    tone(str(tmp_path / "silent.wav"), 1.5, amp=0.0)
    (tmp_path / "broken.wav").write_bytes(b"RIFF garbage")
    extra = [{"path": "silent.wav", "speaker": "s1", "gender": "m", "age": 21},
             {"path": "broken.wav", "speaker": "s1", "gender": "m", "age": 21}]
    src = make_input_csv(tmp_path, extra=extra)
    with pytest.raises(ManifestError) as err:
        prepare_csv(src, str(tmp_path / "out"))
    assert "row 22" in str(err.value) and "silent" in str(err.value)
    assert "row 23" in str(err.value) and "broken.wav" in str(err.value)
    out = prepare_csv(src, str(tmp_path / "out2"), skip_bad=True)
    assert sum(1 for p in out.values() for _ in csv.DictReader(open(p))) == 20


def test_prepare_csv_bad_rows(tmp_path):
    src = make_input_csv(tmp_path, extra=[{"path": "nowhere.wav", "speaker": "s1", "gender": "m", "age": "abc"}])
    with pytest.raises(ManifestError) as err:
        prepare_csv(src, str(tmp_path / "out"))
    assert "row 22" in str(err.value) and "not a number" in str(err.value)
    assert "nowhere.wav" in str(err.value)


def test_collate_skips_bad_utterances(tmp_path, label_space):
    from recipes.data.pipelines import SkipBadCollate, make_dataset
    good = tone(str(tmp_path / "good.wav"))
    bad = str(tmp_path / "bad.wav")
    open(bad, "wb").write(b"garbage")
    path = str(tmp_path / "m.csv")
    write_manifest(path, [manifest_row("u1", good), manifest_row("u2", bad)])
    ds = make_dataset(path, label_space, 8000, crop_seconds=1.0)
    batch = SkipBadCollate()([ds[0], ds[1]])
    assert batch.id == ["u1"]
    assert batch.sig.data.shape == (1, 8000)
    assert SkipBadCollate()([ds[1]]) is None
    assert torch.equal(batch.age_sub_idx.data.view(-1), torch.tensor([2]))
