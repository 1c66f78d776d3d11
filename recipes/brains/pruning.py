"""PruningBrain: iterative global magnitude pruning with retraining (paper 002, II-C, IV-C).

Training is a sequence of rounds of ``epochs_per_round`` epochs. At the start of round r
the pruner masks the weights below the global magnitude threshold of the schedule
(``PruningSchedule``: the level rises by a step every k rounds); the model is then
retrained with the pruned weights held at exactly zero (their gradients are masked before
and the weights after every optimizer step). At the end of a round, the validation
``stop_metric`` is compared with the unpruned model's (``reference``):

- within ``f1_tolerance``: the round is accepted; its checkpoint becomes the last good
  model (meta ``good_round``);
- below: pruning stops. The last good checkpoint is restored and saved again with the
  epoch counter at its limit (so resuming does nothing more); the failed weights are never
  written over it.

Every checkpoint holds the masks, so an interrupted run resumes with the same masks.
"""

import csv
import logging
import os

import speechbrain as sb

from recipes.brains.profiling import ProfilingBrain

logger = logging.getLogger(__name__)
TASK_KEYS = ("mean_f1", "gender_f1", "age_sup_f1", "age_sub_f1")


def good_round(ckpt):
    """Checkpoint importance: the latest accepted round (-1 for the others)."""
    return ckpt.meta.get("good_round", -1)


class PruningBrain(ProfilingBrain):
    """Extra hparams: ``pruner`` (MagnitudePruner over the model's modules),
    ``pruning_schedule``, ``epochs_per_round``, ``stop_metric``, ``f1_tolerance`` and
    ``reference`` (validation stats of the unpruned model, set by prune.py)."""

    def round_of(self, epoch):
        return (epoch - 1) // self.hparams.epochs_per_round + 1

    def on_fit_start(self):
        super().on_fit_start()
        if self.checkpointer.find_checkpoint() is None:  # round 0: the unpruned model
            ref = self.hparams.reference
            self._save({"mean_f1": ref["mean_f1"], "epoch": 0, "round": 0, "good_round": 0, "sparsity": 0.0})

    def on_stage_start(self, stage, epoch=None):
        pruner = self.hparams.pruner
        if stage == sb.Stage.TRAIN and epoch is not None and pruner.pruned_round < self.round_of(epoch):
            r = self.round_of(epoch)
            threshold = self.hparams.pruning_schedule.threshold(pruner, r)
            sparsity = pruner.prune(threshold)
            pruner.pruned_round = r
            logger.info("pruning round %d: global |w| threshold %.4g -> %.1f%% of the pruned layers' "
                        "weights are zero", r, threshold, 100 * sparsity)
        super().on_stage_start(stage, epoch)

    def optimizers_step(self):
        self.hparams.pruner.mask_grads()
        super().optimizers_step()
        self.hparams.pruner.apply()

    # ---- accept / stop at the end of each round ---------------------------------------
    def save_epoch_checkpoint(self, stats, epoch):
        pruner, r = self.hparams.pruner, self.round_of(epoch)
        meta = {"mean_f1": stats["mean_f1"], "epoch": epoch, "round": r, "sparsity": pruner.sparsity()}
        if epoch % self.hparams.epochs_per_round:  # mid-round: kept for resuming only
            self._save(meta)
            return
        metric = self.hparams.stop_metric
        floor = self.hparams.reference[metric] - self.hparams.f1_tolerance
        accepted = stats[metric] >= floor
        self._record_round(r, epoch, stats, accepted)
        if accepted:
            self._save(dict(meta, good_round=r))
            return
        logger.warning("pruning round %d: valid %s %.4f < %.4f (unpruned %.4f - tolerance): stop, "
                       "keeping round %s", r, metric, stats[metric], floor, self.hparams.reference[metric],
                       self.checkpointer.find_checkpoint(max_key="good_round").meta["good_round"])
        good = self.checkpointer.recover_if_possible(max_key="good_round")
        self.hparams.epoch_counter.current = self.hparams.epoch_counter.limit
        kept = {k: v for k, v in good.meta.items() if k not in ("unixtime", "end-of-epoch")}
        self._save(dict(kept, stopped_at_round=r))

    def _save(self, meta):
        self.checkpointer.save_and_keep_only(
            meta=dict(meta, reference=self.hparams.reference), num_to_keep=1, keep_recent=True,
            importance_keys=[good_round])

    def _record_round(self, r, epoch, stats, accepted):
        """<output_folder>/pruning_rounds.csv: one row per finished round (rewritten)."""
        path = os.path.join(self.hparams.output_folder, "pruning_rounds.csv")
        rows = {}
        if os.path.isfile(path):
            with open(path) as f:
                rows = {int(row["round"]): row for row in csv.DictReader(f)}
        pruner = self.hparams.pruner
        layers = pruner.layer_rows()
        rows[r] = {"round": r, "epoch": epoch, "level": self.hparams.pruning_schedule.level(r),
                   "sparsity": round(pruner.sparsity(), 4), "nonzero_pruned_layers": sum(x["nonzero"] for x in layers),
                   **{k: round(stats[k], 4) for k in TASK_KEYS}, "accepted": accepted}
        with open(path + ".tmp", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[r]))
            w.writeheader()
            w.writerows(rows[k] for k in sorted(rows))
        os.replace(path + ".tmp", path)
