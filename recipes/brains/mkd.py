"""MKDBrain: teacher-student mixup knowledge distillation (paper 004, Sections 3.1-3.2).

- The teacher, a core-recipe output folder, is loaded frozen (eval mode, no gradients) and
  sees the un-augmented features of the student's utterance (its own Fbank + norm).
- The student sees the temporal-frequency mixup of its features (Eq. 1) during training.
- Feature KD (Eq. 2, MSE or 1 - cosine) between the student's embedding, mapped by a
  non-trainable Conv1D to the teacher's size, and the teacher's embedding; weight
  ``kd_weight`` (lambda = 0.25 in Eq. 3).
- ``concat_teacher``: the heads read Z = [student; teacher] (paper 004); False = heads on
  the student alone, so the deployed student needs no teacher.
- ``teacher_cache``: the teacher embeds each (deterministically degraded) training utterance
  once, whole, before epoch 1, and every step reads that embedding instead of running the
  teacher on the crop: the per-step cost is then the student's plus mixup (see
  benchmarks/results/mkd_cost_*.md); the teacher's target is its view of the whole utterance.
  Validation embeddings are cached after their first pass too.
- ``teacher_adapt_norm``: the frozen teacher's feature mean/std are re-estimated on the
  student's (degraded) training audio; its weights do not change (recipes/adaptation.py).
- ``mkd: False`` turns all of it off (the "base" / "+CH" student rows), so one YAML gives
  the four rows with two switches (``mkd``, ``hierarchical``).
"""

import os

import torch

import speechbrain as sb

from recipes.adaptation import adapt_normalizer
from recipes.brains.profiling import ProfilingBrain
from recipes.brains.teacher import frozen_teacher, size_student_for_teacher, stored_teacher
from recipes.embedding_cache import cached_batch, cached_embeddings, manifests_key, settings_key
from recipes.losses import feature_kd_loss
from recipes.model_folder import TEACHER_NORM, load_normalizer, save_normalizer, teacher_emb_dim


class FixedProjection(torch.nn.Module):
    """Non-trainable Conv1D (kernel 1) mapping student features to the teacher's size
    (``out_dim``, set by ``set_out_dim`` when the brain has read it from the teacher; the
    identity until then and when the sizes agree)."""

    def __init__(self, in_dim, out_dim=None, seed=0):
        super().__init__()
        self.in_dim, self.seed, self.conv = int(in_dim), seed, None
        if out_dim is not None:
            self.set_out_dim(out_dim)

    def set_out_dim(self, out_dim):
        self.conv = None
        if int(out_dim) != self.in_dim:
            g = torch.Generator().manual_seed(self.seed)  # its own stream: the same map every run
            self.conv = torch.nn.Conv1d(self.in_dim, int(out_dim), 1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(int(out_dim), self.in_dim, 1, generator=g) / self.in_dim ** 0.5)
            self.conv.weight.requires_grad_(False)

    def forward(self, x):
        return x if self.conv is None else self.conv(x.unsqueeze(-1)).squeeze(-1)


class MKDBrain(ProfilingBrain):
    """Extra hparams: mkd, teacher_folder, mixup (recipes.augment.MixupView),
    kd_weight, kd_criterion ('mse' | 'cos'), concat_teacher, projector; optional
    teacher_cache and teacher_adapt_norm (bools, see the module docstring)."""

    train_reads_audio = True  # the student encoder (and a teacher without cache) read the audio

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        # the teacher is known when training starts: its copy in the output folder, its
        # embedding size for the projection and (concat_teacher) the heads' input
        self._teacher_dir = None
        if hparams["mkd"]:
            self._teacher_dir = stored_teacher(hparams["teacher_folder"], hparams["output_folder"])
            size_student_for_teacher(hparams, modules, teacher_emb_dim(self._teacher_dir))
        super().__init__(modules=modules, opt_class=opt_class, hparams=hparams, run_opts=run_opts,
                         checkpointer=checkpointer)

    def on_fit_start(self):
        super().on_fit_start()
        self._load_teacher()
        self.cache = {}
        if self.teacher is not None and self.hparams.teacher_cache:
            self.cache = self._train_cache()

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self._load_teacher()

    def _load_teacher(self):
        """Load the frozen teacher once (fit and evaluate both ask for it); with
        ``teacher_adapt_norm``, its feature statistics come from the student's training
        audio (recipes/adaptation.py), saved as <output_folder>/teacher_norm.pt."""
        if not self.hparams.mkd or getattr(self, "teacher", None) is not None:
            self.teacher = getattr(self, "teacher", None)
            return
        self.teacher = frozen_teacher(self.teacher_folder(), self.device)
        if self.hparams.teacher_adapt_norm:
            path = os.path.join(self.hparams.output_folder, TEACHER_NORM)
            if not os.path.isfile(path):
                adapt_normalizer(self.teacher, self._whole_train_loader(), self.device)
                if sb.utils.distributed.if_main_process():
                    save_normalizer(self.teacher.mean_var_norm, path)
                sb.utils.distributed.ddp_barrier()
            load_normalizer(self.teacher.mean_var_norm, path, self.device)

    def teacher_folder(self):
        """The teacher: the copy stored in <output_folder>/teacher when training started."""
        return self._teacher_dir

    def _train_cache(self):
        """id -> teacher embedding of the whole degraded training utterance, computed once
        and kept in <output_folder>/teacher_cache.pt (reused when the teacher is the same)."""
        path = os.path.join(self.hparams.output_folder, "teacher_cache.pt")
        teacher_id = [os.path.abspath(self.teacher_folder()), bool(self.hparams.teacher_adapt_norm),
                      *manifests_key(self._train_csvs()), settings_key(self.hparams.train_channel)]
        return cached_embeddings(path, teacher_id, self.teacher, self._whole_train_loader(), self.device,
                                 "teacher cache")

    def teacher_embed(self, batch, stage):
        """The teacher's embedding of each utterance of the batch (cached when enabled)."""
        cache = getattr(self, "cache", None)
        emb = cached_batch(cache, batch, stage, self.device)
        if emb is not None:
            return emb
        wavs, wav_lens = batch.sig
        with torch.no_grad():
            emb = self.teacher.embed(wavs.to(self.device), wav_lens.to(self.device))
        if cache and stage == sb.Stage.VALID:  # whole utterances: the same every epoch
            cache.update(zip(batch.id, emb.cpu()))
        return emb

    def student_inputs(self, feats, lens, stage):
        if self.hparams.mkd and stage == sb.Stage.TRAIN and self.hparams.mixup is not None:
            return self.hparams.mixup(feats, lens)
        return feats

    def compute_forward(self, batch, stage):
        feats, lens = self.features(batch, stage)
        student = self.modules.encoder(self.student_inputs(feats, lens, stage), lens)
        out = {"emb": student, "teacher": None}
        z = student
        if self.teacher is not None:
            teacher = self.teacher_embed(batch, stage)
            out["teacher"] = teacher
            if self.hparams.concat_teacher:
                z = torch.cat([student, teacher], dim=-1)
        out["logits"] = self.modules.heads(z)
        return out

    def extra_objectives(self, predictions, batch, stage):
        if predictions["teacher"] is None or self.hparams.kd_weight <= 0:
            return {}
        kd = feature_kd_loss(self.modules.projector(predictions["emb"]), predictions["teacher"],
                             self.hparams.kd_criterion)  # Eq. 2
        return {"kd": (self.hparams.kd_weight, kd)}

