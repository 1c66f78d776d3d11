"""StructuredPruningBrain: iterative channel pruning with retraining (the rounds, accept /
stop rule and resume of ``PruningBrain``; recipes.compression.structured for the pruning).

At the start of round r the encoder loses channels until a share ``level(r)`` of the
unpruned encoder's prunable channels is gone (``pruning_schedule``, mode ``sparsity``), the
optimizer is rebuilt over the smaller tensors, and the model is retrained: nothing is
masked, the removed channels no longer exist. Every checkpoint holds the pruned shapes
(recoverable ``structure``, loaded before the encoder's weights), so a resumed run, and the
stop rule's return to the last good round, rebuild the encoder at that round's widths.
"""

import logging

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader

from recipes.brains.profiling import ProfilingBrain
from recipes.brains.pruning import PruningBrain
from recipes.compression.probe_importance import ProbeImportance
from recipes.compression.structured import StructuredPruner, pruned_encoder_entry
from recipes.model_folder import copy_inference_yaml

logger = logging.getLogger(__name__)


def structured_pruner(model, hparams):
    """The StructuredPruner of a loaded ProfilerModel, from the YAML's ``structured_*`` keys."""
    wavs = 0.1 * torch.randn(2, int(hparams["structured_trace_seconds"] * model.sample_rate))
    with torch.no_grad():
        feats = model.compute_features(wavs)
    probe = None
    if hparams["structured_criterion"] == "probe":
        probe = ProbeImportance(tasks=hparams["probe_tasks"], probe=hparams["probe"], p_step=hparams["probe_p_step"],
                                fallback=hparams["probe_fallback"])
    return StructuredPruner(model.encoder, (feats, torch.ones(2)), criterion=hparams["structured_criterion"],
                            global_pruning=hparams["structured_global"], max_ratio=hparams["structured_max_ratio"],
                            probe_importance=probe)


def write_pruned_inference_yaml(model_folder, output_folder, pruner):
    """<output_folder>/inference.yaml: the model's, with the encoder at the pruned shapes."""
    shapes = pruner.shapes()
    copy_inference_yaml(model_folder, output_folder, edit=lambda tree: pruned_encoder_entry(tree, shapes),
                        note="prune.py (structured: the encoder at the pruned widths)")


class StructuredPruningBrain(PruningBrain):
    """Extra hparams: ``pruner`` (StructuredPruner), ``probe_batches`` (criterion ``probe``:
    training batches probed before each step) and those of PruningBrain."""

    def fit(self, epoch_counter, train_set, *args, **kwargs):
        self.probe_set = train_set
        return super().fit(epoch_counter, train_set, *args, **kwargs)

    def on_fit_start(self):
        # the optimizer is built over the encoder's tensors: resize them to the checkpoint's first
        ckpt = self.checkpointer.find_checkpoint()
        if ckpt is not None and "structure" in ckpt.paramfiles:
            self.hparams.pruner.load_state(torch.load(ckpt.paramfiles["structure"], map_location="cpu"))
            self.modules.to(self.device)
        super().on_fit_start()

    def on_stage_start(self, stage, epoch=None):
        pruner = self.hparams.pruner
        if stage == sb.Stage.TRAIN and epoch is not None and pruner.pruned_round < self.round_of(epoch):
            r = self.round_of(epoch)
            level = self.hparams.pruning_schedule.level(r)
            if isinstance(pruner.importance, ProbeImportance):
                pruner.importance.encoder, pruner.importance.batches_fn = self.modules.encoder, self.probe_batches
            before = sum(p.numel() for p in self.modules.encoder.parameters())
            pruner.example = tuple(t.to(self.device) for t in pruner.example)
            sparsity = pruner.prune(level)
            pruner.pruned_round = r
            self.init_optimizers()  # over the new, smaller tensors
            logger.info("structured pruning round %d (%s): %.0f%% of the channels removed, encoder %d -> %d "
                        "parameters (%.1f%% fewer than unpruned)", r, pruner.criterion, 100 * level, before,
                        sum(p.numel() for p in self.modules.encoder.parameters()), 100 * sparsity)
        ProfilingBrain.on_stage_start(self, stage, epoch)

    def probe_batches(self):
        """Up to ``probe_batches`` training batches as (feats, lengths, {task: labels})."""
        loader = make_dataloader(self.probe_set, **dict(self.hparams.eval_dataloader_opts))
        for i, batch in enumerate(loader):
            if i >= self.hparams.probe_batches:
                break
            if batch is None:
                continue
            with torch.no_grad():
                feats, lens = self.features(batch, sb.Stage.VALID)
            yield feats, lens, {t: v.to(self.device) for t, v in self.targets(batch).items()}
