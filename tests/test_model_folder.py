"""recipes/model_folder.py owns the trained-folder format: folders written before it existed
load and answer as they did, and no other module writes or parses inference.yaml."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def probs_of(folder):
    from recipes.inference.interface import SpeakerProfilerInterface

    res = SpeakerProfilerInterface.from_folder(str(folder)).classify_file(os.path.join(FIXTURES, "legacy_clip.wav"))
    return {t: res[t]["probs"] for t in ("gender", "age_sup", "age_sub")}


@pytest.mark.parametrize("name", ["legacy_folder", "legacy_exported"])
def test_folders_written_before_load_and_answer_the_same(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), folder)
    expected = json.load(open(os.path.join(FIXTURES, "legacy_expected.json")))[name]
    got = probs_of(folder)
    for task, probs in expected.items():  # the front-end's 20 Hz high-pass came after: ~1e-3 on this clip
        assert got[task] == pytest.approx(probs, abs=5e-3), task


def test_old_import_paths_still_resolve():
    """Exported folders' custom_interface.py imports recipes.interface; older inference.yaml
    files build recipes.inference.ProfilerModel."""
    from recipes.inference import ProfilerModel, SpeakerProfiler
    from recipes.inference.interface import SpeakerProfilerInterface
    from recipes.interface import SpeakerProfilerInterface as Old

    assert Old is SpeakerProfilerInterface and SpeakerProfiler is ProfilerModel
    shim = open(os.path.join(FIXTURES, "legacy_exported", "custom_interface.py")).read()
    assert "from recipes.interface import SpeakerProfilerInterface" in shim


def test_foreign_class_loads_a_legacy_export(tmp_path):
    """SpeechBrain's foreign_class on an exported folder (its custom_interface.py), as a user of
    speechbrain.inference loads it."""
    folder = tmp_path / "exp"
    shutil.copytree(os.path.join(FIXTURES, "legacy_exported"), folder)
    code = ("from speechbrain.inference.interfaces import foreign_class\n"
            f"p = foreign_class(source={str(folder)!r}, pymodule_file='custom_interface.py', "
            "classname='SpeakerProfilerInterface', savedir=" + repr(str(tmp_path / "sb")) + ")\n"
            f"print(p.classify_file({os.path.join(FIXTURES, 'legacy_clip.wav')!r})['gender']['label'])\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    expected = json.load(open(os.path.join(FIXTURES, "legacy_expected.json")))["legacy_exported"]["gender"]
    assert res.stdout.strip().splitlines()[-1] == max(expected, key=expected.get)


def test_a_refreshed_export_of_a_legacy_folder(tmp_path):
    """A trained folder's pretrained/ is (re)written by model_folder.export_pretrained: it
    records the checkpoint and holds the interface options and weights."""
    from recipes.model_folder import exported_checkpoint, has_interface_options, pretrained_source

    folder = tmp_path / "f"
    shutil.copytree(os.path.join(FIXTURES, "legacy_folder"), folder)
    out = pretrained_source(str(folder))
    ckpt = os.path.basename(glob.glob(str(folder / "save" / "CKPT+*"))[0])
    assert exported_checkpoint(out) == ckpt and has_interface_options(out)
    assert {"encoder.ckpt", "heads.ckpt", "normalizer.ckpt", "custom_interface.py"} <= set(os.listdir(out))


def test_inference_yaml_is_written_and_parsed_in_one_module():
    files = [p for pattern in ("*.py", "recipes/**/*.py", "local/*.py", "benchmarks/*.py")
             for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)]
    holders = sorted(os.path.relpath(p, ROOT) for p in files if '"inference.yaml"' in open(p).read())
    assert holders == ["recipes/model_folder.py"], holders


def test_pruned_encoder_entry_builds_the_pruned_encoder(tmp_path):
    """Structured pruning's inference.yaml: the model's encoder entry renamed and rebuilt at the
    pruned shapes by a YAML edit (no regex); the folder loads."""
    from recipes.compression.structured import pruned_encoder_entry
    from recipes.model_folder import copy_inference_yaml, load_inference_hparams

    src = tmp_path / "src"
    shutil.copytree(os.path.join(FIXTURES, "legacy_folder"), src)
    copy_inference_yaml(str(src), str(tmp_path / "dst"),
                        edit=lambda tree: pruned_encoder_entry(tree, {"blocks.0.conv.conv.weight": [8, 80, 5]}))
    text = (tmp_path / "dst" / "inference.yaml").read_text()
    assert "encoder_unpruned:" in text and "!apply:recipes.compression.structured.reshaped" in text
    assert "blocks.0.conv.conv.weight: [8, 80, 5]" in text
    load_inference_hparams(str(src))  # the source is untouched and loads


def test_recipes_package_has_no_import_circles():
    """The package's import graph (recipes.* modules importing recipes.* modules) has no cycle."""
    import ast

    graph = {}
    for path in glob.glob(os.path.join(ROOT, "recipes", "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        mod = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recipes"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("recipes")}
        graph[mod] = deps - {mod}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep in graph and dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
