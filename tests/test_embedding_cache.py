"""recipes/embedding_cache.py: training batches of a frozen encoder skip audio once cached."""

import csv

import torch

from recipes.data.pipelines import SkipBadCollate, make_dataset
from recipes.embedding_cache import skip_cached_audio


def manifest(tmp_path, ids):
    """A manifest whose audio files do not exist: any attempt to read them marks the row bad."""
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "wav", "duration", "spk_id", "gender", "age", "age_group"])
        for i, uid in enumerate(ids):
            w.writerow([uid, str(tmp_path / f"{uid}.wav"), 2.0, f"s{i}", "fm"[i % 2], "30", ""])
    return str(path)


def test_cached_training_set_reads_labels_only(tmp_path, label_space):
    ids = ["u1", "u2", "u3"]
    data = make_dataset(manifest(tmp_path, ids), label_space, 8000, crop_seconds=1.0)
    assert not data[0]["ok"]  # as built, the dataset reads (here: missing) audio
    partial = {u: torch.zeros(4) for u in ids[:2]}
    assert not skip_cached_audio(data, partial)  # one utterance not cached: audio stays
    assert "sig" in data[0]
    assert not skip_cached_audio(data, None)
    assert skip_cached_audio(data, {u: torch.zeros(4) for u in ids})
    item = data[1]
    assert "sig" not in item and "ok" not in item and item["gender_idx"].item() == 1
    batch = SkipBadCollate()([data[i] for i in range(3)])
    assert batch.id == ids and batch.gender_idx.data.view(-1).tolist() == [0, 1, 0]  # no row dropped
