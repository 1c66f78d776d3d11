"""Global magnitude pruning with masks and an iterative schedule (paper 002, Sections II-C
and IV-C; the first method of See et al.: one threshold over all the pruned layers).

The masks are kept by ``MagnitudePruner`` (a SpeechBrain recoverable: they are saved in
every checkpoint and restored on resume), not by ``torch.nn.utils.prune``: the model's
parameters keep their names, so a pruned folder has the core recipe's checkpoint layout
and loads in ``infer.py`` / ``ProfilerModel.from_folder`` unchanged. Pruned weights are
held at exactly zero by masking their gradients before and the weights after every
optimizer step (002: "the pruned weights are set to zero and gradients are also set to
zero at the corresponding position").
"""

import fnmatch
import logging
import math

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class MagnitudePruner:
    """Masks for the parameters of ``modules`` (dict name -> module) whose full names
    (``<name>.<parameter path>``) match a glob of ``include`` and none of ``exclude``, and
    that have at least ``min_dim`` dimensions (2: conv kernels and weight matrices)."""

    def __init__(self, modules, include=("*.weight",), exclude=(), min_dim=2):
        self.targets = {}
        for prefix, module in modules.items():
            for name, param in module.named_parameters():
                full = f"{prefix}.{name}"
                if (param.dim() >= min_dim and any(fnmatch.fnmatchcase(full, g) for g in include)
                        and not any(fnmatch.fnmatchcase(full, g) for g in exclude)):
                    self.targets[full] = param
        if not self.targets:
            raise ValueError(f"pruning: no parameter matches include={list(include)} "
                             f"(exclude={list(exclude)}, min_dim={min_dim})")
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.targets.items()}
        self.pruned_round = 0  # the last schedule round whose pruning step was done

    # ---- the pruning step -----------------------------------------------------------
    def magnitudes(self):
        return torch.cat([p.detach().abs().flatten() for p in self.targets.values()])

    def threshold_for(self, sparsity):
        """The global magnitude at or below which a share ``sparsity`` of the weights lies."""
        mags = self.magnitudes()
        k = int(math.floor(sparsity * mags.numel()))
        return -1.0 if k <= 0 else float(mags.kthvalue(k).values)

    @torch.no_grad()
    def prune(self, threshold):
        """Masks every weight with |w| <= threshold (cumulative: a pruned weight stays
        pruned), zeroes it, and returns the overall sparsity of the pruned layers."""
        for n, p in self.targets.items():
            self.masks[n] &= p.abs() > threshold
        self.apply()
        return self.sparsity()

    @torch.no_grad()
    def apply(self):
        for n, p in self.targets.items():
            p.mul_(self.masks[n].to(p.device))

    def mask_grads(self):
        for n, p in self.targets.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[n].to(p.grad.device))

    # ---- bookkeeping ----------------------------------------------------------------
    def sparsity(self):
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / total

    def layer_rows(self):
        """Per pruned tensor: name, shape, parameters, non-zero parameters (002 Table VII)."""
        return [{"layer": n, "shape": "x".join(map(str, p.shape)), "params": p.numel(),
                 "nonzero": int(torch.count_nonzero(p))} for n, p in self.targets.items()]

    @mark_as_saver
    def _save(self, path):
        torch.save({"masks": {n: m.cpu() for n, m in self.masks.items()},
                    "pruned_round": self.pruned_round}, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        del end_of_epoch
        state = torch.load(path, map_location="cpu")
        if set(state["masks"]) != set(self.masks):
            raise ValueError(f"{path}: its pruning masks cover other layers than this model's "
                             "(another architecture or other include/exclude globs?)")
        self.masks = {n: state["masks"][n].to(self.targets[n].device) for n in self.masks}
        self.pruned_round = state["pruned_round"]
        self.apply()


class PruningSchedule:
    """Iterative schedule of 002 Section IV-C: at round r (1, 2, ...) the pruning level is
    ``min(start + step * ((r - 1) // every), maximum)``: raised by ``step`` every ``every``
    rounds. ``mode: sparsity`` reads the level as the share of pruned weights (the global
    threshold is the magnitude quantile); ``mode: threshold`` as the magnitude threshold
    itself (002: 0.1, +0.05 every three rounds)."""

    def __init__(self, mode="sparsity", start=0.5, step=0.1, every=1, maximum=0.95):
        if mode not in ("sparsity", "threshold"):
            raise ValueError(f"pruning schedule mode {mode!r}: use 'sparsity' or 'threshold'")
        if every < 1:
            raise ValueError(f"pruning schedule: every must be >= 1, got {every}")
        self.mode, self.start, self.step, self.every, self.maximum = mode, start, step, every, maximum

    def level(self, round_):
        return min(self.start + self.step * ((round_ - 1) // self.every), self.maximum)

    def threshold(self, pruner, round_):
        level = self.level(round_)
        return pruner.threshold_for(level) if self.mode == "sparsity" else level
