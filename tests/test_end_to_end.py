"""Tiny end-to-end runs of train.py and infer.py on the demo corpus, as a user runs them."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import assert_results_match_predictions
from recipes.config.recipe_yaml import open_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(tmp_path, *extra):
    cmd = [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={tmp_path}/out",
           f"--data_folder={tmp_path}/demo", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3",
           "--noprogressbar", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def epochs_logged(tmp_path):
    with open(tmp_path / "out" / "train_log.txt") as f:
        return [line.split(",")[0] for line in f if line.startswith("epoch:")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


def test_train_writes_results(run_dir):
    log = train(run_dir, "--number_of_epochs=1")
    assert "Results" in log and "| gender |" in log
    with open(run_dir / "out" / "results.json") as f:
        res = json.load(f)["test"]
    _, rows = assert_results_match_predictions(run_dir / "out")  # the metrics are those of the predictions
    assert res["n_scored"] == res["n_manifest_rows"] == len(rows)
    assert (run_dir / "out" / "confusion_test.png").stat().st_size > 1000
    assert (run_dir / "out" / "results.md").exists()
    assert epochs_logged(run_dir) == ["epoch: 1"]


def test_resume_and_skip_bad_file(run_dir):
    # corrupt one training file after preparation: it must be skipped, not kill the run
    with open(run_dir / "out" / "manifests" / "train.csv") as f:
        victim = next(csv.DictReader(f))["wav"]
    with open(victim, "wb") as f:
        f.write(b"this is not audio")
    log = train(run_dir, "--number_of_epochs=2")
    assert "Loading a checkpoint" in log  # resumed after epoch 1
    assert epochs_logged(run_dir) == ["epoch: 1", "epoch: 2"]
    assert "skipping utterance" in log and os.path.basename(victim) in log
    # the same command again: nothing left to train, evaluation only
    train(run_dir, "--number_of_epochs=2")
    assert epochs_logged(run_dir) == ["epoch: 1", "epoch: 2"]


def test_infer_prints_labels(run_dir):
    wavs = sorted(os.listdir(run_dir / "demo" / "wav"))[:2]
    paths = [str(run_dir / "demo" / "wav" / w) for w in wavs]
    res = subprocess.run([sys.executable, "infer.py", str(run_dir / "out"), *paths],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert lines[0][0] == "file" and len(lines) == 3
    for row in lines[1:]:
        assert row[1] in ("f", "m") and row[3] in ("minor", "grown")
        assert row[5] in ("child", "teen", "adult", "senior")
        assert all(0.0 <= float(row[i]) <= 1.0 for i in (2, 4, 6))
    bad = subprocess.run([sys.executable, "infer.py", str(run_dir / "out"), "/no/such.wav"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "/no/such.wav" in bad.stderr


def test_bad_manifest_fails_before_training(tmp_path):
    (tmp_path / "man").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "man" / f"{split}.csv").write_text(
            "ID,wav,duration,spk_id,gender,age,age_group,channel\n"
            f"u_{split},/nowhere/{split}.wav,2.0,s_{split},q,30,,\n")
    cmd = [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={tmp_path}/out",
           f"--manifest_folder={tmp_path}/man", f"--data_folder={tmp_path}/demo",
           "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "train.csv, row 2" in out and "unknown gender" in out and "/nowhere/train.wav" in out
    assert not (tmp_path / "out" / "save").exists() or not any((tmp_path / "out" / "save").iterdir())


def test_mkd_teacher_frozen_and_student_learns(run_dir):
    """One MKD training step: the teacher does not change, the student does."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from recipes.brains.mkd import MKDBrain
    from recipes.data.datasets import build_datasets
    from speechbrain.dataio.dataloader import make_dataloader

    overrides = {"output_folder": str(run_dir / "mkd_unit"), "teacher_folder": str(run_dir / "out"),
                 "manifest_folder": str(run_dir / "out" / "manifests"), "data_folder": str(run_dir / "demo")}
    with open_recipe(os.path.join(ROOT, "hparams", "demo_mkd.yaml")) as f:
        hp = load_hyperpyyaml(f, overrides)
    brain = MKDBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                     checkpointer=None, run_opts={"device": "cpu"})
    brain.on_fit_start()
    batch = next(iter(make_dataloader(build_datasets(hp)["train"], **hp["train_dataloader_opts"])))
    teacher0 = {k: v.clone() for k, v in brain.teacher.state_dict().items()}
    student0 = {k: v.clone() for k, v in brain.modules.encoder.state_dict().items()}
    proj0 = {k: v.clone() for k, v in brain.modules.projector.state_dict().items()}
    brain.on_stage_start(__import__("speechbrain").Stage.TRAIN, 1)
    brain.modules.train()
    loss = brain.fit_batch(batch)
    assert torch.isfinite(loss)
    assert "kd" in brain.term_sums and brain.term_sums["kd"] > 0
    for k, v in brain.teacher.state_dict().items():
        assert torch.equal(v, teacher0[k]), f"teacher changed: {k}"
    assert not brain.teacher.training
    assert any(not torch.equal(v, student0[k]) for k, v in brain.modules.encoder.state_dict().items())
    for k, v in brain.modules.projector.state_dict().items():  # the Conv1D map is not trained
        assert torch.equal(v, proj0[k])


def test_mkd_teacher_cache_is_whole_utterance_embedding(run_dir):
    """With teacher_cache, training steps read the teacher's embedding of the whole degraded
    utterance, computed once, and never run the teacher."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    import speechbrain as sb
    from recipes.brains.mkd import MKDBrain
    from recipes.data.pipelines import make_dataset
    from recipes.data.datasets import build_datasets
    from speechbrain.dataio.dataloader import make_dataloader

    overrides = {"output_folder": str(run_dir / "mkd_cache"), "teacher_folder": str(run_dir / "out"),
                 "manifest_folder": str(run_dir / "out" / "manifests"), "data_folder": str(run_dir / "demo"),
                 "teacher_cache": True}
    os.makedirs(run_dir / "mkd_cache", exist_ok=True)
    with open_recipe(os.path.join(ROOT, "hparams", "demo_mkd.yaml")) as f:
        hp = load_hyperpyyaml(f, overrides)
    brain = MKDBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                     checkpointer=None, run_opts={"device": "cpu"})
    brain.on_fit_start()
    whole = make_dataset(str(run_dir / "out" / "manifests" / "train.csv"), hp["label_space"], hp["sample_rate"],
                         channel=hp["train_channel"])
    good = [whole[i] for i in range(len(whole)) if whole[i]["ok"]]  # the demo has one broken file
    assert len(brain.cache) == len(good) and len(good) < len(whole)
    item = max(good, key=lambda e: e["sig"].shape[0])  # unpadded in its (sorted) cache batch
    direct = brain.teacher.embed(item["sig"].unsqueeze(0))[0]
    assert torch.allclose(brain.cache[item["id"]], direct, atol=1e-4)
    assert (run_dir / "mkd_cache" / "teacher_cache.pt").is_file()
    batch = next(iter(make_dataloader(build_datasets(hp)["train"], **hp["train_dataloader_opts"])))

    def no_teacher(*args, **kwargs):
        raise AssertionError("teacher ran during a cached training step")

    brain.teacher.embed = no_teacher
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()
    assert torch.isfinite(brain.fit_batch(batch))
    assert brain.term_sums["kd"] > 0
    assert brain._train_cache().keys() == brain.cache.keys()  # same settings: the saved file
    brain.hparams.train_channel.snr_high = 1.0  # another channel: the saved cache is stale
    with pytest.raises(AssertionError, match="teacher ran"):
        brain._train_cache()


def test_mkd_teacher_adapt_norm(run_dir):
    """teacher_adapt_norm: the teacher's feature mean becomes the mean of the Fbank frames of
    the student's degraded training audio; no teacher weight changes; saved for inference."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from recipes.brains.mkd import MKDBrain
    from recipes.data.pipelines import make_dataset
    from recipes.inference.model import ProfilerModel

    out = run_dir / "mkd_adapt"
    overrides = {"output_folder": str(out), "teacher_folder": str(run_dir / "out"),
                 "manifest_folder": str(run_dir / "out" / "manifests"), "data_folder": str(run_dir / "demo"),
                 "teacher_cache": False, "teacher_adapt_norm": True}
    os.makedirs(out, exist_ok=True)
    with open_recipe(os.path.join(ROOT, "hparams", "demo_mkd.yaml")) as f:
        hp = load_hyperpyyaml(f, overrides)
    brain = MKDBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                     checkpointer=None, run_opts={"device": "cpu"})
    brain.on_fit_start()
    clean = ProfilerModel.from_folder(str(run_dir / "out"))
    whole = make_dataset(str(run_dir / "out" / "manifests" / "train.csv"), hp["label_space"], hp["sample_rate"],
                         channel=hp["train_channel"])
    frames = torch.cat([clean.compute_features(whole[i]["sig"].unsqueeze(0))[0]
                        for i in range(len(whole)) if whole[i]["ok"]])
    adapted = brain.teacher.mean_var_norm.glob_mean.view(-1)
    assert (adapted - frames.mean(0)).abs().max() < 0.05  # log-Mel values of about -20
    assert (adapted - clean.mean_var_norm.glob_mean.view(-1)).abs().max() > 0.5
    for (k, v), (_, w) in zip(brain.teacher.state_dict().items(), clean.state_dict().items()):
        assert torch.equal(v, w), k
    assert (out / "teacher_norm.pt").is_file()


def test_mkd_end_to_end(run_dir):
    cmd = [sys.executable, "train.py", "hparams/demo_mkd.yaml", f"--output_folder={run_dir}/mkd",
           f"--teacher_folder={run_dir}/out", f"--data_folder={run_dir}/demo",
           f"--manifest_folder={run_dir}/out/manifests", "--demo_speakers_per_cell=3", "--demo_utts_per_speaker=3", "--number_of_epochs=1",
           "--noprogressbar"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with open(run_dir / "mkd" / "train_log.txt") as f:
        assert "train loss_kd" in f.read()
    assert_results_match_predictions(run_dir / "mkd")
    # the student keeps a copy of its teacher; the heads' input size was read from the teacher
    from recipes.inference.model import ProfilerModel

    student = ProfilerModel.from_folder(str(run_dir / "mkd"))
    teacher = ProfilerModel.from_folder(str(run_dir / "out"))
    assert (run_dir / "mkd" / "teacher" / "inference.yaml").is_file()
    assert student.heads.heads["gender"].hidden[0].in_features == student.encoder.emb_dim + teacher.encoder.emb_dim
    # the student folder (heads on [student; teacher]) works with infer.py, even with the
    # original teacher folder moved away
    os.rename(run_dir / "out", run_dir / "out_moved")
    try:
        wav = str(run_dir / "demo" / "wav" / sorted(os.listdir(run_dir / "demo" / "wav"))[0])
        inf = subprocess.run([sys.executable, "infer.py", str(run_dir / "mkd"), wav],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        os.rename(run_dir / "out_moved", run_dir / "out")
    assert inf.returncode == 0, inf.stderr[-2000:]
    assert inf.stdout.strip().splitlines()[1].split("\t")[1] in ("f", "m")


def test_fine_tune_from_folder(run_dir):
    """init_from starts a new run from another folder's best checkpoint (paper 004 F/T)."""
    log = subprocess.run(
        [sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={run_dir}/ft",
         f"--manifest_folder={run_dir}/out/manifests", f"--data_folder={run_dir}/demo",
         f"--init_from={run_dir}/out", "--number_of_epochs=1", "--noprogressbar"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert log.returncode == 0, log.stdout[-2000:] + log.stderr[-2000:]
    assert f"initialised ['encoder', 'heads'] from {run_dir}/out" in log.stdout + log.stderr


def test_callcenter_recipe_on_prepare_csv_input(tmp_path):
    """hparams/callcenter: one input CSV (path,speaker,gender,age) -> prepare -> train -> eval."""
    from local.make_demo_corpus import make_demo_corpus
    rows = list(csv.DictReader(open(make_demo_corpus(str(tmp_path / "demo"), 3, 3))))
    adults = [r for r in rows if int(r["age"]) >= 18]  # the decade bins start at 18
    with open(tmp_path / "calls.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "gender", "age"])
        w.writeheader()
        for r in adults:
            w.writerow({"path": str(tmp_path / "demo" / r["path"]), "speaker": r["speaker"],
                        "gender": r["gender"], "age": r["age"]})
    res = subprocess.run(
        [sys.executable, "train.py", "hparams/callcenter/train.yaml", f"--input_csv={tmp_path}/calls.csv",
         f"--output_folder={tmp_path}/out", "--number_of_epochs=1", "--batch_size=8", "--noprogressbar",
         "--ckpt_interval_minutes=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    with open(tmp_path / "out" / "results.json") as f:
        res = json.load(f)["test"]
    assert len(res["age_sub"]["confusion"]) == 5  # 20s .. 60s
