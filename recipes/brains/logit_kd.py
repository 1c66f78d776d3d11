"""LogitKDBrain: logit knowledge distillation with temperature (paper 002, Eq. 2-4).

- The teacher, a core-recipe output folder (``teacher_folder``), is loaded frozen (eval
  mode, no gradients) and reads the un-augmented audio of each batch with its own Fbank and
  normaliser; its posteriors of every head are the soft targets.
- The student (encoder + heads of the YAML) is trained with ``LogitKDObjective``: the task
  objective of the core recipe (CE+LS, or +CH) mixed with the softened teacher posteriors
  at temperature T by lambda (Eq. 4). ``lam: 0`` is the "student without KD" row; then no
  teacher is loaded at all.
- The output folder is an ordinary core-recipe folder (heads on the student alone), so
  ``infer.py`` and ``prune.py`` work on it unchanged.
"""

import torch

from recipes.brains.profiling import ProfilingBrain
from recipes.brains.teacher import frozen_teacher


class LogitKDBrain(ProfilingBrain):
    """Extra hparams: ``teacher_folder`` and ``objective`` (recipes.losses.LogitKDObjective
    wrapping the task objective; its ``temperature`` and ``lam`` come from YAML)."""

    teacher = None
    train_reads_audio = True  # the teacher's logits come from the audio of each batch

    def on_fit_start(self):
        super().on_fit_start()
        self._load_teacher()

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self._load_teacher()

    def _load_teacher(self):
        """Once per run, and only when the KD term has a weight (lambda > 0)."""
        if self.teacher is not None or self.hparams.objective.lam == 0:
            return
        self.teacher = frozen_teacher(self.hparams.teacher_folder, self.device, self.hparams.label_space)

    def compute_forward(self, batch, stage):
        out = super().compute_forward(batch, stage)
        out["teacher_logits"] = None
        if self.teacher is not None:
            wavs, lens = batch.sig
            with torch.no_grad():
                probs, _ = self.teacher(wavs.to(self.device), lens.to(self.device))
            # log-posteriors are the logits up to a per-utterance constant, which the
            # softmax of Eq. 3 ignores; they also cover teachers whose heads read [s; t]
            out["teacher_logits"] = {t: p.log() for t, p in probs.items()}
        return out

    def task_objective(self, predictions, targets, stage):
        return self.hparams.objective(predictions["logits"], targets, predictions["teacher_logits"])
