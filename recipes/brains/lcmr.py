"""LCMRBrain: knowledge distillation by module replacing (paper 003, LCMR).

- ``modules.encoder`` and ``modules.heads`` are ``ModuleReplacing`` pairs (teacher, student)
  split into matching modules (ECAPA: blocks + tail; ResNet: stem, stages, tail; heads: one
  module per task). At every training step each module is the student's with probability
  p (Eq. 1-2); p follows the YAML scheduler (constant, linear, logarithmic Eq. 5,
  exponential) over ``replacing_epochs``, then p = 1 for the fine-tuning epochs.
- Only the task losses of the core recipe (no KD term, no KD weight).
- Strategy 2 (``strategy: 2``): the teacher comes from ``teacher_folder`` (encoder, heads
  and feature statistics) and is frozen; Strategy 1: it is trained jointly (initialised from that folder).
- Validation and test use the student alone, so checkpoints are ranked by the student's
  F1. When evaluation starts (after training), the best checkpoint's student is extracted
  into ``student_folder``: a standalone core-recipe folder (save/CKPT+* with encoder, heads,
  normalizer, counter; inference.yaml; results.json) for ``infer.py`` and ``prune.py``.
- Under torchrun (DDP), pass ``--find_unused_parameters``: the modules not drawn at a step
  get no gradient. The draw of a batch is a function of (replacing seed, epoch, batch index),
  so every rank replaces the same modules, and a step that draws only frozen teacher modules
  is skipped on all ranks together (no rank waits in an all-reduce).
"""

import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from recipes.brains.teacher import check_same_labels
from recipes.brains.profiling import ProfilingBrain
from recipes.checkpoint import AtomicCheckpointer
from recipes.evaluation.metrics import write_results
from recipes.inference.model import ProfilerModel
from recipes.model_folder import copy_inference_yaml

logger = logging.getLogger(__name__)


class LCMRBrain(ProfilingBrain):
    """Extra hparams: ``replacement_schedule`` (recipes.compression.replacing), ``strategy``,
    ``teacher_folder`` (the teacher's architecture, weights and feature statistics), ``encoder``
    and ``heads`` (the student's), ``init_student_from_teacher``, ``student_folder``."""

    steps_per_epoch = 1
    replacing_rate = 0.0

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        # the teacher's modules come from its folder when training starts (no architecture in
        # the YAML); with strategy 1 they train and are saved in this run's checkpoints
        self.teacher = ProfilerModel.from_folder(hparams["teacher_folder"])
        check_same_labels(hparams["label_space"], self.teacher.label_space, hparams["teacher_folder"])
        modules["encoder"].set_teacher(self.teacher.encoder)
        modules["heads"].set_teacher(self.teacher.heads)
        if checkpointer is not None:
            checkpointer.add_recoverables({"teacher_encoder": self.teacher.encoder,
                                           "teacher_heads": self.teacher.heads})
        super().__init__(modules=modules, opt_class=opt_class, hparams=hparams, run_opts=run_opts,
                         checkpointer=checkpointer)

    def make_dataloader(self, dataset, stage, *args, **kwargs):
        loader = super().make_dataloader(dataset, stage, *args, **kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = max(len(loader), 1)  # t of the scheduler counts epochs
        return loader

    def on_fit_start(self):
        self._init_pairs()
        super().on_fit_start()  # optimizer, then this run's own checkpoint if any

    def _init_pairs(self):
        hp = self.hparams
        stats = self.teacher.mean_var_norm._statistics_dict()
        self.modules.mean_var_norm._load_statistics_dict(
            {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in stats.items()})
        self.modules.mean_var_norm.update_until_epoch = 0  # the teacher's features, unchanged
        if hp.init_student_from_teacher:
            for pair in self.pairs():
                copied, total = pair.init_student()
                logger.info("student %s: %d of %d tensors initialised from the teacher (same name and shape)",
                            type(pair.student).__name__, copied, total)

    def pairs(self):
        """The ModuleReplacing pairs (encoder, heads), unwrapped from DDP if need be."""
        return [getattr(m, "module", m) for m in (self.modules.encoder, self.modules.heads)]

    def on_fit_batch_start(self, batch, should_step):
        self.replacing_rate = self.hparams.replacement_schedule(self.optimizer_step / self.steps_per_epoch)
        for pair in self.pairs():
            pair.p = self.replacing_rate
            # the Eq. 1 draw of this batch: same on every rank, reproduced on resume
            pair.step = (self.hparams.epoch_counter.current, self.step)

    def compute_objectives(self, predictions, batch, stage):
        loss = super().compute_objectives(predictions, batch, stage)
        # Eq. 1-2 drew the frozen teacher's module everywhere: nothing to train on this step
        self.nothing_to_train = stage == sb.Stage.TRAIN and not loss.requires_grad
        return loss.requires_grad_(True) if self.nothing_to_train else loss

    def optimizers_step(self):
        if getattr(self, "nothing_to_train", False):  # no gradient: no update, the clock goes on
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_step += 1
            return
        super().optimizers_step()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            super().on_stage_end(stage, stage_loss, epoch)
            self.train_stats["replacing_rate"] = self.replacing_rate  # p at the epoch's last step
            return
        super().on_stage_end(stage, stage_loss, epoch)
        if stage == sb.Stage.TEST and if_main_process() and os.path.isdir(self.hparams.student_folder):
            write_results(self.hparams.student_folder, {"test": self.test_results}, self.hparams.label_space)

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)  # loads the best checkpoint
        self.extract_student(max_key, min_key)  # on every rank: the checkpointer syncs them

    def extract_student(self, max_key=None, min_key=None):
        """Student encoder + heads + feature statistics of the loaded checkpoint (Eq. 4 of
        003: the student modules combined) as a core-recipe output folder."""
        hp = self.hparams
        ckpt = self.checkpointer.find_checkpoint(max_key=max_key, min_key=min_key)
        if ckpt is None:
            logger.warning("no checkpoint in %s: no student extracted", hp.save_folder)
            return None
        dest = hp.student_folder
        if if_main_process():
            os.makedirs(dest, exist_ok=True)
        saver = AtomicCheckpointer(os.path.join(dest, "save"), recoverables={
            "encoder": hp.encoder, "heads": hp.heads, "normalizer": self.modules.mean_var_norm,
            "counter": hp.epoch_counter})
        meta = {"mean_f1": ckpt.meta["mean_f1"], "epoch": ckpt.meta.get("epoch"), "extracted_from": str(ckpt.path)}
        saver.save_and_keep_only(meta=meta, num_to_keep=1, keep_recent=True, importance_keys=[])
        # inference.yaml of this run already describes the student (encoder / heads keys)
        if if_main_process():
            copy_inference_yaml(hp.output_folder, dest)
        logger.info("student extracted from %s into %s", ckpt.path, dest)
        return dest
