"""The network of a trained folder: features -> normalisation -> encoder -> heads.

``ProfilerModel`` is a ``torch.nn.Module`` mapping waveforms to (probabilities per task,
embeddings). It is NOT the inference API: to profile recordings (labels, windows, silence,
any sample rate) use ``recipes.inference.interface.SpeakerProfilerInterface``, whose ``model`` is this
module. Training code loads it directly from a train.py output folder (frozen teachers of
MKD / logit KD / LCMR, pruning, the random-init control of probing):

    from recipes.inference.model import ProfilerModel
    model = ProfilerModel.from_folder("results/demo/1234")      # best checkpoint, eval mode
    probs, emb = model(wavs, lengths)  # probs: {"gender": (batch, 2), "age_sup": ..., "age_sub": ...}
    # with the age head also probs["age_years"]: (batch, 1) years, or (batch, 2) years and sigma
"""

import torch

from recipes.model_folder import load_inference_hparams, load_normalizer, recover_best, teacher_norm_path


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
        model = cls(load_inference_hparams(folder))
        recoverables = {"normalizer": model.mean_var_norm}
        if random_init:  # a pretrained encoder is built with its weights: replace them
            model.encoder.load_state_dict(model.encoder.random_state_dict())
        else:
            recoverables.update(encoder=model.encoder, heads=model.heads)
        recover_best(folder, recoverables)
        if model.teacher is not None and teacher_norm_path(folder):
            load_normalizer(model.teacher.mean_var_norm, teacher_norm_path(folder))
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
