"""Models of the speed benchmark's rows (benchmarks/speed.py): the pair's YAMLs, and
random-weight stand-ins when no trained folder is given (speed does not depend on weights)."""

import os

import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from recipes.experiment import write_inference_yaml
from recipes.inference import ProfilerModel
from recipes.interface import SpeakerProfilerInterface


def yaml_paths(pair):
    return f"hparams/speechocean762/{pair}.yaml", f"hparams/speechocean762/{pair}_mkd.yaml"


def load_hparams(path, tmp, model=None, **overrides):
    """The YAML with ``overrides``; ``model``: an encoder YAML of hparams/encoders/ (name
    without .yaml) in place of the one the YAML includes (as ``--model=!include:...`` does
    on the train.py command line)."""
    text = yaml.safe_dump({"output_folder": os.path.join(tmp, "out"), **overrides})
    if model:
        text += f"model: !include:../encoders/{model}.yaml\n"
    with open(path) as f:
        return load_hyperpyyaml(f, text)


def init_normalizer(hp):
    """Global feature statistics from one random batch (a random-weights model needs some)."""
    norm = hp["mean_var_norm"].train()
    norm(hp["compute_features"](0.1 * torch.randn(2, hp["sample_rate"])), torch.ones(2))
    norm.eval()


def random_folder(yaml_path, folder):
    """A train.py-like output folder with random weights (a stand-in teacher for MKD)."""
    os.makedirs(folder, exist_ok=True)
    write_inference_yaml(yaml_path, {"output_folder": folder}, os.path.join(folder, "inference.yaml"))
    hp = load_hparams(yaml_path, folder)
    init_normalizer(hp)
    Checkpointer(os.path.join(folder, "save"), recoverables={
        "encoder": hp["encoder"], "heads": hp["heads"], "normalizer": hp["mean_var_norm"]}).save_checkpoint(
        meta={"mean_f1": 0.0})
    return folder


def random_profiler(yaml_path, tmp, **overrides):
    hp = load_hparams(yaml_path, tmp, **overrides)
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
