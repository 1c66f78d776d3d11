"""Inputs that used to give a silent wrong answer, a crash or a hang now give a clear error (or
a per-file error record) naming what is wrong: changed data or options on resume, conflicting
labels, empty splits, a folder of another pruning method, bad numbers, non-UTF-8 CSVs, a
missing required option, missing files in the Python API."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

TINY = ["--number_of_epochs=1", "--noprogressbar", "--batch_size=4", "--ckpt_interval_minutes=0",
        "--model=!include:../encoders/ecapa_tiny.yaml", "--head_hidden=16"]


def run(*args, ok=True, timeout=600):
    res = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if ok:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def callcenter_csv(path, demo_root, speakers, shift=0):
    """An in-house CSV over the demo corpus's files: ``speakers`` speakers, adult ages."""
    with open(demo_root / "corpus.csv") as f:
        rows = list(csv.DictReader(f))
    by_spk = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(r)
    chosen = sorted(by_spk)[shift:shift + speakers]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "gender", "age"])
        for k, spk in enumerate(chosen):
            for r in by_spk[spk][:2]:
                w.writerow([str(demo_root / r["path"]) if not os.path.isabs(r["path"]) else r["path"], spk,
                            r["gender"], 25 + 10 * (k % 4)])
    return path


def test_another_csv_into_the_same_output_folder_is_refused(tiny_run, tmp_path):
    root, _ = tiny_run
    a = callcenter_csv(tmp_path / "a.csv", root / "demo", 12)
    b = callcenter_csv(tmp_path / "b.csv", root / "demo", 12, shift=6)
    out = tmp_path / "out"
    run("train.py", "hparams/callcenter/train.yaml", f"--input_csv={a}", f"--output_folder={out}", *TINY)
    before = sorted(os.listdir(out / "save"))
    res = run("train.py", "hparams/callcenter/train.yaml", f"--input_csv={b}", f"--output_folder={out}", *TINY,
              ok=False)
    assert res.returncode != 0 and "was trained on other data" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert sorted(os.listdir(out / "save")) == before  # the checkpoints are untouched


def test_changed_options_on_resume_are_named_and_refused(tiny_run, tmp_path):
    root, out = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    record = (copy / "hyperparams.yaml").read_text()
    res = run("train.py", "hparams/demo.yaml", f"--output_folder={copy}", f"--data_folder={root / 'demo'}",
              "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3", "--number_of_epochs=1", "--lr=0.5",
              ok=False)
    assert res.returncode != 0 and "lr: 0.002 -> 0.5" in res.stderr, res.stderr[-2000:]
    assert (copy / "hyperparams.yaml").read_text() == record  # the record still says what ran


def test_conflicting_gender_of_one_speaker(tmp_path):
    from local.prepare_csv import read_input_csv
    from recipes.data.manifest import ManifestError

    wav = tmp_path / "a.wav"
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "legacy_clip.wav"), wav)
    for name in ("b.wav", "c.wav"):
        shutil.copy(wav, tmp_path / name)
    (tmp_path / "in.csv").write_text("path,speaker,gender,age\na.wav,s1,f,30\nb.wav,s1,m,31\nc.wav,s2,f,40\n")
    with pytest.raises(ManifestError, match=r"row 3: speaker 's1' has gender 'f' at row 2 and 'm' at row 3"):
        read_input_csv(str(tmp_path / "in.csv"))
    dropped = []
    rows = read_input_csv(str(tmp_path / "in.csv"), skip_bad=True, dropped=dropped)
    assert [r["spk_id"] for _, r in rows] == ["s2"] and "2 row(s)" in dropped[0]["detail"]


def test_a_csv_that_is_not_utf8_names_file_and_row(tmp_path):
    from local.prepare_csv import read_input_csv
    from recipes.data.manifest import ManifestError

    path = tmp_path / "latin.csv"
    path.write_bytes("path,speaker,gender,age\na.wav,s1,f,30\nb.wav,Jos\u00e9,m,40\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin.csv, row 3, column 10: byte 0xe9 is not UTF-8.*iconv"):
        read_input_csv(str(path))


def test_splits_are_never_left_empty():
    from recipes.data.manifest import ManifestError
    from recipes.data.splits import speaker_split

    rows = [{"spk_id": f"s{i}", "ID": f"u{i}"} for i in range(20)]  # 20 speakers in 10 strata of 2
    splits = speaker_split(rows, (0.8, 0.1, 0.1), strat_key=lambda r: int(r["spk_id"][1:]) % 10)
    assert all(splits[s] for s in ("train", "valid", "test"))
    with pytest.raises(ManifestError, match="1 speaker.*at least 3 speakers"):
        speaker_split(rows[:1], (0.8, 0.1, 0.1))


def test_training_refuses_an_empty_split(tiny_run, tmp_path):
    root, out = tiny_run
    manifests = tmp_path / "m"
    shutil.copytree(out / "manifests", manifests)
    with open(manifests / "valid.csv") as f:
        header = f.readline()
    (manifests / "valid.csv").write_text(header)
    from recipes.config.recipe_yaml import load_checked
    from recipes.data.datasets import build_datasets
    from recipes.data.manifest import ManifestError

    hp = load_checked(os.path.join(ROOT, "hparams", "demo.yaml"),
                      {"manifest_folder": str(manifests), "output_folder": str(tmp_path / "o")})
    with pytest.raises(ManifestError, match="the valid split has no utterance"):
        build_datasets(hp)


def test_a_required_option_left_out_is_a_usage_message(tmp_path):
    res = run("train.py", "hparams/callcenter/train.yaml", f"--output_folder={tmp_path / 'o'}", ok=False)
    assert res.returncode != 0 and "needs a value for --input_csv" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o").exists()


def test_a_pruning_folder_of_the_other_method_is_refused(tmp_path):
    from recipes.brains.pruning_run import check_method

    ckpt = tmp_path / "save" / "CKPT+2026-01-01+00-00-00+00"
    ckpt.mkdir(parents=True)
    (ckpt / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 1\n")
    (ckpt / "structure.ckpt").write_text("{}")
    check_method(tmp_path, "structured")
    with pytest.raises(ValueError, match="holds a structured pruning run; prune_method magnitude needs another"):
        check_method(tmp_path, "magnitude")


@pytest.mark.parametrize("option,value", [("--window", "0"), ("--hop", "0"), ("--hop", "-1"), ("--batch", "0"),
                                          ("--batch", "-1"), ("--min-speech", "-1")])
def test_infer_validates_its_numbers(tiny_run, option, value):
    _, out = tiny_run
    res = run("infer.py", out, os.path.join(ROOT, "tests", "fixtures", "legacy_clip.wav"), option, value,
              ok=False, timeout=120)
    assert res.returncode == 2 and f"argument {option}" in res.stderr


def test_interface_options_are_checked_at_load(tiny_run):
    from recipes.inference.interface import SpeakerProfilerInterface

    for key, value in (("hop_seconds", 0), ("window_seconds", -1.0), ("window_batch_size", 0),
                       ("bf16_autocast", "yes")):
        with pytest.raises(ValueError, match=key):
            SpeakerProfilerInterface.from_folder(str(tiny_run[1]), overrides={key: value})


def test_bf16_autocast_gives_the_float32_answers(tiny_run):
    """bf16_autocast (infer.py --bf16) runs the model under bfloat16 autocast: the labels of the
    float32 run, probabilities within 0.1; a folder exported before the option takes it too."""
    from recipes.inference.interface import SpeakerProfilerInterface

    root, out = tiny_run
    clips = sorted(str(p) for p in (root / "demo").rglob("*.wav"))[:6]
    fp32 = SpeakerProfilerInterface.from_folder(str(out)).classify_files(clips)
    bf16_profiler = SpeakerProfilerInterface.from_folder(str(out), overrides={"bf16_autocast": True})
    assert bf16_profiler.bf16
    bf16 = bf16_profiler.classify_files(clips)
    for a, b in zip(fp32, bf16):
        for task in ("gender", "age_sup", "age_sub"):
            assert a[task]["label"] == b[task]["label"] and abs(a[task]["prob"] - b[task]["prob"]) < 0.1
    legacy = os.path.join(ROOT, "tests", "fixtures", "legacy_exported")  # written before the option
    assert SpeakerProfilerInterface.from_folder(legacy, overrides={"bf16_autocast": True}).bf16
    res = run("infer.py", out, clips[0], "--bf16", "--json", timeout=300)
    assert json.loads(res.stdout.strip().splitlines()[-1])["gender"]["label"] == fp32[0]["gender"]["label"]


def test_python_api_errors_match_the_cli_and_keep_the_good_files(tiny_run, tmp_path):
    from recipes.data.audio import AudioError
    from recipes.inference.interface import SpeakerProfilerInterface

    _, out = tiny_run
    profiler = SpeakerProfilerInterface.from_folder(str(out))
    good = os.path.join(ROOT, "tests", "fixtures", "legacy_clip.wav")
    missing = str(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="missing.wav not found"):
        profiler.classify_file(missing)
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        profiler.classify_file(str(tmp_path))
    results = profiler.classify_files([good, missing, str(tmp_path)])
    assert results[0]["gender"]["label"] in ("f", "m")
    assert results[1] == {"file": missing, "error": f"{missing} not found"}
    assert results[2]["error"] == f"{tmp_path} is a directory, not an audio file"
    cli = run("infer.py", out, good, missing, "--json", ok=False, timeout=120)
    records = [json.loads(line) for line in cli.stdout.splitlines()]
    assert records[1] == results[1] and cli.returncode == 1
