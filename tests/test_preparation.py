"""One definition of speech for preparation and training crops; inputs that used to slip
through preparation (BOM, NaN age, labels, missing files, leaks, changed inputs)."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from local.prepare_csv import main as prepare_csv_main
from local.prepare_csv import prepare_csv
from recipes.data.audio import AudioError, load_audio
from recipes.data.manifest import ManifestError, check_speaker_disjoint, validate_manifest, write_manifest
from recipes.data.speech import (NonFiniteAudio, SpeechConfig, keep_speech, speech_crop, speech_mask,
                                 speech_seconds)

SR = 8000
LABELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hparams", "labels",
                      "callcenter_decades.yaml")


def signal(speech_s=1.5, silence_s=0.0, dbfs=-10.0, sr=SR, lead_s=0.0):
    """``lead_s`` zeros, ``speech_s`` of a tone at ``dbfs`` RMS, then ``silence_s`` zeros."""
    t = np.arange(int(speech_s * sr)) / sr
    amp = 10 ** (dbfs / 20) * np.sqrt(2)  # RMS of a sine = amp / sqrt(2)
    y = amp * np.sin(2 * np.pi * 220 * t)
    return np.concatenate([np.zeros(int(lead_s * sr)), y, np.zeros(int(silence_s * sr))]).astype(np.float32)


def write(path, y, sr=SR, subtype=None):
    sf.write(str(path), y, sr, subtype=subtype)
    return str(path)


def input_csv(folder, n_spk=10, extra=(), name="in.csv", bom=False, columns=("path", "speaker", "gender", "age")):
    rows = []
    for s in range(n_spk):
        for u in range(2):
            wav = f"s{s}_{u}.wav"
            if not (folder / wav).exists():
                write(folder / wav, signal(1.5))
            rows.append({"path": wav, "speaker": f"s{s}", "gender": "fm"[s % 2], "age": 20 + 4 * s})
    rows.extend(extra)
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def n_rows(outputs):
    return sum(1 for p in outputs.values() for _ in csv.DictReader(open(p)))


# ---- the speech decision --------------------------------------------------------------

def test_speech_seconds_counts_speech_not_zeros():
    sig = torch.from_numpy(signal(1.2, silence_s=10.0))
    assert abs(speech_seconds(sig, SR) - 1.2) <= 0.02
    mask = speech_mask(sig, SR)
    assert mask.dtype == torch.bool and mask[:50].all() and not mask[70:].any()
    kept = keep_speech(sig, SR)
    assert abs(kept.numel() - 1.2 * SR) <= 0.02 * SR and torch.equal(kept[:100], sig[:100])
    quiet = torch.from_numpy(signal(2.0, dbfs=-70.0))  # below the -60 dBFS floor
    assert speech_seconds(quiet, SR) == 0.0
    assert speech_seconds(quiet, SR, {"floor_dbfs": -80.0}) > 1.9  # thresholds from a YAML dict


def test_speech_rejects_nonfinite_with_name(tmp_path):
    sig = torch.from_numpy(signal(1.5))
    sig[100] = float("nan")
    with pytest.raises(NonFiniteAudio, match="clip_7"):
        speech_mask(sig, SR, name="clip_7")
    y = signal(1.5)
    y[10] = np.inf
    path = write(tmp_path / "inf.wav", y, subtype="FLOAT")
    with pytest.raises(AudioError, match="inf.wav"):
        load_audio(path, SR)


def test_cancelling_stereo_is_not_silent(tmp_path):
    y = signal(1.5, dbfs=-12.0)
    path = write(tmp_path / "st.wav", np.stack([y, -y], axis=1))
    wav = load_audio(path, SR)
    assert speech_seconds(wav, SR) > 1.4


def test_every_training_crop_holds_speech(tmp_path, label_space):
    """1.2 s of speech then 10 s of zeros: passes preparation, and every crop has speech."""
    from recipes.data.pipelines import make_dataset

    path = write(tmp_path / "late.wav", signal(1.2, silence_s=10.0, lead_s=3.0))
    man = str(tmp_path / "m.csv")
    write_manifest(man, [{"ID": "u1", "wav": path, "duration": "14.2", "spk_id": "s1", "gender": "f", "age": "30"}])
    ds = make_dataset(man, label_space, SR, crop_seconds=2.0)
    for _ in range(20):
        ex = ds[0]
        assert ex["ok"] and ex["sig"].numel() == 2 * SR
        assert speech_seconds(ex["sig"], SR) >= SpeechConfig().min_speech_seconds


def test_speech_crop_is_random_among_speech_crops():
    import random

    sig = torch.from_numpy(signal(4.0, silence_s=6.0, lead_s=6.0))
    rng = random.Random(0)
    starts = {speech_crop(sig, SR, 2.0, rng=rng)[1] for _ in range(30)}
    assert len(starts) > 5  # not always the same crop
    assert all(4.5 * SR <= s <= 9.5 * SR for s in starts)  # each holds >= 0.5 s of the speech


def test_preparation_drops_files_with_too_little_speech(tmp_path):
    extra = [{"path": "blip.wav", "speaker": "s1", "gender": "m", "age": 24},
             {"path": "quiet.wav", "speaker": "s1", "gender": "m", "age": 24}]
    write(tmp_path / "blip.wav", signal(0.2, silence_s=2.0))  # peak is high, speech 0.2 s
    write(tmp_path / "quiet.wav", signal(2.0, dbfs=-70.0))
    src = input_csv(tmp_path, extra=extra)
    with pytest.raises(ManifestError) as err:
        prepare_csv(src, str(tmp_path / "out"))
    assert "row 22" in str(err.value) and "blip.wav" in str(err.value)
    assert "row 23" in str(err.value) and "quiet.wav" in str(err.value)
    out = prepare_csv(src, str(tmp_path / "out2"), speech={"floor_dbfs": -80.0, "min_speech_seconds": 0.1})
    assert n_rows(out) == 22


# ---- inputs that slip through ---------------------------------------------------------

def test_csv_with_bom_is_accepted(tmp_path):
    out = prepare_csv(input_csv(tmp_path, bom=True), str(tmp_path / "out"))
    assert n_rows(out) == 20


@pytest.mark.parametrize("bad_age", ["nan", "inf", "-inf"])
def test_nonfinite_age_names_the_input_row(tmp_path, bad_age):
    src = input_csv(tmp_path, extra=[{"path": "s0_0.wav", "speaker": "s0", "gender": "f", "age": bad_age}])
    with pytest.raises(ManifestError, match=r"in\.csv, row 22: age .* not a finite number"):
        prepare_csv(src, str(tmp_path / "out"))


@pytest.mark.parametrize("duration", ["nan", "inf", "-1", "abc"])
def test_manifest_rejects_bad_duration(tmp_path, label_space, duration):
    path = write(tmp_path / "a.wav", signal(1.5))
    man = str(tmp_path / "m.csv")
    write_manifest(man, [{"ID": "u1", "wav": path, "duration": duration, "spk_id": "s1", "gender": "f", "age": "30"}])
    with pytest.raises(ManifestError, match="row 2.*duration"):
        validate_manifest(man, label_space)


def test_labels_checked_against_yaml_naming_input_row(tmp_path, capsys):
    extra = [{"path": "x1.wav", "speaker": "s1", "gender": "x", "age": 30},
             {"path": "x2.wav", "speaker": "s1", "gender": "m", "age": 12}]
    for e in extra:
        write(tmp_path / e["path"], signal(1.5))
    src = input_csv(tmp_path, extra=extra)
    with pytest.raises(ManifestError) as err:
        prepare_csv(src, str(tmp_path / "out"), label_space=LABELS)
    msg = str(err.value)
    assert "in.csv, row 22: unknown gender" in msg and "in.csv, row 23: age 12" in msg
    with pytest.raises(SystemExit) as ex:  # standalone script, --labels
        prepare_csv_main([src, str(tmp_path / "out_cli"), "--labels", LABELS])
    assert "row 22" in str(ex.value.code) and "row 23" in str(ex.value.code)
    out = prepare_csv(src, str(tmp_path / "out2"), label_space=LABELS, skip_bad=True)
    assert n_rows(out) == 20
    dropped = list(csv.DictReader(open(tmp_path / "out2" / "dropped.csv")))
    assert {(d["row"], d["reason"]) for d in dropped} == {("22", "label"), ("23", "label")}


def test_skip_bad_drops_missing_files_and_lists_every_dropped_row(tmp_path):
    write(tmp_path / "short.wav", signal(0.3))
    y = signal(3.0)
    write(tmp_path / "full.wav", y)
    data = open(tmp_path / "full.wav", "rb").read()
    open(tmp_path / "cut.wav", "wb").write(data[:len(data) // 4])  # header says 3 s
    extra = [{"path": p, "speaker": "s1", "gender": "m", "age": 24}
             for p in ("gone.wav", "short.wav", "cut.wav")]
    src = input_csv(tmp_path, extra=extra)
    with pytest.raises(ManifestError, match="gone.wav"):
        prepare_csv(src, str(tmp_path / "out"))
    out = prepare_csv(src, str(tmp_path / "out2"), skip_bad=True)
    assert n_rows(out) == 20
    dropped = {d["row"]: d for d in csv.DictReader(open(tmp_path / "out2" / "dropped.csv"))}
    assert dropped["22"]["reason"] == "missing" and dropped["22"]["wav"].endswith("gone.wav")
    assert dropped["23"]["reason"] == "too_short" and "short.wav" in dropped["23"]["detail"]
    assert dropped["24"]["reason"] == "truncated" and "cut.wav" in dropped["24"]["detail"]


def test_same_id_or_same_audio_in_two_splits_is_an_error(tmp_path):
    a, b = write(tmp_path / "a.wav", signal(1.5)), write(tmp_path / "b.wav", signal(1.5))
    row = {"duration": "1.5", "gender": "f", "age": "30"}
    paths = {s: str(tmp_path / f"{s}.csv") for s in ("train", "test")}
    write_manifest(paths["train"], [{**row, "ID": "u1", "wav": a, "spk_id": "s1"}])
    write_manifest(paths["test"], [{**row, "ID": "u1", "wav": b, "spk_id": "s2"}])
    with pytest.raises(ManifestError, match=r"ID 'u1' is in split train .*test\.csv, row 2"):
        check_speaker_disjoint(paths)
    link = tmp_path / "a_link.wav"
    os.symlink(a, link)  # the same file under another name
    write_manifest(paths["test"], [{**row, "ID": "u2", "wav": str(link), "spk_id": "s2"}])
    with pytest.raises(ManifestError, match="audio file"):
        check_speaker_disjoint(paths)


def test_same_audio_twice_in_the_input_is_an_error(tmp_path):
    src = input_csv(tmp_path, extra=[{"path": "s0_0.wav", "speaker": "s9", "gender": "m", "age": 50}],
                    columns=("path", "speaker", "gender", "age"))
    # the extra row has its own default id (s0_0) -> duplicate id AND duplicate file; use an explicit id
    rows = list(csv.DictReader(open(src)))
    with open(src, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "gender", "age", "id"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "id": f"utt{i}"})
    with pytest.raises(ManifestError, match=r"row 22: audio file .*s0_0\.wav already at row 2"):
        prepare_csv(src, str(tmp_path / "out"))


def test_changed_input_is_prepared_again(tmp_path):
    src = input_csv(tmp_path)
    out = str(tmp_path / "out")
    prepare_csv(src, out)
    first = os.stat(os.path.join(out, "train.csv")).st_mtime_ns
    prepare_csv(src, out)  # same input and options: reused
    assert os.stat(os.path.join(out, "train.csv")).st_mtime_ns == first
    lines = open(src).read().splitlines()
    open(src, "w").write("\n".join(lines[:-4]) + "\n")  # two speakers fewer
    prepare_csv(src, out)
    assert n_rows({s: os.path.join(out, f"{s}.csv") for s in ("train", "valid", "test")}) == 16
    with pytest.raises(ManifestError, match="no utterance left"):  # an option changed: prepared again
        prepare_csv(src, out, min_duration=1.6)


def test_common_voice_recipe_takes_an_in_house_csv(tmp_path):
    """hparams/commonvoice/train.yaml --input_csv=...: local/prepare_csv.py in the recipe's
    decade label space, its ratios, split seed and speech decision; the Common Voice folder is
    not read."""
    from recipes.config.recipe_yaml import load_recipe

    src = input_csv(tmp_path, n_spk=10)  # ages 20..56 -> 20s..50s
    hp = load_recipe(os.path.join(os.path.dirname(LABELS), "..", "commonvoice", "train.yaml"),
                     {"data_folder": str(tmp_path / "absent"), "input_csv": src, "csv_ratios": [0.6, 0.2, 0.2],
                      "manifest_folder": str(tmp_path / "man"),
                      "speech": {"detector": "energy"}})  # tones: speech for the energy rule only
    out = hp["prepare_data"]()
    assert n_rows(out) == 20 and set(out) == {"train", "valid", "test"}
    rows = [r for p in out.values() for r in csv.DictReader(open(p))]
    assert {r["spk_id"] for r in rows} == {f"s{s}" for s in range(10)}
    assert all(os.path.dirname(p) == str(tmp_path / "man") for p in out.values())
    with open(tmp_path / "man" / "prep_record.json") as f:
        options = json.load(f)["options"]
    assert options["ratios"] == [0.6, 0.2, 0.2] and "60+" in options["label_space"]["age_bins"]
    assert options["seed"] == 1234  # split_seed
    assert not (tmp_path / "absent").exists()
