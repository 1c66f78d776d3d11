"""The network of a trained folder: features -> normalisation -> encoder -> heads.

``ProfilerModel`` is a ``torch.nn.Module`` mapping waveforms to (probabilities per task,
embeddings). It is NOT the inference API: to profile recordings (labels, windows, silence,
any sample rate) use ``recipes.interface.SpeakerProfilerInterface``, whose ``model`` is this
module. Training code loads it directly from a train.py output folder (frozen teachers of
MKD / logit KD / LCMR, pruning, the random-init control of probing):

    from recipes.inference import ProfilerModel
    model = ProfilerModel.from_folder("results/demo/1234")      # best checkpoint, eval mode
    probs, emb = model(wavs, lengths)  # probs: {"gender": (batch, 2), "age_sup": ..., "age_sub": ...}
    # with the age head also probs["age_years"]: (batch, 1) years, or (batch, 2) years and sigma
"""

import os
import re

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from recipes.teacher_folder import resolve_teacher_folder

# an MKD student's copy of its teacher's feature statistics, when re-estimated on its domain
TEACHER_NORM = "teacher_norm.pt"


def save_normalizer(norm, path):
    """Global mean/std of an InputNormalization, written atomically."""
    torch.save({"glob_mean": norm.glob_mean.cpu(), "glob_std": norm.glob_std.cpu()}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_normalizer(norm, path, device="cpu"):
    stats = torch.load(path)
    norm.glob_mean, norm.glob_std = stats["glob_mean"].to(device), stats["glob_std"].to(device)


class ProfilerModel(torch.nn.Module):
    """Features + normalisation + encoder + heads of a trained folder, in eval mode."""

    def __init__(self, hparams):
        super().__init__()
        self.sample_rate = hparams["sample_rate"]
        self.compute_features = hparams["compute_features"]
        self.mean_var_norm = hparams["mean_var_norm"]
        self.encoder = hparams["encoder"]
        self.heads = hparams["heads"]
        self.label_space = hparams["label_space"]
        # MKD students whose heads read [student; teacher] embeddings (paper 004 Z)
        self.teacher = None
        if hparams.get("concat_teacher") and hparams.get("mkd"):
            self.teacher = ProfilerModel.from_folder(hparams["teacher_folder"])

    @classmethod
    def from_folder(cls, folder, device="cpu", random_init=False):
        """random_init: the same architecture with fresh random weights (a probing control);
        only the feature normaliser's statistics are loaded."""
        yaml_path = os.path.join(folder, "inference.yaml")
        if not os.path.isfile(yaml_path):
            raise FileNotFoundError(f"{yaml_path} not found: is {folder} a train.py output folder?")
        with open(yaml_path) as f:
            text = f.read()
        teacher = re.search(r"^teacher_folder: (.+)$", text, re.M)
        overrides = {}
        if teacher and teacher.group(1).strip() not in ("null", "None"):  # an MKD student's teacher
            overrides["teacher_folder"] = resolve_teacher_folder(teacher.group(1).strip(), folder)
        hparams = load_hyperpyyaml(text, overrides)
        model = cls(hparams)
        recoverables = {"normalizer": model.mean_var_norm}
        if random_init:  # a pretrained encoder is built with its weights: replace them
            model.encoder.load_state_dict(model.encoder.random_state_dict())
        else:
            recoverables.update(encoder=model.encoder, heads=model.heads)
        ckpt = Checkpointer(os.path.join(folder, "save"), recoverables=recoverables, allow_partial_load=True)
        if ckpt.recover_if_possible(max_key="mean_f1") is None:
            raise FileNotFoundError(f"no checkpoint in {folder}/save")
        teacher_norm = os.path.join(folder, TEACHER_NORM)
        if model.teacher is not None and os.path.isfile(teacher_norm):
            load_normalizer(model.teacher.mean_var_norm, teacher_norm)
        return model.to(device).eval()

    @torch.no_grad()
    def embed(self, wavs, lengths=None):
        """wavs (batch, samples) at self.sample_rate -> encoder embeddings (batch, emb_dim)."""
        if lengths is None:
            lengths = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.compute_features(wavs)
        feats = self.mean_var_norm(feats, lengths)
        return self.encoder(feats, lengths)

    @torch.no_grad()
    def forward(self, wavs, lengths=None):
        """wavs (batch, samples) at self.sample_rate -> (probs dict, embeddings)."""
        emb = self.embed(wavs, lengths)
        if self.teacher is not None:
            emb = torch.cat([emb, self.teacher.embed(wavs, lengths)], dim=-1)
        logits = self.heads(emb)  # the age head's years (and sigma), "age_years", pass through
        return {t: v if t == "age_years" else torch.softmax(v, dim=-1) for t, v in logits.items()}, emb


# The former name: exported folders' hyperparams.yaml files and older imports refer to it.
SpeakerProfiler = ProfilerModel
