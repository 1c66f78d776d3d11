"""local/prepare_commonvoice.py on a tiny synthetic folder in the Common Voice release
layout (Opus and MP3 clips written here), and on the shared sample when present."""

import csv
import json
import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from conftest import needs_shared
from local.prepare_commonvoice import prepare_commonvoice
from local.prepare_csv import load_label_space
from recipes.data.manifest import ManifestError, check_speaker_disjoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CV_LABELS = os.path.join(ROOT, "hparams", "labels", "commonvoice_decades.yaml")
CC_LABELS = os.path.join(ROOT, "hparams", "labels", "callcenter_decades.yaml")
HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale", "segment"]
# (gender, age) of each speaker of a locale; every speaker has two clips
SPEAKERS = [("male", "twenties"), ("female", "twenties"), ("male", "thirties"), ("female", "thirties"),
            ("male", "fourties"), ("female", "fourties"), ("male", "teens"), ("female", "teens"),
            ("male", "fifties"), ("female", "seventies"), ("other", "twenties"), ("", "thirties"),
            ("male", ""), ("female", "sixties")]
FORMATS = {"fr": ("opus", dict(format="OGG", subtype="OPUS"), 8000), "de": ("mp3", dict(format="MP3"), 48000)}


def clip(path, seconds, sr, fmt, f0):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, y.astype(np.float32), sr, **fmt)


def make_release(folder, locales=("fr", "de"), short_clip=True, release_splits=False):
    """Returns the expected (kept rows, drop counts by reason) of validated.tsv."""
    for loc in locales:
        ext, fmt, sr = FORMATS[loc]
        os.makedirs(folder / loc / "clips", exist_ok=True)
        rows = []
        for s, (gender, age) in enumerate(SPEAKERS):
            for u in range(2):
                name = f"common_voice_{loc}_{s}{u}.{ext}"
                seconds = 0.5 if (short_clip and s == 0 and u == 1) else 1.3
                clip(str(folder / loc / "clips" / name), seconds, sr, fmt, 120 + 10 * s)
                rows.append({"client_id": f"{loc}spk{s}", "path": name, "sentence": 'a "quoted" text',
                             "up_votes": 2, "down_votes": 0, "age": age, "gender": gender, "locale": loc})
        tsvs = {"validated.tsv": rows}
        if release_splits:
            by_spk = [rows[i:i + 2] for i in range(0, len(rows), 2)]
            tsvs.update({"train.tsv": sum(by_spk[:10], []), "dev.tsv": sum(by_spk[10:12], []),
                         "test.tsv": sum(by_spk[12:], [])})
        for name, rs in tsvs.items():
            with open(folder / loc / name, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=HEADER, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
                w.writeheader()
                w.writerows(rs)
    return folder


def expected_drops(label_words, n_locales):
    """Drop counts from SPEAKERS and the mapping of each age word under a label space."""
    c = Counter()
    for gender, age in SPEAKERS:
        if gender == "":
            reason = "gender_empty"
        elif gender == "other":
            reason = "gender_other"
        elif age == "":
            reason = "age_empty"
        else:
            reason = label_words.get(age)
        if reason:
            c[reason] += 2 * n_locales
    return c


def read_all(out):
    return {s: list(csv.DictReader(open(p))) for s, p in out.items()}


def test_commonvoice_labels_counts_and_split(tmp_path):
    data = make_release(tmp_path / "cv")
    out = prepare_commonvoice(str(data), str(tmp_path / "out"), label_space=CV_LABELS)
    rows = read_all(out)
    check_speaker_disjoint(out)
    summary = json.load(open(tmp_path / "out" / "prep_summary.json"))
    drops = expected_drops({}, 2)
    drops["too_short"] = 2  # one 0.5 s clip per locale
    assert {k: v for k, v in summary["dropped"].items()} == dict(drops)
    kept = [r for rs in rows.values() for r in rs]
    assert len(kept) == 2 * 2 * len(SPEAKERS) - sum(drops.values())
    assert {r["language"] for r in kept} == {"fr", "de"}
    assert {r["gender"] for r in kept} == {"f", "m"}
    by_id = {r["ID"]: r for r in kept}
    assert by_id["common_voice_fr_40"]["age_group"] == "40s"  # "fourties", the release's spelling
    assert by_id["common_voice_de_60"]["age_group"] == "teens" and by_id["common_voice_de_91"]["age_group"] == "60+"
    assert by_id["common_voice_de_91"]["gender"] == "f" and by_id["common_voice_de_91"]["spk_id"] == "despk9"
    assert all(r["wav"].endswith(".mp3") for r in kept if r["language"] == "de")
    assert all(len(rs) > 0 for rs in rows.values())
    dropped = list(csv.DictReader(open(tmp_path / "out" / "dropped.csv")))
    assert len(dropped) == sum(drops.values())
    short = [d for d in dropped if d["reason"] == "too_short"]
    assert {os.path.relpath(d["source"], data) for d in short} == {"fr/validated.tsv", "de/validated.tsv"}
    assert all(d["row"] == "3" for d in short)  # the second clip of speaker 0: TSV line 3
    assert Counter(d["detail"].split(":")[0] for d in dropped if d["reason"] == "label") == \
        Counter({k: v for k, v in drops.items() if k != "too_short"})


def test_commonvoice_decades_straddling_bins_are_dropped(tmp_path):
    """Call-center bins start at 18: 'teens' (13-18) straddles them and is dropped, never
    moved into '20s'."""
    data = make_release(tmp_path / "cv", locales=("fr",), short_clip=False)
    out = prepare_commonvoice(str(data), str(tmp_path / "out"), label_space=CC_LABELS)
    summary = json.load(open(tmp_path / "out" / "prep_summary.json"))
    assert summary["dropped"] == dict(expected_drops({"teens": "age_straddles_bins"}, 1))
    groups = {r["age_group"] for rs in read_all(out).values() for r in rs}
    assert groups <= set(load_label_space(CC_LABELS).age_sub) and "60s" in groups


def test_commonvoice_options_locales_require_release_splits_and_skip(tmp_path, caplog):
    data = make_release(tmp_path / "cv", short_clip=False, release_splits=True)
    out = prepare_commonvoice(str(data), str(tmp_path / "o1"), label_space=CV_LABELS, locales=["fr"],
                              require=("gender",), release_splits=True)
    rows = read_all(out)
    assert {r["language"] for rs in rows.values() for r in rs} == {"fr"}
    assert {r["spk_id"] for r in rows["valid"]} <= {"frspk10", "frspk11"}  # dev.tsv (other / empty gender)
    assert {r["spk_id"] for r in rows["test"]} == {"frspk12", "frspk13"}
    no_age = [r for r in rows["test"] if r["spk_id"] == "frspk12"]
    assert len(no_age) == 2 and all(r["age_group"] == "" for r in no_age)  # age not required: left empty
    mtime = os.stat(out["train"]).st_mtime_ns
    prepare_commonvoice(str(data), str(tmp_path / "o1"), label_space=CV_LABELS, locales=["fr"],
                        require=("gender",), release_splits=True)
    assert os.stat(out["train"]).st_mtime_ns == mtime  # done already: skipped
    with open(data / "fr" / "test.tsv", "a") as f:
        f.write("frspk99\tmissing.opus\tx\t1\t0\tthirties\tmale\t\tfr\t\n")
    with pytest.raises(ManifestError, match="missing.opus"):  # the changed input is read again
        prepare_commonvoice(str(data), str(tmp_path / "o1"), label_space=CV_LABELS, locales=["fr"],
                            require=("gender",), release_splits=True)


@needs_shared("commonvoice-sample-8k")
def test_commonvoice_sample_two_locales(tmp_path):
    from conftest import SHARED_DATA

    out = prepare_commonvoice(os.path.join(SHARED_DATA, "commonvoice-sample-8k"), str(tmp_path / "out"),
                              label_space=CV_LABELS, locales=["ab", "fy-NL"], skip_bad=True)
    rows = read_all(out)
    check_speaker_disjoint(out)
    assert sum(len(r) for r in rows.values()) > 20
    assert {r["language"] for rs in rows.values() for r in rs} <= {"ab", "fy-NL"}
