"""profile_archive.py on Ray Data, run as a user runs it (subprocesses, Ray on this machine) on
the tiny demo model: one row per file, a bad file as an error row, the probabilities infer.py
--json prints, a rerun that skips everything, a CSV adding one file that alone is profiled, the
call mode's rows, bad options, and no Ray process left behind. Two Ray jobs in all (Ray takes
10-20 s to start)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT


def archive(model, *args, env, check=True):
    res = subprocess.run([sys.executable, "profile_archive.py", str(model), *map(str, args), "--no-progress"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def rows(output):
    return pq.read_table(str(output)).to_pylist()


@pytest.fixture(scope="module")
def first_run(tiny_run, tmp_path_factory, ray_jobs):
    """3 demo clips and a file that is not audio, profiled by 2 workers."""
    root, model = tiny_run
    folder = tmp_path_factory.mktemp("archive")
    clips = sorted((root / "demo" / "wav").glob("*.wav"))
    (folder / "in" / "sub").mkdir(parents=True)
    for clip in clips[:2]:
        shutil.copy(clip, folder / "in")
    shutil.copy(clips[2], folder / "in" / "sub")  # any depth
    (folder / "in" / "broken.wav").write_text("not audio")
    (folder / "in" / "notes.txt").write_text("not listed: not an audio suffix")
    res = archive(model, "--input", folder / "in", "--output", folder / "out.parquet", "--workers", 2, env=ray_jobs.env)
    return model, folder, clips, res.stdout


def test_one_row_per_file_errors_as_rows_and_infer_py_probabilities(first_run):
    model, folder, _, stdout = first_run
    table = rows(folder / "out.parquet")
    assert "4 file(s)" in stdout and "1 with an error row" in stdout, stdout
    by_file = {os.path.relpath(r["file"], folder / "in"): r for r in table}
    listed = [os.path.relpath(os.path.join(b, n), folder / "in") for b, _, names in os.walk(folder / "in")
              for n in names if n.endswith(".wav")]
    assert len(table) == 4 and sorted(by_file) == sorted(listed)  # one row per audio file, notes.txt not one
    bad = by_file["broken.wav"]
    assert bad["error"] and "broken.wav" in bad["error"] and bad["gender"] is None
    good = [r for r in table if r["error"] is None]
    assert len(good) == 3 and all(r["gender_label"] in ("f", "m") for r in good)
    out = subprocess.run([sys.executable, "infer.py", str(model), good[0]["file"], "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300).stdout
    expected = json.loads(out)
    for task in ("gender", "age_sup", "age_sub"):
        assert json.loads(good[0][task])["probs"] == pytest.approx(expected[task]["probs"], abs=1e-5)
        assert good[0][f"{task}_label"] == expected[task]["label"]
    assert good[0]["speech_seconds"] == pytest.approx(expected["speech_seconds"])
    assert set(expected) <= set(good[0])  # every key infer.py --json prints is a column


def test_rerun_skips_all_and_a_csv_adds_only_its_new_file(first_run, ray_jobs):
    model, folder, clips, _ = first_run
    parts = sorted(os.listdir(folder / "out.parquet"))
    res = archive(model, "--input", folder / "in", "--output", folder / "out.parquet", env=ray_jobs.env)
    assert "4 already in" in res.stdout and "0 to profile" in res.stdout, res.stdout
    assert sorted(os.listdir(folder / "out.parquet")) == parts  # nothing written, no Ray started
    new = folder / "more" / clips[3].name
    new.parent.mkdir()
    shutil.copy(clips[3], new)
    listing = folder / "list.csv"
    old = [r["file"] for r in rows(folder / "out.parquet")]
    with open(listing, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["speaker", "path"])
        w.writerows([["x", p] for p in old] + [["y", os.path.relpath(new, folder)]])  # relative to the CSV
    res = archive(model, "--input", listing, "--output", folder / "out.parquet", "--workers", 1, env=ray_jobs.env)
    assert "5 file(s)" in res.stdout and "4 already in" in res.stdout and "1 to profile" in res.stdout, res.stdout
    added = [p for p in os.listdir(folder / "out.parquet") if p not in parts]
    assert len(added) == 1 and pq.read_table(str(folder / "out.parquet" / added[0])).column("file").to_pylist() == \
        [os.path.relpath(new, folder)]
    table = rows(folder / "out.parquet")
    assert len(table) == 5 and len({r["file"] for r in table}) == 5
    assert not ray_jobs.left()  # the jobs stopped their Ray


def test_bad_options_name_what_is_wrong(first_run, ray_jobs, tmp_path):
    model, folder, _, _ = first_run
    res = archive(model, "--input", tmp_path / "nope", "--output", tmp_path / "o", env=ray_jobs.env, check=False)
    assert res.returncode != 0 and "--input" in res.stderr and "not found" in res.stderr
    (tmp_path / "l.csv").write_text("name\nx.wav\n")
    res = archive(model, "--input", tmp_path / "l.csv", "--output", tmp_path / "o", env=ray_jobs.env, check=False)
    assert res.returncode != 0 and "no column path / wav / file" in res.stderr and "columns: name" in res.stderr
    res = archive(model, "--input", folder / "in", "--output", folder / "out.parquet", "--speakers", "auto",
                  env=ray_jobs.env, check=False)
    assert res.returncode != 0 and "holds rows of the clip mode" in res.stderr, res.stderr


def test_the_call_mode_gives_one_row_per_speaker(tiny_run, tmp_path):
    """The worker itself (no Ray): a call's rows carry the call mode's records, a missing file an
    error row; every key of the records has a column."""
    from recipes.archive.rows import ArchiveWorker, schema
    from recipes.inference.interface import SpeakerProfilerInterface

    root, model = tiny_run
    clip = str(sorted((root / "demo" / "wav").glob("*.wav"))[0])
    worker = ArchiveWorker(str(model), speakers="auto")
    out = worker(pa.table({"file": ["call.wav", "gone.wav"], "path": [clip, str(tmp_path / "gone.wav")]})).to_pylist()
    assert out[0]["file"] == "call.wav" and out[0]["speaker"] == "S1" and out[0]["error"] is None
    assert isinstance(json.loads(out[0]["segments"]), list) and json.loads(out[0]["call"])["mode"] in ("mono", "stereo")
    assert out[-1]["file"] == "gone.wav" and "gone.wav not found" in out[-1]["error"]
    profiler = SpeakerProfilerInterface.from_folder(str(model))
    record = profiler.profile_call(clip)[0]
    assert set(record) - {"embedding"} <= set(schema(call=True).names)
    assert set(profiler.classify_file(clip)) - {"embedding"} <= set(schema().names)


def test_parts_are_whole_and_a_damaged_part_is_set_aside(tmp_path, capsys):
    """No Ray: the part writer's files, the resume reader skipping hidden temporaries and setting
    aside a part that cannot be read (its files are profiled again)."""
    from recipes.archive.inputs import PartWriter, done_files
    from recipes.archive.rows import schema, to_row

    out = tmp_path / "out.parquet"
    columns = list(zip(schema().names, schema().types))
    writer = PartWriter(str(out), schema(), rows_per_part=2)
    writer.add(pa.Table.from_pylist([to_row({"file": "a.wav", "error": "bad"}, columns)], schema=schema()))
    assert os.listdir(out) == []  # under rows_per_part: nothing yet
    writer.add(pa.Table.from_pylist([to_row({"file": "b.wav", "silent": True, "n_windows": 1}, columns)], schema=schema()))
    (out / ".part-x.parquet.tmp").write_bytes(b"half a part")  # an interrupted write
    (out / "part-broken.parquet").write_bytes(b"not parquet")
    assert done_files(str(out), schema()) == {"a.wav", "b.wav"}
    assert "part-broken.parquet is unreadable" in capsys.readouterr().out
    assert (out / "_unreadable-part-broken.parquet").is_file() and not (out / "part-broken.parquet").exists()
    assert pq.read_table(str(out)).num_rows == 2  # a reader sees the whole parts only
