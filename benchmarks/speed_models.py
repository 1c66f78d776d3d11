"""Models of the speed benchmark's rows (benchmarks/speed.py): the pair's recipes, and
random-weight stand-ins when no trained folder is given (speed does not depend on weights)."""

import os

import torch
import yaml
from speechbrain.utils.checkpoints import Checkpointer

from recipes.model_folder import write_recipe_inference_yaml
from recipes.inference.model import ProfilerModel
from recipes.inference.interface import SpeakerProfilerInterface
from recipes.config.recipe_yaml import load_recipe


def yaml_paths(pair):
    """The pair's teacher (core recipe) and student (MKD recipe): (YAML, encoder YAML name) each."""
    return (("hparams/speechocean762/train.yaml", f"{pair}_teacher"),
            ("hparams/speechocean762/mkd.yaml", f"{pair}_student"))


def overrides_text(spec, out, model=None, **overrides):
    """YAML overrides of a recipe ``spec``: its output folder, no corpus (speed needs none) and
    the encoder (``model``: an encoder YAML of hparams/encoders/ without .yaml, in place of
    the spec's, as ``--model=!include:...`` does on the train.py command line)."""
    text = yaml.safe_dump({"output_folder": out, "data_folder": "unused", **overrides})
    return text + f"model: !include:../encoders/{model or spec[1]}.yaml\n"


def load_hparams(spec, tmp, model=None, **overrides):
    return load_recipe(spec[0], overrides_text(spec, os.path.join(tmp, "out"), model, **overrides))


def init_normalizer(hp):
    """Global feature statistics from one random batch (a random-weights model needs some)."""
    norm = hp["mean_var_norm"].train()
    norm(hp["compute_features"](0.1 * torch.randn(2, hp["sample_rate"])), torch.ones(2))
    norm.eval()


def random_folder(spec, folder):
    """A train.py-like output folder with random weights (a stand-in teacher for MKD)."""
    os.makedirs(folder, exist_ok=True)
    write_recipe_inference_yaml(spec[0], overrides_text(spec, folder), folder)
    hp = load_hparams(spec, folder)
    init_normalizer(hp)
    Checkpointer(os.path.join(folder, "save"), recoverables={
        "encoder": hp["encoder"], "heads": hp["heads"], "normalizer": hp["mean_var_norm"]}).save_checkpoint(
        meta={"mean_f1": 0.0})
    return folder


def random_profiler(spec, tmp, **overrides):
    hp = load_hparams(spec, tmp, **overrides)
    init_normalizer(hp)
    return ProfilerModel(hp).eval()


def profiler_for(name, args, tmp):
    teacher_yaml, student_yaml = yaml_paths(args.pair)
    if name == "teacher":
        return SpeakerProfilerInterface.from_folder(args.teacher).model if args.teacher else random_profiler(teacher_yaml, tmp)
    if name == "pruned student":
        return SpeakerProfilerInterface.from_folder(args.pruned).model
    if args.student:
        return SpeakerProfilerInterface.from_folder(args.student).model
    return random_profiler(student_yaml, tmp, mkd=False, model=args.student_model)
