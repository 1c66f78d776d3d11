"""Scaling: torchrun DDP on 2 CPU processes (gloo), dynamic batching, WebDataset shards, bf16."""

import csv
import json
import os
import shutil
import sys

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from recipes.config.recipe_yaml import open_recipe

from conftest import ROOT, assert_results_match_predictions, free_port, run_train


def demo_hparams(root, out, **overrides):
    base = {"output_folder": str(out), "data_folder": str(root / "demo"),
            "manifest_folder": str(root / "out" / "manifests")}
    with open_recipe(os.path.join(ROOT, "hparams", "demo.yaml")) as f:
        return load_hyperpyyaml(f, {**base, **overrides})


def assert_trained(out, epochs=1):
    from recipes.inference.model import ProfilerModel

    ckpts = [d for d in os.listdir(out / "save") if d.startswith("CKPT+")]
    assert len(ckpts) == 1 and not (out / "save" / ".staging").exists()
    assert (out / "save" / ckpts[0] / "CKPT.yaml").exists()
    ProfilerModel.from_folder(str(out))  # a valid, loadable checkpoint
    assert_results_match_predictions(out)
    with open(out / "train_log.txt") as f:
        assert sum(line.startswith("epoch:") for line in f) == epochs


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_torchrun_ddp_two_cpu_processes(tiny_run, tmp_path):
    root, _ = tiny_run
    out = tmp_path / "ddp"
    # its own manifest folder: data preparation runs on the main process only
    log = run_train(out, root / "demo", "--number_of_epochs=1", "--distributed_backend=gloo",
                    cmd=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                         "--master_addr=127.0.0.1", f"--master_port={free_port()}", "train.py"], timeout=600)
    assert "Results" in log
    assert_trained(out)
    assert (out / "pretrained" / "hyperparams.yaml").exists()


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_torchrun_rank_with_an_all_bad_batch_does_not_hang(tiny_run, tmp_path):
    # unshuffled (SpeechBrain: sorting != random), batch 2 on 2 ranks: rank 0 gets train rows 0,2 | 4,6 | ...; rows 4 and 6
    # point to a corrupt file, so rank 0's second batch has no audio while rank 1's has
    root, trained = tiny_run
    man = tmp_path / "manifests"
    shutil.copytree(trained / "manifests", man)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"this is not audio")
    with open(man / "train.csv") as f:
        rows = list(csv.DictReader(f))
    for i in (4, 6):
        rows[i]["wav"] = str(bad)
    with open(man / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "ddp_bad"
    log = run_train(out, root / "demo", "--number_of_epochs=1", "--distributed_backend=gloo",
                    f"--manifest_folder={man}", "--batch_size=2", "--sorting=ascending",
                    cmd=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                         "--master_addr=127.0.0.1", f"--master_port={free_port()}", "train.py"], timeout=600)
    assert "skipping utterance" in log and "dropped 2 bad utterance(s)" in log
    assert_trained(out)


def test_dynamic_batch_sampler_batches(tiny_run, tmp_path):
    from recipes.data.datasets import build_datasets, loader_kwargs

    root, _ = tiny_run
    hp = demo_hparams(root, tmp_path / "dyn", dynamic_batching=True, max_batch_seconds=9.0)
    datasets = build_datasets(hp)
    kwargs = loader_kwargs(hp, datasets)
    for split, cap in (("train", hp["crop_seconds"]), ("valid", None), ("test", None)):
        sampler = kwargs[split]["batch_sampler"]
        batches = list(iter(sampler))
        assert all(len(b) <= hp["dynamic_batch_sampler"]["max_batch_ex"] for b in batches)
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen))
        if split == "train":  # every batch within the budget, no 1-utterance BatchNorm batch
            assert all(len(b) > 1 and sum(sampler.get_durations(b)) <= 9.0 for b in batches)
            assert max(sampler.get_durations(seen)) <= cap
        else:  # evaluation sees every utterance once
            assert sorted(seen) == list(range(len(datasets[split])))


def test_dynamic_batching_train_run(tiny_run, tmp_path):
    root, out = tiny_run
    log = run_train(tmp_path / "dyn", root / "demo", "--number_of_epochs=1", "--dynamic_batching=True",
                    f"--manifest_folder={out}/manifests")
    assert "DynamicBatchSampler" in log
    assert_trained(tmp_path / "dyn")


def test_shards_give_the_file_examples_and_train(tiny_run, tmp_path):
    from recipes.data.datasets import build_datasets

    root, out = tiny_run
    files = build_datasets(demo_hparams(root, tmp_path / "f", crop_seconds=None))
    hp = demo_hparams(root, tmp_path / "s", crop_seconds=None, use_shards=True, samples_per_shard=16)
    shards = build_datasets(hp)
    meta = json.loads((tmp_path / "s" / "shards" / "train" / "meta.json").read_text())
    assert meta["num_samples"] == len(files["train"]) and len(meta["shards"]) > 1
    for split in ("train", "valid", "test"):
        a = {e["id"]: e for e in files[split]}
        b = {e["id"]: e for e in shards[split]}
        assert a.keys() == b.keys()
        for uid, ex in a.items():
            assert torch.equal(ex["sig"], b[uid]["sig"]) and ex["ok"] == b[uid]["ok"]
            for key in ("gender_idx", "age_sup_idx", "age_sub_idx"):
                assert torch.equal(ex[key], b[uid][key])
        if split != "train":  # the evaluation order too
            assert [e["id"] for e in files[split]] == [e["id"] for e in shards[split]]
    # a tiny training run from the shards (written by train.py itself into its shard_folder)
    shutil.rmtree(tmp_path / "s")
    run_train(tmp_path / "s", root / "demo", "--number_of_epochs=1", "--use_shards=True",
              "--samples_per_shard=16", f"--manifest_folder={out}/manifests")
    assert (tmp_path / "s" / "shards" / "test" / "meta.json").exists()
    assert_trained(tmp_path / "s")


def test_bf16_precision_on_cpu(tiny_run, tmp_path):
    root, out = tiny_run
    log = run_train(tmp_path / "bf16", root / "demo", "--number_of_epochs=1", "--precision=bf16",
                    "--eval_precision=bf16", f"--manifest_folder={out}/manifests")
    assert "--precision=bf16" in log
    assert_trained(tmp_path / "bf16")
