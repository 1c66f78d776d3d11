"""Ordered age groups: a label-distribution loss for the age sub-group head and the decoding of
its class probabilities into one group (the one function evaluation and inference share).

``age_sub_ordinal`` (hparams/blocks/train.yaml):

- ``none``: the head is trained as unordered classes (CE, or ASL with the dependency loss);
- ``ldl``: label distribution learning ("Deep Label Distribution Learning with Label
  Ambiguity", Gao et al., arXiv:1611.01731): the true decade becomes a discretised Gaussian over
  the neighbouring bins (``ldl_sigma``, in bins) and the head's softmax is pulled towards it by the
  cross-entropy to that soft target (KL up to the target's entropy). It is ADDED to the hard-label
  term (ASL or CE stays as it is, so does the dependency loss) with weight ``ldl_weight``; the head
  keeps its K logits and the checkpoint layout.

``age_sub_decode``: ``argmax`` (the most probable group) or ``median`` (the posterior median:
the smallest k whose cumulative probability reaches 0.5, which minimises the expected absolute
group error, i.e. the MACE, under the model's distribution). The choice is stored in the heads'
settings (inference.yaml), so inference decodes as training evaluated; folders written before
the option decode by argmax.
"""

import torch
import torch.nn.functional as F

from recipes.config.choices import check_choice
from recipes.labels import MISSING

ORDINAL_MODES = ("none", "ldl")
DECODES = ("argmax", "median")


def ldl_targets(targets, n_classes, sigma=1.0):
    """(batch, n_classes) soft targets: exp(-(k - y)^2 / (2 sigma^2)) normalised over the K bins
    (the Gaussian label distribution of a true label y, Gao et al., arXiv:1611.01731); a MISSING row is all 0."""
    if sigma <= 0:
        raise ValueError(f"ldl_sigma must be > 0 (bins), got {sigma}")
    valid = targets != MISSING
    k = torch.arange(n_classes, dtype=torch.float32, device=targets.device)
    dist = torch.exp(-(k.unsqueeze(0) - targets.float().unsqueeze(1)) ** 2 / (2.0 * sigma ** 2))
    dist = dist / dist.sum(dim=1, keepdim=True)
    return dist * valid.unsqueeze(1).to(dist.dtype)


def ldl_loss(logits, targets, sigma=1.0, reduction="mean"):
    """Cross-entropy -sum_k q_k log p_k between the soft targets q (``ldl_targets``) and the
    softmax of ``logits`` (Gao et al.'s KL(q || p) loss plus q's entropy: the same gradient),
    averaged over the rows with a label; 0 (still differentiable) when none has one."""
    q = ldl_targets(targets, logits.shape[-1], sigma).to(logits.dtype)
    loss = -(q * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    if reduction == "none":
        return loss
    n = (targets != MISSING).sum()
    return loss.sum() / n.clamp(min=1).to(loss.dtype)


def posterior_median(probs):
    """Index of the posterior median of class probabilities (..., K): the smallest k with
    P(y <= k) >= 0.5 (probabilities are renormalised first)."""
    cdf = torch.cumsum(probs / probs.sum(dim=-1, keepdim=True), dim=-1)
    return (cdf < 0.5 - 1e-6).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def decode(probs, how="argmax"):
    """Group index of class probabilities (..., K) (or of logits, for ``argmax``): ``argmax``
    or ``median`` (``posterior_median``)."""
    check_choice("age_sub_decode", how, DECODES)
    if how == "median":
        return posterior_median(probs)
    return probs.argmax(dim=-1)


def decode_logits(logits, how="argmax"):
    """``decode`` of a head's logits (softmax first for the median)."""
    return decode(torch.softmax(logits.float(), dim=-1) if how == "median" else logits, how)
