"""ProfilingBrain: multi-task gender / age-sup / age-sub training (paper 004 base, +CH).

Subclasses (mixup KD, logit KD, module replacing, pruning) override ``student_inputs``,
``embed``, ``task_objective``, ``extra_objectives`` or ``save_epoch_checkpoint`` instead of
rewriting the loop.
"""

import logging
import math
import os
import signal

import speechbrain as sb
import torch
import yaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch.nn.parallel import DistributedDataParallel

from recipes.age import AGE_KEY
from recipes.checkpoint import DataRecord, RandomState
from recipes.embedding_cache import (BrainEmbedder, cached_batch, cached_embeddings, is_frozen, manifests_key,
                                     settings_key, skip_cached_audio, whole_utterance_loader)
from recipes.evaluation.metrics import PredictionCollector, compute_results, mean_f1
from recipes.data.datasets import pooled_manifest_paths
from recipes.schedulers import step_to_epoch
from recipes.labels import TASKS

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class ProfilingBrain(sb.Brain):
    """Expects modules ``compute_features``, ``mean_var_norm``, ``encoder``, ``heads`` and
    hparams ``objective`` (recipes.losses.ProfilingObjective), ``label_space``,
    ``lr_schedule``, ``epoch_counter``, ``train_logger``.

    Checkpoints also hold the random state (``RandomState``) and the running loss terms,
    so that a resumed run, from an end-of-epoch or an intra-epoch checkpoint
    (``--ckpt_interval_minutes`` / ``--ckpt_interval_steps``), repeats the uninterrupted one."""

    # False: with a frozen encoder whose embeddings are all cached, training batches need no
    # audio (a subclass whose training step reads batch.sig, e.g. for a teacher, says True)
    train_reads_audio = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resumed_terms, self.random_state = None, None
        if self.checkpointer is not None and "random_state" not in self.checkpointer.recoverables:
            self.random_state = RandomState()  # optional: older checkpoints still load
            self.checkpointer.add_recoverable("random_state", self.random_state, optional_load=True)
        if self.checkpointer is not None and "data" not in self.checkpointer.recoverables:
            # what each checkpoint was trained on; optional: older checkpoints still load
            self.checkpointer.add_recoverable("data", DataRecord(self._manifests), optional_load=True)

    @mark_as_saver
    def _save(self, path):
        super()._save(path)  # step, average loss, optimizer steps
        with open(path) as f:
            state = yaml.safe_load(f)
        state.update(term_sums=dict(getattr(self, "term_sums", {})),
                     term_count=getattr(self, "term_count", 0))
        with open(path, "w") as f:
            yaml.dump(state, f, sort_keys=False)  # keeps the order the losses are logged in

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        super()._recover(path, end_of_epoch)
        with open(path) as f:
            state = yaml.safe_load(f)
        # mid-epoch: the loss terms of the batches already done (on_stage_start keeps them)
        if not end_of_epoch and "term_sums" in state:
            self.resumed_terms = (state["term_sums"], state["term_count"])

    def init_optimizers(self):
        """The optimizer, then its lr scheduler: ``lr_schedule`` in YAML, a torch scheduler
        class taking the optimizer (MultiStepLR), kept in the checkpoints (a resumed run
        continues at the lr of its epoch; optional: older checkpoints still load)."""
        super().init_optimizers()
        schedule = getattr(self.hparams, "lr_schedule", None)  # None: a constant lr (brains built in code)
        self.lr_scheduler = schedule(self.optimizer) if schedule is not None and self.opt_class is not None else None
        if self.lr_scheduler is not None:
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler, optional_load=True)

    # ---- forward ---------------------------------------------------------------------
    def features(self, batch, stage):
        """Fbank + normalisation; in training, optional ``wav_augment`` (a SpeechBrain
        Augmenter that keeps the batch size) and ``feat_augment`` (list of modules on
        the normalised features, e.g. SpectrogramDrop) from YAML."""
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        train = stage == sb.Stage.TRAIN
        if train and self.hparams.wav_augment is not None:
            wavs, lens = self.hparams.wav_augment(wavs, lens)
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens, epoch=self.hparams.epoch_counter.current)
        if train:
            for aug in self.hparams.feat_augment or []:
                feats = aug(feats)
        return feats, lens

    def student_inputs(self, feats, lens, stage):
        """Hook for input augmentation of the trained model (e.g. Eq. 1 mixup)."""
        return feats

    def embed(self, feats, lens, stage, clean_feats=None):
        """Shared representation Z fed to the heads."""
        return self.modules.encoder(feats, lens)

    def make_dataloader(self, dataset, stage, *args, **kwargs):
        if stage == sb.Stage.TRAIN:
            self._train_dataset = dataset  # on_fit_start stops its audio once a frozen cache covers it
        return super().make_dataloader(dataset, stage, *args, **kwargs)

    def on_fit_start(self):
        super().on_fit_start()
        self.frozen_cache = None
        if getattr(self.hparams, "frozen_encoder_cache", False) and is_frozen(self.modules.encoder):
            self.frozen_cache = self._frozen_train_cache()
            if not self.train_reads_audio:
                skip_cached_audio(getattr(self, "_train_dataset", None), self.frozen_cache)

    def _manifests(self):
        """split -> the manifests of this run (the recipe's corpus, then any pooled corpora)."""
        return pooled_manifest_paths({"manifest_folder": self.hparams.manifest_folder,
                                      "pooled_manifest_folders": getattr(self.hparams, "pooled_manifest_folders",
                                                                         None)})

    def _train_csvs(self):
        """The training manifests: the recipe's corpus, then any pooled corpora."""
        return self._manifests()["train"]

    def _whole_train_loader(self):
        """The training utterances, whole, through the (deterministic) training channel."""
        return whole_utterance_loader(self._train_csvs(), self.hparams)

    def _frozen_train_cache(self):
        """id -> the frozen encoder's embedding of each whole training utterance (through the
        training channel), made once and kept in <output_folder>/encoder_cache.pt."""
        key = [type(self.modules.encoder).__name__, settings_key(self.modules.compute_features),
               *manifests_key(self._train_csvs()), settings_key(self.hparams.train_channel)]
        return cached_embeddings(os.path.join(self.hparams.output_folder, "encoder_cache.pt"), key,
                                 BrainEmbedder(self.modules), self._whole_train_loader(),
                                 self.device, "frozen encoder cache")

    def frozen_embeddings(self, batch, stage):
        """A frozen encoder's cached embeddings of the batch (training: the whole utterances
        embedded once; validation: remembered from the first epoch), else None."""
        cache = getattr(self, "frozen_cache", None)
        emb = cached_batch(cache, batch, stage, self.device)
        if cache is None or emb is not None or stage != sb.Stage.VALID:
            return emb
        wavs, lens = batch.sig
        emb = BrainEmbedder(self.modules).embed(wavs.to(self.device), lens.to(self.device))
        cache.update(zip(batch.id, emb.cpu()))
        return emb

    def compute_forward(self, batch, stage):
        emb = self.frozen_embeddings(batch, stage)
        if emb is not None:  # frozen encoder: only the heads run
            return {"logits": self.modules.heads(emb), "emb": emb}
        feats, lens = self.features(batch, stage)
        x = self.student_inputs(feats, lens, stage)
        emb = self.embed(x, lens, stage, clean_feats=feats)
        return {"logits": self.modules.heads(emb), "emb": emb}

    # ---- losses ----------------------------------------------------------------------
    def targets(self, batch):
        out = {t: getattr(batch, f"{t}_idx").data.view(-1).to(self.device)
               for t in TASKS}
        if hasattr(batch, AGE_KEY):  # (batch, 2) [lower, upper] years of the age head; NaN: no age
            out[AGE_KEY] = getattr(batch, AGE_KEY).data.to(self.device)
        return out

    def task_objective(self, predictions, targets, stage):
        """Hook: (total, terms) of the task loss (logit KD mixes in the teacher, 002 Eq. 4)."""
        return self.hparams.objective(predictions["logits"], targets)

    def extra_objectives(self, predictions, batch, stage):
        """Hook: dict name -> (weight, loss) added to the task losses (e.g. Eq. 2 KD)."""
        return {}

    def compute_objectives(self, predictions, batch, stage):
        targets = self.targets(batch)
        loss, terms = self.task_objective(predictions, targets, stage)
        for name, (weight, value) in self.extra_objectives(predictions, batch, stage).items():
            loss = loss + weight * value
            terms[name] = value
        if getattr(self, "zero_loss", False):
            return loss * 0.0  # zero_loss_step: joins the all-reduce, contributes nothing
        for name, value in terms.items():
            self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value.detach())
        self.term_count += 1
        if stage != sb.Stage.TRAIN:
            self.collector.append(batch.id, predictions["logits"], targets)
        return loss

    # ---- robustness: batches whose audio all failed to load ------------------------------
    def fit_batch(self, batch):
        self.fault_hook()
        if getattr(self, "random_state", None) is not None:
            self.random_state.apply_pending()  # resumed mid-epoch: now that the loader iterates
        if batch is not None and batch.batchsize < 2:  # e.g. the last one, or bad files dropped
            logger.warning("skipping a training batch of one utterance (%s): batch statistics "
                           "need two", batch.id[0])
            batch = None
        if batch is None:  # every utterance of the batch failed to load (logged)
            if self.distributed_launch:
                return self.zero_loss_step()
            return torch.tensor(float(self.avg_train_loss))
        self.last_train_batch = batch
        return super().fit_batch(batch)

    def fault_hook(self):
        """Test hook for the resume test: ``PROFILING_KILL_AT=<epoch>:<step>`` kills this
        process (SIGKILL, as ``kill -9``) just before that training step."""
        kill_at = os.environ.get("PROFILING_KILL_AT")
        if kill_at and kill_at == f"{self.hparams.epoch_counter.current}:{self.step}":
            os.kill(os.getpid(), signal.SIGKILL)

    def zero_loss_step(self):
        """torchrun: a rank cannot skip a step (the others would wait for its gradients in
        the all-reduce), so it steps on its last good batch with the loss times 0 (its
        gradient share is zero) and nothing of it enters the logged losses."""
        last = getattr(self, "last_train_batch", None)
        if last is None:
            raise RuntimeError(
                f"rank {sb.utils.distributed.get_rank()}: the first training batch has no loadable "
                "audio (files logged above); with torchrun a rank cannot skip a step. Fix or drop them.")
        self.zero_loss = True
        try:
            super().fit_batch(last)
        finally:
            self.zero_loss = False
        return torch.tensor(float(self.avg_train_loss))

    def evaluate_batch(self, batch, stage):
        if batch is None:
            return torch.tensor(0.0)
        return super().evaluate_batch(batch, stage)

    # ---- multi-process training (torchrun) ----------------------------------------------
    def _wrap_distributed(self):
        """SpeechBrain turns BatchNorm into SyncBatchNorm, which needs GPUs: on CPU (gloo
        backend) the modules are wrapped in DDP with their plain BatchNorm (batch statistics
        per process; parameters and gradients are still synchronised)."""
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, device_ids=None, find_unused_parameters=self.find_unused_parameters)

    # ---- stages ----------------------------------------------------------------------
    def save_epoch_checkpoint(self, stats, epoch):
        """Hook: end-of-epoch checkpoint (finite losses only); keeps the best mean F1."""
        self.checkpointer.save_and_keep_only(
            meta={"mean_f1": stats["mean_f1"], "epoch": epoch},
            max_keys=["mean_f1"], num_to_keep=self.hparams.ckpt_keep)

    def on_stage_start(self, stage, epoch=None):
        heads = getattr(self.modules, "heads", None)
        heads = getattr(heads, "module", heads)  # DDP-wrapped or not
        self.collector = PredictionCollector(getattr(heads, "decode", None))  # argmax / posterior median
        self.term_sums, self.term_count = {}, 0
        if stage == sb.Stage.TRAIN and getattr(self, "resumed_terms", None) is not None:
            self.term_sums, self.term_count = self.resumed_terms  # resumed mid-epoch
            self.resumed_terms = None
        if stage == sb.Stage.TRAIN and epoch is not None and getattr(self, "lr_scheduler", None) is not None:
            step_to_epoch(self.lr_scheduler, epoch)  # paper 004: x0.8 at epochs 2, 6 and 10

    def on_stage_end(self, stage, stage_loss, epoch=None):
        terms = {k: v / max(self.term_count, 1) for k, v in self.term_sums.items()}
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **{f"loss_{k}": v for k, v in terms.items()}}
            return
        results = compute_results(self.collector, self.hparams.label_space)
        stats = {"loss": stage_loss, "mean_f1": mean_f1(results),
                 **{f"{t}_f1": results[t]["f1"] for t in TASKS},
                 **{f"{t}_mace": results[t]["mace"] for t in ("age_sup", "age_sub")},
                 "consistency": results["hierarchy_consistency"]}
        if AGE_KEY in results:  # the age head: MAE in years (exact ages; distance to the bin)
            for kind in ("exact", "interval"):
                if results[AGE_KEY][kind]["mae"] is not None:
                    stats[f"age_mae_{kind}"] = results[AGE_KEY][kind]["mae"]
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats)
            train_loss = self.train_stats.get("loss", float("nan"))
            if math.isfinite(train_loss) and math.isfinite(stage_loss):
                self.save_epoch_checkpoint(stats, epoch)
            else:
                logger.error("epoch %s: non-finite loss, checkpoint NOT saved (keeping the last good one)", epoch)
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats)
            self.test_results = results
            self.test_collector = self.collector
