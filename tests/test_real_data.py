"""Preparation of the real corpora; skipped where ../shared/data is absent."""

import os

from hyperpyyaml import load_hyperpyyaml

from conftest import SHARED_DATA, needs_shared
from local.prepare_speechocean762 import prepare_speechocean762
from recipes.data.manifest import check_speaker_disjoint, validate_manifest


@needs_shared("speechocean762-8k")
def test_prepare_speechocean762(tmp_path):
    out = prepare_speechocean762(os.path.join(SHARED_DATA, "speechocean762-8k"), str(tmp_path))
    with open("hparams/labels/speechocean762.yaml") as f:
        ls = load_hyperpyyaml(f)["label_space"]
    rows = {s: validate_manifest(p, ls) for s, p in out.items()}
    check_speaker_disjoint(out)
    assert len({r["spk_id"] for r in rows["test"]}) == 125
    assert len(rows["test"]) == 2500
    train_spk = {r["spk_id"] for r in rows["train"]} | {r["spk_id"] for r in rows["valid"]}
    assert len(train_spk) == 125 and len({r["spk_id"] for r in rows["valid"]}) >= 8
    assert {r["gender"] for r in rows["train"]} == {"f", "m"}
    assert all(r["wav"].endswith(".flac") and 1.0 <= float(r["duration"]) <= 20.0 for r in rows["train"])
    # every sub-group is present in train and test
    for split in ("train", "test"):
        assert {ls.sub_index(r["age"]) for r in rows[split]} == set(range(ls.n_sub))
