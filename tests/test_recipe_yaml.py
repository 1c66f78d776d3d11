"""Recipe YAMLs on shared blocks (recipes/config/recipe_yaml.py): merge order, overrides, includes."""

import glob
import os

import pytest

from recipes.config.recipe_yaml import load_recipe, open_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_RECIPES = ["speechocean762", "callcenter"]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_extends_merge_order_overrides_and_includes(tmp_path):
    _write(tmp_path / "inc" / "enc.yaml", "width: 4\nname: small\n")
    _write(tmp_path / "blocks" / "base.yaml",
           "seed: 1\nlr: 0.1\nsteps: 10\nmodel: !include:../inc/enc.yaml\n    width: !ref <steps>\n"
           "opt: !new:collections.OrderedDict\n    lr: !ref <lr>\n")
    _write(tmp_path / "blocks" / "addon.yaml", "steps: 20\nextra: !ref <model[name]>_<lr>\n")
    _write(tmp_path / "corpus" / "recipe.yaml",
           "extends: [../blocks/base.yaml, ../blocks/addon.yaml]\nlr: 0.5\nout: !ref r/<model[name]>\n")
    hp = load_recipe(str(tmp_path / "corpus" / "recipe.yaml"))
    assert hp["lr"] == 0.5 and hp["opt"]["lr"] == 0.5          # the recipe replaces the block's key
    assert hp["steps"] == 20 and hp["model"]["width"] == 20    # a later block replaces an earlier one
    assert hp["extra"] == "small_0.5" and hp["out"] == "r/small"  # includes rebased on the recipe
    assert "extends" not in hp
    hp = load_recipe(str(tmp_path / "corpus" / "recipe.yaml"), {"lr": 0.01, "steps": 3})  # command line
    assert hp["opt"]["lr"] == 0.01 and hp["model"]["width"] == 3
    text = open_recipe(str(tmp_path / "corpus" / "recipe.yaml")).read()
    assert list(load_recipe(str(tmp_path / "blocks" / "base.yaml")))[:5] == ["seed", "lr", "steps", "model", "opt"]
    assert text.index("seed:") < text.index("model:") < text.index("lr:")  # includes first, after the seed


def test_extends_errors_name_the_file(tmp_path):
    _write(tmp_path / "a.yaml", "extends: b.yaml\nx: 1\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\ny: 2\n")
    with pytest.raises(ValueError, match="loops back"):
        open_recipe(str(tmp_path / "a.yaml"))
    _write(tmp_path / "c.yaml", "extends: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="c.yaml.*missing.yaml"):
        open_recipe(str(tmp_path / "c.yaml"))


@pytest.mark.parametrize("corpus", CORPUS_RECIPES)
def test_adding_a_corpus_takes_one_short_yaml(corpus):
    """Goal: a corpus is a prep script plus one YAML under 60 lines on the shared blocks."""
    path = os.path.join(ROOT, "hparams", corpus, "train.yaml")
    with open(path) as f:
        lines = f.read().splitlines()
    assert len(lines) < 60, f"{path}: {len(lines)} lines"
    assert any(line.startswith("extends:") for line in lines)


def test_shipped_paper_defaults():
    so = os.path.join(ROOT, "hparams", "speechocean762")
    prune = load_recipe(os.path.join(so, "prune.yaml"))["pruning_schedule"]  # 002: 0.1, +0.05 / 3 rounds
    assert (prune.mode, prune.start, prune.step, prune.every) == ("threshold", 0.1, 0.05, 3)
    assert load_recipe(os.path.join(so, "prune.yaml"))["max_rounds"] == 10
    data = {"data_folder": "unused"}
    log = load_recipe(os.path.join(so, "lcmr.yaml"), data)  # 003: log scheduler, B = 40, 25 % fine-tuning
    assert (log["scheduler"], log["log_base"]) == ("log", 40)
    assert log["finetune_epochs"] / log["number_of_epochs"] == pytest.approx(0.25)
    const = load_recipe(os.path.join(so, "lcmr_constant.yaml"), data)
    assert (const["scheduler"], const["p0"]) == ("constant", 0.75)
    assert const["replacement_schedule"](0.5) == pytest.approx(0.75)


def test_every_recipe_loads_and_names_its_folder_after_the_encoder(tmp_path, monkeypatch):
    from local.make_tiny_ssl import make_tiny_ssl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # SSL recipes: a tiny checkpoint folder, nothing downloaded
    data = {"data_folder": "unused", "input_csv": "unused.csv", "model_folder": "m", "speechocean_folder": "unused",
            "mkd": False,  # MKD recipes read the embedding size from a trained teacher (tested end to end)
            "ssl_source": make_tiny_ssl(str(tmp_path / "tiny_ssl"))}
    for path in sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml"))
                       + glob.glob(os.path.join(ROOT, "hparams", "*", "*.yaml"))):
        if "/blocks/" in path or "/encoders/" in path or "/labels/" in path or "interface" in path:
            continue
        if "/probe/" in path:
            continue  # probe.py YAMLs need a trained folder
        hp = load_recipe(path, data, overrides_must_match=False)
        assert hp["output_folder"], path
    so = os.path.join(ROOT, "hparams", "speechocean762", "train.yaml")
    hp = load_recipe(so, "data_folder: x\nmodel: !include:../encoders/resnet_cpu_teacher.yaml\n")
    assert hp["output_folder"].startswith("results/speechocean762/resnet_cpu_ch_True")


def test_training_seed_does_not_move_the_speaker_split():
    """Every corpus preparation splits speakers with split_seed, not the training seed, so a second
    training seed keeps the same test speakers."""
    data = {"data_folder": "unused", "input_csv": "unused.csv", "speechocean_folder": "unused"}

    def seeds(prep):  # a pooled preparation lists several; csv_or_corpus wraps its corpus's
        preps = prep.keywords.get("preparations", [prep.keywords.get("corpus", prep)])
        return [p.keywords["seed"] for p in preps]

    for corpus in ("commonvoice", "speechocean762", "callcenter", "timit", "pooled"):
        path = os.path.join(ROOT, "hparams", corpus, "train.yaml")
        prep = load_recipe(path, {**data, "seed": 99}, overrides_must_match=False)["prepare_data"]
        assert set(seeds(prep)) == {1234}, path
        moved = load_recipe(path, {**data, "split_seed": 7}, overrides_must_match=False)["prepare_data"]
        assert set(seeds(moved)) == {7}, path


def test_model_is_built_after_the_seed_is_set(tmp_path):
    """Includes move up, but never above ``__set_seed``: the same seed builds the same initial
    weights in every recipe, a new seed other ones (a key placed between ``seed`` and
    ``__set_seed`` once let the encoder be built unseeded)."""
    import torch

    data = {"data_folder": "unused", "input_csv": "unused.csv", "speechocean_folder": "unused"}

    def weights(path, **over):
        torch.manual_seed(len(over) + int.from_bytes(os.urandom(2), "little"))  # whatever came before
        hp = load_recipe(path, {**data, **over}, overrides_must_match=False)
        return torch.cat([p.detach().flatten() for p in hp["encoder"].parameters()])

    for corpus in ("demo.yaml", "commonvoice/train.yaml", "speechocean762/train.yaml", "pooled/train.yaml"):
        path = os.path.join(ROOT, "hparams", corpus)
        assert torch.equal(weights(path), weights(path)), corpus
        assert not torch.equal(weights(path), weights(path, seed=7)), corpus
    _write(tmp_path / "base.yaml", "seed: 3\nmodel: !include:enc.yaml\nother: 1\n"
           "__set_seed: !apply:torch.manual_seed [!ref <seed>]\nlast: 2\n")
    _write(tmp_path / "r.yaml", "extends: base.yaml\nlast: 3\n")
    _write(tmp_path / "enc.yaml", "w: !new:torch.nn.Linear [2, 2]\n")
    text = open_recipe(str(tmp_path / "r.yaml")).read()  # an include written above the seeding moves below it
    assert text.index("seed:") < text.index("__set_seed:") < text.index("model:") < text.index("other:") < \
        text.index("last:")
