"""TIMIT preparation (local/prepare_timit.py) on a miniature LDC-layout folder with NIST
SPHERE audio: ages from SPKRINFO dates, unknown birth years, the official split, case
variants, dropped.csv, prep_record.json, and the recipe YAML."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from local.prepare_timit import age_in_years, prepare_timit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = os.path.join(ROOT, "hparams", "labels", "timit.yaml")
# (dir name, part, DR, RecDate, BirthDate): ages 25 (birthday not yet), 34, 45, 61, 28 ...
SPEAKERS = [
    ("MABC0", "TRAIN", 1, "03/03/86", "06/17/60"),  # 25 (birthday later in the year)
    ("FDEF0", "TRAIN", 1, "03/03/86", "01/02/52"),  # 34
    ("MGHI0", "TRAIN", 2, "12/10/87", "12/10/42"),  # 45 (birthday on the recording day)
    ("FJKL0", "TRAIN", 2, "01/20/87", "??/??/25"),  # 61 (month and day unknown: July 15th)
    ("MMNO0", "TRAIN", 3, "05/05/86", "??/??/??"),  # unknown birth year: no age
    ("FPQR0", "TRAIN", 3, "05/05/86", "05/06/57"),  # 28
    ("MSTU0", "TRAIN", 4, "05/05/86", "05/04/56"),  # 30
    ("FVWX0", "TRAIN", 4, "05/05/86", "05/04/45"),  # 41
    ("MAAA0", "TRAIN", 5, "05/05/86", "01/01/63"),  # 23 } with MABC0: the one stratum (m, 20s)
    ("MBBB0", "TRAIN", 5, "05/05/86", "01/01/59"),  # 27 } large enough to give a valid speaker
    ("MCCC0", "TRAIN", 6, "05/05/86", "01/01/57"),  # 29 }
    ("MDAB0", "TEST", 1, "04/04/86", "04/05/63"),   # 22 (a core-test speaker)
    ("FYZA0", "TEST", 5, "04/04/86", "04/03/36"),   # 50
    ("MBCD0", "TEST", 6, "04/04/86", "10/10/50"),   # 35
]
AGES = {"MABC0": 25, "FDEF0": 34, "MGHI0": 45, "FJKL0": 61, "MMNO0": None, "FPQR0": 28, "MSTU0": 30,
        "FVWX0": 41, "MAAA0": 23, "MBBB0": 27, "MCCC0": 29, "MDAB0": 22, "FYZA0": 50, "MBCD0": 35}
UTTS = ["SA1", "SX12", "SI1002"]
# the miniature TIMIT's "speech" is tones: speech for the energy rule, not for the trained detector
ENERGY = {"detector": "energy"}


def tone(path, seconds, f0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, y.astype(np.float32), sr, format="NIST", subtype="PCM_16")  # NIST SPHERE, as the LDC ships


def make_timit(folder, lower=False, nested=True):
    """A TIMIT-layout folder: [TIMIT/]TRAIN|TEST/DRn/<spk>/*.WAV (SPHERE) + DOC/SPKRINFO.TXT."""
    case = str.lower if lower else str.upper
    root = os.path.join(folder, case("timit")) if nested else str(folder)
    lines = ["; Speaker information", ";  ID  Sex DR Use  RecDate   BirthDate  Ht     Race Edu  Comments", ";"]
    for k, (spk, part, dr, rec, birth) in enumerate(SPEAKERS):
        d = os.path.join(root, case(part), case(f"DR{dr}"), case(spk))
        os.makedirs(d, exist_ok=True)
        for j, utt in enumerate(UTTS):
            seconds = 0.5 if (spk == "FPQR0" and utt == "SX12") else 1.5  # one too-short file
            tone(os.path.join(d, case(f"{utt}.WAV")), seconds, 110 + 15 * k + 5 * j)
        use = "TRN" if part == "TRAIN" else "TST"
        lines.append(f"{spk[1:]}  {spk[0]}    {dr}  {use}  {rec}  {birth}  5'11\"  WHT  BS")
    os.makedirs(os.path.join(root, case("DOC")), exist_ok=True)
    with open(os.path.join(root, case("DOC"), case("SPKRINFO.TXT")), "w") as f:
        f.write("\n".join(lines) + "\n")
    return folder


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_age_from_dates():
    assert age_in_years("03/03/86", "06/17/60") == 25
    assert age_in_years("12/10/87", "12/10/42") == 45
    assert age_in_years("01/20/87", "??/??/25") == 61
    assert age_in_years("05/05/86", "??/??/??") is None
    assert age_in_years("??/??/??", "05/05/50") is None


def test_soundfile_reads_sphere(tmp_path):
    path = str(tmp_path / "x.wav")
    tone(path, 1.0, 120)
    with open(path, "rb") as f:
        assert f.read(7) == b"NIST_1A"
    info = sf.info(path)
    assert (info.samplerate, info.frames, info.format) == (16000, 16000, "NIST")


@pytest.mark.parametrize("lower", [False, True])
def test_prepare_timit_split_ages_and_drops(tmp_path, lower):
    data = make_timit(tmp_path / "data", lower=lower)
    out = tmp_path / "manifests"
    paths = prepare_timit(str(data), str(out), LABELS, valid_ratio=0.25)
    m = {s: rows(p) for s, p in paths.items()}
    spk = {s: {r["spk_id"] for r in rs} for s, rs in m.items()}
    assert spk["test"] == {"MDAB0", "FYZA0", "MBCD0"}  # the official test speakers, nothing else
    assert spk["train"] | spk["valid"] == {s for s, *_ in SPEAKERS[:11]} - {"MMNO0"}
    assert len(spk["valid"] & {"MABC0", "MAAA0", "MBBB0", "MCCC0"}) == 1  # stratified: 1 of 4
    assert not spk["valid"] & spk["train"]
    for r in sum(m.values(), []):
        assert int(r["age"]) == AGES[r["spk_id"]] and r["gender"] == r["spk_id"][0].lower()
        assert os.path.isfile(r["wav"]) and float(r["duration"]) == pytest.approx(1.5, abs=0.01)
    assert len(m["test"]) == 9
    dropped = rows(out / "dropped.csv")
    reasons = {(d["ID"], d["reason"]) for d in dropped}
    assert {("MMNO0_" + u, "age_unknown") for u in UTTS} <= reasons
    assert ("FPQR0_SX12", "too_short") in reasons and len(dropped) == 4
    summary = json.load(open(out / "prep_summary.json"))
    assert summary["age_range"]["test"] == [22, 50]
    # done: skipped; a changed SPKRINFO prepares again
    stamp = os.path.getmtime(paths["train"])
    prepare_timit(str(data), str(out), LABELS, valid_ratio=0.25)
    assert os.path.getmtime(paths["train"]) == stamp
    info = [os.path.join(dp, f) for dp, _, fs in os.walk(data) for f in fs if f.lower() == "spkrinfo.txt"][0]
    text = open(info).read().replace("??/??/??", "05/04/66")
    open(info, "w").write(text)
    prepare_timit(str(data), str(out), LABELS, valid_ratio=0.25)
    assert "MMNO0" in {r["spk_id"] for s in ("train", "valid") for r in rows(paths[s])}


def test_prepare_timit_options(tmp_path):
    data = make_timit(tmp_path / "data", nested=False)
    paths = prepare_timit(str(data), str(tmp_path / "o1"), LABELS, test_set="core", require=("gender",),
                          drop_sa=True)
    assert {r["spk_id"] for r in rows(paths["test"])} == {"MDAB0"}
    train = rows(paths["train"]) + rows(paths["valid"])
    assert not any(r["ID"].endswith("_SA1") for r in train)
    assert [r["age"] for r in train if r["spk_id"] == "MMNO0"] == ["", ""]  # kept, age masked


def test_prepare_timit_bad_input(tmp_path):
    from recipes.data.manifest import ManifestError

    with pytest.raises(ManifestError, match="TRAIN"):
        prepare_timit(str(tmp_path), str(tmp_path / "o"), LABELS)
    data = make_timit(tmp_path / "data")
    info = os.path.join(data, "TIMIT", "DOC", "SPKRINFO.TXT")
    with open(info, "a") as f:
        f.write("XYZ0 Q 1 TRN 01/01/86 01/01/50\n")
    with pytest.raises(ManifestError, match=r"SPKRINFO.TXT, line 18: sex 'Q'"):
        prepare_timit(str(data), str(tmp_path / "o"), LABELS)


def test_timit_recipe_yaml_loads(tmp_path):
    from recipes.config.recipe_yaml import load_recipe

    data = make_timit(tmp_path / "data")
    hp = load_recipe(os.path.join(ROOT, "hparams", "timit", "train.yaml"),
                     {"data_folder": str(data), "output_folder": str(tmp_path / "out"),
                      "speech": ENERGY})
    assert hp["label_space"].age_sub == ["20s", "30s", "40s", "50+"]
    paths = hp["prepare_data"]()
    assert len(rows(paths["test"])) == 9


def test_timit_recipe_trains_with_age_head(tmp_path):
    """train.py on the miniature TIMIT (SPHERE audio, 16 kHz read at 8 kHz), tiny encoder, one
    epoch: the age head's years reach the per-group table (age MAE per gender x age group)."""
    import subprocess
    import sys

    data = make_timit(tmp_path / "data")
    out = tmp_path / "out"
    cmd = [sys.executable, "train.py", "hparams/timit/train.yaml", f"--data_folder={data}",
           f"--output_folder={out}", "--model=!include:../encoders/ecapa_tiny.yaml", "--number_of_epochs=1",
           "--batch_size=4", "--ckpt_interval_minutes=0", "--head_hidden=32", "--noprogressbar",
           "--speech={detector: energy}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    test = json.load(open(out / "results.json"))["test"]
    rows = test["groups"]["tables"]["gender x age group"]
    assert sum(r["n"] for r in rows) == 9
    assert {r["group"] for r in rows} == {"m / 20s", "f / 50+", "m / 30s"}
    assert all(r["age_mae"] is not None and r["age_mae"] >= 0 for r in rows)
    preds = list(csv.DictReader(open(out / "predictions_test.csv")))
    assert len(preds) == 9 and all(float(p["age_true"]) == AGES[p["ID"].split("_")[0]] for p in preds)
