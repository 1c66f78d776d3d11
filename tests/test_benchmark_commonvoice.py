"""benchmarks/commonvoice.py on the tiny demo model: speechocean762-style scoring per age group
through the inference class, its cache, the majority baseline and the table (rows not run yet,
goals met / missed)."""

import csv
import json
import os

import pytest
from sklearn.metrics import f1_score

from benchmarks import commonvoice as bench
from benchmarks import speechocean_groups as so
from conftest import ROOT

AGES = ["7", "12", "17", "19", "25", "50"]  # child, child, teen, teen, adult, adult


def fake_manifest(tiny_run, path, gender_of_last=None):
    """6 demo test clips relabelled like speechocean762 (exact ages; two rows share a speaker)."""
    root, out = tiny_run
    with open(out / "manifests" / "test.csv") as f:
        rows = list(csv.DictReader(f))[:6]
    assert len(rows) == 6
    spk = ["s1", "s2", "s3", "s3", "s4", "s5"]
    for r, age, s in zip(rows, AGES, spk):
        r.update(age=age, age_group="", spk_id=s)
    if gender_of_last is not None:
        rows[-1]["gender"] = gender_of_last
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_speechocean_scores_per_group(tiny_run, tmp_path):
    from recipes.inference.interface import SpeakerProfilerInterface

    _, out = tiny_run
    manifest = tmp_path / "test.csv"
    rows = fake_manifest(tiny_run, manifest)
    scores = so.score_speechocean(out, str(manifest), batch_size=4)  # batches split the groups
    prof = SpeakerProfilerInterface.from_folder(str(out))
    # the same batches of 4 (a padded batch moves probabilities by ~1e-3, which can flip a clip the
    # tiny demo model puts near 0.5): the groups are counted independently of how batches fall
    one = [res for k in range(0, len(rows), 4) for res in prof.classify_files([r["wav"] for r in rows[k:k + 4]])]
    space = prof.label_space
    for group, idx, speakers in (("child", [0, 1], 2), ("teen", [2, 3], 1), ("adult", [4, 5], 2)):
        s = scores[group]
        kept = [i for i in idx if not one[i]["silent"]]
        assert (s["clips"], s["silent"], s["speakers"]) == (len(kept), len(idx) - len(kept), speakers)
        true = [rows[i]["gender"] for i in kept]
        pred = [one[i]["gender"]["label"] for i in kept]
        assert s["gender_acc"] == pytest.approx(sum(a == b for a, b in zip(true, pred)) / len(kept))
        assert s["gender_f1"] == pytest.approx(f1_score(true, pred, labels=space.genders, average="macro",
                                                        zero_division=0))
        per = {}
        for i in kept:  # [clips right, clips] per speaker
            c = per.setdefault(rows[i]["spk_id"], [0, 0])
            c[0] += one[i]["gender"]["label"] == rows[i]["gender"]
            c[1] += 1
        assert s["gender_per_speaker"] == per
    adults = [i for i in (4, 5) if not one[i]["silent"]]
    true = [space.sub_index_from_age(AGES[i]) for i in adults]
    pred = [space.age_sub.index(one[i]["age_sub"]["label"]) for i in adults]
    assert scores["adult"]["decade_acc"] == pytest.approx(sum(a == b for a, b in zip(true, pred)) / len(adults))
    assert scores["adult"]["decade_mace"] == pytest.approx(sum(abs(a - b) for a, b in zip(true, pred)) / len(adults))
    base = so.majority_speechocean(str(manifest), space)  # always each group's most frequent gender
    for group, idx in (("child", [0, 1]), ("teen", [2, 3]), ("adult", [4, 5])):
        true = [rows[i]["gender"] for i in idx]
        assert base[group]["gender_acc"] == pytest.approx(max(true.count(g) for g in true) / len(true))
        assert base[group]["silent"] == 0


def test_speechocean_bad_gender_names_file_and_row(tiny_run, tmp_path):
    manifest = tmp_path / "test.csv"
    fake_manifest(tiny_run, manifest, gender_of_last="x")
    with pytest.raises(ValueError, match=r"test\.csv, row 7"):
        so.score_speechocean(tiny_run[1], str(manifest))


def test_majority_baseline(tiny_run):
    _, out = tiny_run
    manifest = str(out / "manifests" / "test.csv")
    space = bench.label_space_of(out)
    base = bench.majority_baseline(manifest, space)
    labels = bench.true_indices(bench.read_csv(manifest), space, manifest)
    for t, (task, k) in enumerate(zip(bench.TASKS, (space.n_gender, space.n_sup, space.n_sub))):
        true = [lab[t] for lab in labels]
        share = true.count(base[task]["class"]) / len(true)
        assert share == max(true.count(c) for c in set(true)) / len(true)  # the most frequent class
        assert base[task]["recall"] == pytest.approx(1 / k)  # one class always right, the others never
        assert base[task]["precision"] == pytest.approx(share / k)
    sub = [lab[2] for lab in labels]
    assert base["age_sub"]["mace"] == pytest.approx(sum(abs(base["age_sub"]["class"] - y) for y in sub) / len(sub))


def test_table_cache_and_missing_rows(tiny_run, tmp_path, monkeypatch):
    _, out = tiny_run
    results = tmp_path / "bench"
    (results / "demo_row").mkdir(parents=True)
    os.symlink(out, results / "demo_row" / "1234")
    (results / "times.txt").write_text("demo_row rc=1 seconds=5\ndemo_row rc=0 seconds=180 (run alone)\n")
    manifest = tmp_path / "so_test.csv"
    fake_manifest(tiny_run, manifest)
    monkeypatch.setattr(bench, "speechocean_manifest", lambda results, data: str(manifest))
    table = tmp_path / "table.md"
    argv = ["--rows", "ecapa_cpu_ch_plain", "--add-row", "demo_row --hierarchical=False",
            "--results", str(results), "--table", str(table), "--so-data", str(tmp_path)]
    bench.main(argv)
    text = table.read_text()
    with open(out / "results.json") as f:
        res = json.load(f)["test"]
    line = next(x for x in text.splitlines() if x.startswith("| demo_row |") and "3 min" in x)
    assert f"| {100 * res['gender']['f1']:.1f} |" in line and "| 3 min (see its command) |" in line  # the successful run
    met, missed = bench.goals_cv(res)
    assert ("MISSED: " + ", ".join(missed)) in line if missed else "MISSED" not in line
    assert any(x.startswith("| ecapa_cpu_ch_plain | not run yet") for x in text.splitlines())
    assert any("--hierarchical=False" in x and x.endswith("(run alone)") for x in text.splitlines())
    assert sum(x.startswith("| majority class") for x in text.splitlines()) == 2  # both tables
    cache = results / "speechocean762_scores" / "demo_row.json"
    scores = json.loads(cache.read_text())["scores"]
    so_row = next(x for x in text.splitlines() if x.startswith("| demo_row |") and "adult gender acc" in x)
    assert f"| {100 * scores['adult']['gender_acc']:.1f} |" in so_row

    def fail(*a, **k):
        raise AssertionError("scored again although the cache holds this checkpoint")

    monkeypatch.setattr(so, "score_speechocean", fail)
    bench.main(argv)  # cached: same table
    assert table.read_text() == text


def test_row_commands_name_their_recipe():
    """A row's first option is its recipe only when it is a YAML path, not an --option=...yaml."""
    import argparse
    args = argparse.Namespace(results="results/x", seed=bench.DEFAULT_SEED, epochs=3, data="d", lr=0.001)
    for name, opts in bench.ROWS.items():
        cmd = bench.train_command(name, list(opts), args)
        assert cmd[1] in ("hparams/commonvoice/train.yaml", bench.GE2E, bench.POOLED), (name, cmd)
        assert all(o in cmd for o in opts if o != cmd[1]), (name, cmd)
    resnet = bench.train_command("resnet_cpu_ch_plain", [bench.RESNET], args)
    assert resnet[1] == "hparams/commonvoice/train.yaml" and resnet[-1] == bench.RESNET


def test_pooled_row_scores_its_common_voice_part(tmp_path):
    """A pooled model's Common Voice row: only the clips of its Common Voice test manifest, its
    pooled groups mapped onto the decade groups (teen -> teens)."""
    out = tmp_path / "pooled"
    (out / "manifests").mkdir(parents=True)
    from recipes.config.recipe_yaml import load_recipe
    pooled = load_recipe(os.path.join(ROOT, "hparams", "labels", "pooled_child_adult.yaml"))["label_space"]
    with open(out / "manifests" / "test.csv", "w") as f:
        f.write("ID,spk_id\ncv1,a\ncv2,b\ncv3,c\n")
    preds = [("cv1", "f", "f", "minor", "minor", "teen", "teen"), ("cv2", "m", "f", "young", "young", "20s", "20s"),
             ("cv3", "m", "m", "middle", "young", "30s", "20s"), ("so1", "m", "f", "minor", "minor", "child", "child")]
    with open(out / "predictions_test.csv", "w") as f:
        f.write("ID,gender_true,gender_pred,age_sup_true,age_sup_pred,age_sub_true,age_sub_pred\n")
        f.writelines(",".join(p) + "\n" for p in preds)
    res = bench.pooled_cv_results(str(out), bench.label_space_of(None), own=pooled)
    assert res["n_scored"] == 3  # the speechocean762 clip is not part of it
    assert res["gender"]["accuracy"] == pytest.approx(2 / 3)
    assert res["age_sub"]["accuracy"] == pytest.approx(2 / 3) and res["age_sub"]["mace"] == pytest.approx(1 / 3)
    assert res["age_sup"]["accuracy"] == pytest.approx(2 / 3)  # teens and 20s are both "young" here
    assert res["hierarchy_consistency"] == 1.0


def test_speakers_every_row_gets_wrong():
    def scores(per):
        return {"adult": {"gender_per_speaker": per}}
    rows = {"a": scores({"s1": [0, 20], "s2": [0, 20], "s3": [18, 20]}),
            "b": scores({"s1": [0, 20], "s2": [5, 20], "s3": [20, 20]})}
    note = " ".join(bench.contradicted_note(rows))
    assert "every clip: s1 (20 clips)" in note
    assert "a 45.0" in note and "b 62.5" in note  # (0 + 18) / 40, (5 + 20) / 40 without s1
    rows["b"]["adult"]["gender_per_speaker"]["s1"] = [1, 20]
    assert "No adult speaker" in " ".join(bench.contradicted_note(rows))
    assert bench.contradicted_note({"a": rows["a"]}) == []  # one row: nothing to agree on
    assert bench.contradicted_note({**rows, "old": {"adult": {}}}) == bench.contradicted_note(rows)  # no counts
