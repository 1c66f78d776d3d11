"""Probe-guided channel importance: the neuron ranking of paper 001 ("What do End-to-End
Speech Models Learn about Speaker, Language and Channel Information?", Algorithm 1) as a
structured-pruning criterion.

Before each pruning step, the output of every group's root layer (a convolution or linear
layer; one neuron per output channel, pooled over valid frames as in the probing code) is
collected on a few training batches; an elastic-net probe (paper 001 Eq. 1) is trained per
task (default gender and age); Algorithm 1 ranks the channels by the probe weights. A
channel's score for a task is 1 - rank / channels (the most salient: 1), and its importance
is the highest score over the tasks: channels salient for gender OR age are kept, the rest
are pruned first. Groups whose root saw fewer than two classes fall back to ``fallback``.
"""

import logging

import numpy as np
import torch
import torch_pruning as tp

from recipes.probing.extract import pool_frames
from recipes.probing.neurons import rank_neurons
from recipes.probing.probes import ElasticNetProbe

logger = logging.getLogger(__name__)


def rank_scores(weights, p_step=0.001):
    """(n_classes, n_neurons) probe weights -> score per neuron, 1 for the top of the
    Algorithm 1 ranking down to 1/n for the last."""
    ranking = rank_neurons(weights, p_start=p_step, p_step=p_step)
    n = len(ranking)
    scores = np.empty(n)
    scores[ranking] = 1.0 - np.arange(n) / n
    return scores


@torch.no_grad()
def collect(encoder, roots, batches):
    """Pooled outputs of ``roots`` ({module: name}) over ``batches`` of (feats, lengths,
    {task: class index tensor}): ({name: (N, channels)}, {task: (N,)})."""
    store, hooks = {}, []
    for module, name in roots.items():
        hooks.append(module.register_forward_hook(lambda m, i, o, n=name: store.__setitem__(n, o)))
    feats, labels = {n: [] for n in roots.values()}, {}
    was_training = encoder.training
    encoder.eval()
    try:
        for x, lens, targets in batches:
            store.clear()
            encoder(x, lens)
            for name in roots.values():
                feats[name].append(pool_frames(store[name], lens.to(store[name].device)).float().cpu().numpy())
            for task, y in targets.items():
                labels.setdefault(task, []).append(y.view(-1).cpu().numpy())
    finally:
        for h in hooks:
            h.remove()
        encoder.train(was_training)
    if not labels:
        raise ValueError("probe importance: no batch to probe (empty training set?)")
    return {n: np.concatenate(v) for n, v in feats.items()}, {t: np.concatenate(v) for t, v in labels.items()}


class ProbeImportance:
    """A torch-pruning importance (``__call__(group)`` -> one score per root channel).

    batches_fn: callable returning an iterable of (feats, lengths, {task: labels}) (set by
    the pruning brain before each step); tasks: the label names to probe; probe: keyword
    arguments of ElasticNetProbe; p_step: Algorithm 1's step of p; fallback: the norm
    criterion (l1 / l2) for groups without a usable probe."""

    def __init__(self, tasks=("gender", "age_sub"), probe=None, p_step=0.001, fallback="l2", batches_fn=None):
        self.tasks, self.probe_kwargs, self.p_step = list(tasks), dict(probe or {}), p_step
        if fallback not in ("l1", "l2"):
            raise ValueError(f"probe importance fallback {fallback!r}: use l1 or l2")
        self.fallback = tp.importance.MagnitudeImportance(p=int(fallback[1]))
        self.batches_fn = batches_fn
        self.encoder = None  # set with batches_fn: the encoder whose layers are probed
        self.scores = {}

    def prepare(self, roots):
        """Probes the outputs of ``roots`` (list of modules of ``self.encoder``)."""
        if self.batches_fn is None or self.encoder is None:
            raise ValueError("probe importance: set batches_fn and encoder before pruning")
        names = {m: n for n, m in self.encoder.named_modules()}
        roots = {m: names[m] for m in roots}
        feats, labels = collect(self.encoder, roots, self.batches_fn())
        self.scores = {}
        for module, name in roots.items():
            per_task = []
            for task in self.tasks:
                y = labels[task]
                if len(np.unique(y)) < 2:
                    continue
                probe = ElasticNetProbe(**self.probe_kwargs).fit(feats[name], y)
                per_task.append(rank_scores(probe.weights(), self.p_step))
            if per_task:
                self.scores[module] = torch.as_tensor(np.max(per_task, axis=0), dtype=torch.float32)
            else:
                logger.warning("probe importance: %s saw fewer than two classes of every task; "
                               "its channels are ranked by the weight norm", name)
        return self.scores

    def __call__(self, group):
        root = group[0].dep.target.module
        if root in self.scores:
            return self.scores[root].to(root.weight.device)
        return self.fallback(group)
