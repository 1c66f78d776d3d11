"""run.sh, the recipe driver with numbered stages (docs/driver.md): the commands it prints with
--dry_run, chained folder to folder, its errors, and one real run of stages 1-5 on a tiny demo
corpus (about a minute on 2 CPU cores)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

STAGES = {1: "teacher", 2: "student", 3: "compress", 4: "export", 5: "infer", 6: "probe", 7: "audit"}
TINY_TRAIN = "--number_of_epochs=1 --demo_speakers_per_cell=2 --demo_utts_per_speaker=2"
TINY_PRUNE = "--max_rounds=1 --epochs_per_round=1"


def run_sh(*args, timeout=60):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", os.path.join(ROOT, "run.sh"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stage_commands(stdout):
    """{stage: the command line printed after 'stage N: <name>'}."""
    lines = stdout.splitlines()
    out = {}
    for i, line in enumerate(lines):
        if line.startswith("stage "):
            n, name = line[len("stage "):].split(": ")
            assert STAGES[int(n)] == name, line
            out[int(n)] = lines[i + 1]
    return out


def option(cmd, name):
    """The value of --name=value (or --name value) in a printed command."""
    words = cmd.split()
    for k, w in enumerate(words):
        if w.startswith(f"--{name}="):
            return w.split("=", 1)[1]
        if w == f"--{name}":
            return words[k + 1]
    raise AssertionError(f"--{name} not in {cmd!r}")


def positional(cmd, script):
    """The word after ``script`` in a printed command (its YAML or folder)."""
    words = cmd.split()
    return words[words.index(script) + 1]


@pytest.mark.parametrize("corpus,yamls,data", [
    ("demo", {1: "hparams/demo.yaml", 2: "hparams/demo_mkd.yaml", 3: "hparams/demo_prune_structured.yaml",
              6: "hparams/probe/demo.yaml", 7: "hparams/audit/demo.yaml"}, "demo_data"),
    ("speechocean762", {1: "hparams/speechocean762/train.yaml", 2: "hparams/speechocean762/mkd.yaml",
                        3: "hparams/speechocean762/prune_structured.yaml",
                        6: "hparams/probe/speechocean762.yaml", 7: "hparams/audit/demo.yaml"},
     "../shared/data/speechocean762-8k"),
])
def test_dry_run_prints_every_stage_chained(corpus, yamls, data, tmp_path):
    exp = str(tmp_path / "exp")  # not yet written: stage 5 names the manifest its wavs come from
    res = run_sh("--corpus", corpus, "--dry_run", "--exp_dir", exp, "--opts", "--noprogressbar",
                 "--train_opts", TINY_TRAIN, "--prune_opts", TINY_PRUNE)
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(exp), "--dry_run wrote something"
    cmds = stage_commands(res.stdout)
    assert sorted(cmds) == list(range(1, 8))
    scripts = {1: "train.py", 2: "train.py", 3: "prune.py", 4: "export.py", 5: "infer.py", 6: "probe.py",
               7: "audit.py"}
    for s, script in scripts.items():
        assert cmds[s].split()[0] == sys.executable and cmds[s].split()[1] == script, cmds[s]
        if s in yamls:
            assert positional(cmds[s], script) == yamls[s]

    teacher = option(cmds[1], "output_folder")
    assert teacher == f"{exp}/teacher" and option(cmds[1], "data_folder") == data
    student = option(cmds[2], "output_folder")
    assert student == f"{exp}/student" and option(cmds[2], "data_folder") == data
    assert option(cmds[2], "teacher_folder") == teacher          # stage 2 reads stage 1
    assert option(cmds[2], "concat_teacher") == "False"          # a student deployable alone
    assert option(cmds[3], "model_folder") == student            # stage 3 reads stage 2
    compressed = option(cmds[3], "output_folder")
    assert compressed == f"{student}/pruned_structured"
    assert positional(cmds[4], "export.py") == compressed        # stage 4 reads stage 3
    exported = option(cmds[4], "out")
    assert exported == f"{exp}/exported" and "--int8" in cmds[4].split()
    assert option(cmds[4], "eval-manifest") == f"{student}/manifests/test.csv"
    assert positional(cmds[5], "infer.py") == exported           # stage 5 reads stage 4
    assert f"{teacher}/manifests/test.csv" in cmds[5]            # ... on the teacher's test wavs
    assert cmds[5].split()[-3:-1] == ["--json", ">"] and cmds[5].endswith(f"> {exp}/infer.jsonl")
    for s, out in ((6, "probe"), (7, "audit")):                   # probe and audit the teacher
        assert option(cmds[s], "model_folder") == teacher and option(cmds[s], "output_folder") == f"{exp}/{out}"
    assert ("--data_folder=" + data in cmds[6].split()) == (corpus == "speechocean762")

    # --opts goes to train.py and prune.py, --train_opts / --prune_opts to their own script only
    for s in (1, 2, 3):
        assert "--noprogressbar" in cmds[s].split()
    for s in (1, 2):
        assert cmds[s].endswith(TINY_TRAIN) and TINY_PRUNE not in cmds[s]
    assert cmds[3].endswith(TINY_PRUNE) and TINY_TRAIN not in cmds[3]
    for s in (4, 5, 6, 7):
        assert "--noprogressbar" not in cmds[s] and "--number_of_epochs" not in cmds[s]


@pytest.mark.parametrize("corpus", ["demo", "speechocean762"])
def test_dry_run_default_folders_and_stage_range(corpus):
    res = run_sh("--corpus", corpus, "--stage", "2", "--stop_stage", "3", "--dry_run", "--data_folder", "corpus_copy")
    assert res.returncode == 0, res.stderr
    cmds = stage_commands(res.stdout)
    assert sorted(cmds) == [2, 3]
    assert option(cmds[2], "teacher_folder") == f"results/run/{corpus}/teacher"
    assert option(cmds[2], "output_folder") == f"results/run/{corpus}/student"
    assert option(cmds[2], "data_folder") == "corpus_copy"
    assert option(cmds[3], "output_folder") == f"results/run/{corpus}/student/pruned_structured"


def test_commonvoice_stages_1_2_and_missing_stages():
    res = run_sh("--corpus", "commonvoice", "--stop_stage", "2", "--dry_run")
    assert res.returncode == 0, res.stderr
    cmds = stage_commands(res.stdout)
    assert positional(cmds[1], "train.py") == "hparams/commonvoice/train.yaml"
    assert positional(cmds[2], "train.py") == "hparams/commonvoice/mkd.yaml"
    assert option(cmds[2], "teacher_folder") == option(cmds[1], "output_folder")
    for stage, words in ((3, "no YAML for stage 3 (compress)"), (5, "no stage 5 (infer)"),
                         (6, "no YAML for stage 6 (probe)")):
        res = run_sh("--corpus", "commonvoice", "--stage", stage, "--stop_stage", stage, "--dry_run")
        assert res.returncode == 1 and words in res.stderr, res.stderr
        assert "stage" not in res.stdout and "Traceback" not in res.stderr
    # the whole default range fails before any stage runs
    res = run_sh("--corpus", "commonvoice", "--dry_run")
    assert res.returncode == 1 and "stage 3" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["--corpus", "nosuchcorpus"], "unknown corpus 'nosuchcorpus'"),
    ([], "--corpus is required"),
    (["--corpus", "demo", "--stage", "8"], "unknown stage '8'"),
    (["--corpus", "demo", "--stage", "0"], "unknown stage '0'"),
    (["--corpus", "demo", "--stop_stage", "teacher"], "unknown stop stage 'teacher'"),
    (["--corpus", "demo", "--stage", "5", "--stop_stage", "2"], "--stage 5 is after --stop_stage 2"),
    (["--corpus", "demo", "--bogus", "1"], "unknown option '--bogus'"),
    (["--corpus", "demo", "--stage"], "option --stage needs a value"),
])
def test_bad_arguments_fail_clearly(args, message):
    res = run_sh("--dry_run", *args)
    assert res.returncode == 1, res.stdout
    assert f"run.sh: error: {message}" in res.stderr and "Traceback" not in res.stderr
    assert not [line for line in res.stdout.splitlines() if line.startswith("stage ")]


def test_a_stage_without_its_input_says_which_stage_to_run(tmp_path):
    res = run_sh("--corpus", "demo", "--stage", "2", "--exp_dir", tmp_path / "exp")
    assert res.returncode == 1
    assert f"needs {tmp_path}/exp/teacher/results.json, written by stage 1 (teacher)" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "exp" / "student").exists()


def test_demo_stages_1_to_5(tmp_path):
    """Teacher -> MKD student -> channel pruning -> export -> infer, tiny settings; then stages 3-5
    run again (re-runnable: prune.py resumes its finished run)."""
    exp, data = tmp_path / "exp", tmp_path / "demo"
    args = ["--corpus", "demo", "--stop_stage", "5", "--exp_dir", exp, "--data_folder", data,
            "--opts", "--noprogressbar", "--train_opts", TINY_TRAIN, "--prune_opts", TINY_PRUNE, "--n_wavs", "3"]
    res = run_sh(*args, "--stage", "1", timeout=600)
    log = res.stdout[-4000:] + res.stderr[-4000:]
    assert res.returncode == 0, log
    assert [line for line in res.stdout.splitlines() if line.startswith("stage ")] == \
        [f"stage {s}: {STAGES[s]}" for s in range(1, 6)]

    teacher, student = exp / "teacher", exp / "student"
    compressed, exported = student / "pruned_structured", exp / "exported"
    for folder in (teacher, student):
        with open(folder / "results.json") as f:
            assert "test" in json.load(f)
    with open(student / "hyperparams.yaml") as f:
        text = f.read()
    assert "concat_teacher: false" in text.lower()
    assert (compressed / "inference.yaml").is_file() and (compressed / "results.json").is_file()
    assert (exported / "model.onnx").is_file() or (exported / "model.pt").is_file()
    with open(exported / "export.json") as f:
        assert "int8_accuracy" in json.load(f)

    with open(teacher / "manifests" / "test.csv", newline="") as f:
        test_wavs = [row["wav"] for row in csv.DictReader(f)]
    with open(exp / "infer.jsonl") as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert len(records) == min(3, len(test_wavs)) > 0
    for rec in records:
        assert "error" not in rec, rec
        assert rec["file"] in test_wavs
        assert rec["gender"]["label"] in ("f", "m")
    assert len({rec["file"] for rec in records}) == len(records)

    again = run_sh(*args, "--stage", "3", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "stage 1: teacher" not in again.stdout and "stage 3: compress" in again.stdout
    with open(exp / "infer.jsonl") as f:
        assert len([line for line in f if line.strip()]) == len(records)
