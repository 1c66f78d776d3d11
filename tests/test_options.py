"""Strict recipe options: a misspelt key or override is an error naming the closest known key."""

import glob
import os
import re
import subprocess
import sys

import pytest
import ruamel.yaml

from recipes.config.options import OptionError, block_keys, check_options, run_option_keys
from recipes.config.recipe_yaml import load_checked, open_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RECIPES = ("encoders", "labels", "blocks")


def recipes():
    paths = glob.glob(os.path.join(ROOT, "hparams", "*.yaml")) + glob.glob(os.path.join(ROOT, "hparams", "*", "*.yaml"))
    return sorted(p for p in paths if not any(part in p for part in NOT_RECIPES))


def own_keys(path):
    with open(path) as f:
        return list(ruamel.yaml.YAML().load(f) or {})


@pytest.mark.parametrize("path", recipes(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_recipe_passes_the_check(path):
    keys = check_options(open_recipe(path).read(), None, path, own_keys(path))
    assert "output_folder" in keys


def test_misspelt_override_names_the_closest_key():
    text = open_recipe(os.path.join(ROOT, "hparams", "demo.yaml")).read()
    with pytest.raises(OptionError, match="--teacher_cach; did you mean 'teacher_cache'"):
        check_options(text, "teacher_cach: True\n", "demo", [])
    with pytest.raises(OptionError, match="did you mean 'balance_sampling_by'"):
        check_options(text, {"balance_sampling": ["gender"]}, "demo", [])
    # an optional key the recipe leaves out, and a SpeechBrain run option, are accepted
    check_options(text, {"teacher_cache": True, "ckpt_interval_steps": 5}, "demo", [])


def test_misspelt_key_in_a_recipe_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"extends: {os.path.join(ROOT, 'hparams', 'demo.yaml')}\nlabel_noise_rat: 0.2\n")
    with pytest.raises(OptionError, match="unknown key 'label_noise_rat'.*'label_noise_rate'"):
        load_checked(str(recipe))
    recipe.write_text(f"extends: {os.path.join(ROOT, 'hparams', 'demo.yaml')}\nlabel_noise_rate: 0.2\n")
    hp = load_checked(str(recipe))
    assert hp["label_noise_rate"] == 0.2 and hp["teacher_cache"] is False  # blocks/train.yaml's default


def test_train_py_refuses_an_unknown_option_before_doing_anything(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "train.py", "hparams/demo.yaml", f"--output_folder={out}",
                           "--lr_milestone=[1]"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "unknown option --lr_milestone; did you mean 'lr_milestones'?" in proc.stderr
    assert not out.exists()


def test_every_key_the_code_reads_is_declared():
    """The blocks stay in step with the code: every ``hparams["x"]``, ``hparams.get("x")``,
    ``self.hparams.x`` and ``hp.x`` read in recipes/ and the entry scripts is declared by a
    block of hparams/blocks/ (or is a SpeechBrain run option)."""
    pattern = re.compile(r'(?:self\.hparams|\bhparams|\bhp)(?:\["([a-z_0-9]+)"\]|\.get\("([a-z_0-9]+)"'
                         r'|\.([a-z_][a-z_0-9]*)\b(?!\())')
    files = glob.glob(os.path.join(ROOT, "recipes", "**", "*.py"), recursive=True) + \
        glob.glob(os.path.join(ROOT, "*.py"))
    declared = block_keys() | run_option_keys() | {"pruner", "reference"}  # set by the pruning run
    not_keys = {"get", "setdefault", "items", "keys", "values", "update", "pop"}
    missing = set()
    for path in files:
        with open(path) as f:
            for key in (k for m in pattern.finditer(f.read()) for k in m.groups() if k):
                if key not in declared and key not in not_keys:
                    missing.add((os.path.relpath(path, ROOT), key))
    assert not missing, f"keys read by the code but declared by no block of hparams/blocks/: {sorted(missing)}"


def test_defaults_live_in_the_blocks_only():
    """One source of defaults: the code holds no table of option defaults, and a recipe's
    optional keys come from the blocks it extends."""
    import recipes.config.options as options

    assert not hasattr(options, "OPTIONAL") and not hasattr(options, "with_defaults")
    hp = load_checked(os.path.join(ROOT, "hparams", "demo_prune.yaml"), {"model_folder": "m"})
    assert hp["use_shards"] is False and hp["pooled_manifest_folders"] == []  # blocks/data.yaml


def test_an_mkd_recipe_loads_without_its_teacher(tmp_path):
    """The teacher is read when training starts, not while the YAML loads."""
    hp = load_checked(os.path.join(ROOT, "hparams", "demo_mkd.yaml"),
                      {"teacher_folder": str(tmp_path / "no_such_teacher"), "output_folder": str(tmp_path / "o")})
    assert hp["heads"].input_size == hp["emb_dim"]  # sized from the teacher by MKDBrain
    hp = load_checked(os.path.join(ROOT, "hparams", "demo_lcmr.yaml"),
                      {"teacher_folder": str(tmp_path / "no_such_teacher"), "output_folder": str(tmp_path / "o")})
    assert hp["replacing_encoder"].teacher is None
