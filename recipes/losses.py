"""Losses of paper 004 (Eq. 2-5): feature KD, asymmetric loss, dependency loss, total;
logit KD with temperature of paper 002 (Eq. 2-4).

All inputs are raw logits (batch, n_classes) and integer targets (batch,). A target of
``MISSING`` (-1) is a label the utterance's corpus does not have: it adds no loss and no
gradient to that head (every task term and the dependency loss skip it).
"""

import torch
import torch.nn.functional as F

from recipes.age import AGE_LOSSES
from recipes.config.choices import check_choice
from recipes.labels import MISSING, TASKS
from recipes.ordinal import ORDINAL_MODES, ldl_loss

ASL_FORMS = ("printed", "single_label")


def asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=4.0, margin=0.05,
                    label_smoothing=0.1, reduction="mean", form="printed", class_weights=None):
    """Asymmetric loss, paper 004 Eq. 4 ("Asymmetric Loss for Multi-Label Classification",
    Ben-Baruch et al., arXiv 2009.14119).

    ``form="printed"`` (default) is Eq. 4 as printed, with p = softmax(logits): for every
    class k, the positive term (1 - p_k)^gamma+ log p_k when k is the target, else the
    negative term p_m^gamma- log(1 - p_m) with p_m = max(p_k - m, 0), summed over classes.
    gamma+ = gamma- = m = 0 is the one-vs-rest binary cross-entropy on the softmax
    probabilities. Hard targets: ``label_smoothing`` is not part of Eq. 4 and is unused.

    ``form="single_label"`` is the ASL authors' single-label code: focusing weights
    (detached) on the log-softmax under label-smoothed targets, so gamma- and m act only
    through the smoothing mass; gamma+ = gamma- = m = 0 is
    ``F.cross_entropy(logits, targets, label_smoothing=label_smoothing)``.
    """
    check_choice("asl_form", form, ASL_FORMS)
    valid = targets != MISSING
    safe = torch.where(valid, targets, torch.zeros_like(targets)).long()
    n_classes = logits.shape[-1]
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    onehot = F.one_hot(safe, n_classes).to(logits.dtype)
    p_m = torch.clamp(p - margin, min=0.0)
    if form == "single_label":
        weights = (onehot * torch.pow(1.0 - p, gamma_pos) + (1.0 - onehot) * torch.pow(p_m, gamma_neg)).detach()
        soft_targets = onehot * (1.0 - label_smoothing) + label_smoothing / n_classes
        loss = -(soft_targets * weights * log_p).sum(dim=-1)
    else:
        pos = torch.pow(1.0 - p, gamma_pos) * log_p  # Eq. 4, L+
        neg = torch.pow(p_m, gamma_neg) * log_one_minus_shifted(logits, p, margin)  # Eq. 4, L-
        loss = -(onehot * pos + (1.0 - onehot) * neg).sum(dim=-1)
    return masked_reduce(loss, valid, safe, class_weights, reduction)


def log_one_minus_shifted(logits, p, margin):
    """log(1 - p_m), p_m = max(p - m, 0), without log(0) near p = 1: 1 - p_k is the softmax
    mass of the other classes, exp(logsumexp_{j != k} z_j - logsumexp_j z_j), so
    log(1 - p_m) = logaddexp(log(1 - p_k), log m) where p_k > m, and 0 elsewhere."""
    n = logits.shape[-1]
    others = logits.unsqueeze(-2).expand(*logits.shape[:-1], n, n)
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    others = others.masked_fill(eye, float("-inf"))
    log_1mp = torch.logsumexp(others, dim=-1) - torch.logsumexp(logits, dim=-1, keepdim=True)
    if margin > 0:
        log_1mp = torch.logaddexp(log_1mp, torch.full_like(log_1mp, float(margin)).log())
    return torch.where(p > margin, log_1mp, torch.zeros_like(log_1mp))


def masked_reduce(loss, valid, targets, class_weights=None, reduction="mean"):
    """Per-utterance loss -> batch loss over the utterances with a label: each weighted by
    its target's class weight (if any); "mean" divides by the summed weights (as
    F.cross_entropy(weight=...)); 0 (still differentiable) when no utterance has a label."""
    w = valid.to(loss.dtype)
    if class_weights is not None:
        w = w * class_weights.to(loss.device, loss.dtype)[targets]
    loss = torch.where(valid, loss, torch.zeros_like(loss)) * w
    if reduction == "mean":
        return loss.sum() / w.sum().clamp(min=torch.finfo(loss.dtype).tiny)
    if reduction == "sum":
        return loss.sum()
    return loss


def cross_entropy(logits, targets, label_smoothing=0.0, class_weights=None, reduction="mean"):
    """Cross-entropy with label smoothing, skipping ``MISSING`` targets; class weights
    weigh each utterance by its target's weight (weighted mean)."""
    valid = targets != MISSING
    safe = torch.where(valid, targets, torch.zeros_like(targets)).long()
    loss = F.cross_entropy(logits, safe, label_smoothing=label_smoothing, reduction="none")
    return masked_reduce(loss, valid, safe, class_weights, reduction)


def hierarchy_conflict(sub_logits, sup_logits, parent):
    """D in Eq. 5: 1 where the predicted sub-group is not inside the predicted super-group."""
    sub_pred = sub_logits.argmax(dim=-1)
    sup_pred = sup_logits.argmax(dim=-1)
    return (parent.to(sub_pred.device)[sub_pred] != sup_pred).to(sub_logits.dtype)


def dependency_loss(sub_logits, sup_logits, sub_targets, sup_targets, parent,
                    base=1.0, reduction="mean"):
    """Hierarchical dependency loss, paper 004 Eq. 5.

    L_dep = (b + L_sub)^(D * I_sub) * (b + L_sup)^(D * I_sup) - 1 per utterance, where
    D = 1 when argmax(sub) is not a child of argmax(sup) (a hierarchy conflict),
    I_x = 1 when task x is mispredicted, and L_x the utterance's cross-entropy. With the
    offset b >= 1 the penalty is exactly 0 without a conflict and > 0 with one, and its
    gradient lowers the cross-entropy of the conflicting, wrong task(s).
    """
    conflict = hierarchy_conflict(sub_logits, sup_logits, parent)
    valid = (sub_targets != MISSING) & (sup_targets != MISSING)  # an utterance without an age label: no term
    wrong_sub = (sub_logits.argmax(-1) != sub_targets).to(sub_logits.dtype)
    wrong_sup = (sup_logits.argmax(-1) != sup_targets).to(sup_logits.dtype)
    l_sub = cross_entropy(sub_logits, sub_targets, reduction="none")
    l_sup = cross_entropy(sup_logits, sup_targets, reduction="none")
    loss = torch.pow(base + l_sub, conflict * wrong_sub) * torch.pow(base + l_sup, conflict * wrong_sup) - 1.0
    return masked_reduce(loss, valid, torch.zeros_like(sub_targets), None, reduction)


def _interval_valid(lower, upper):
    """(valid mask, lower, upper with NaN replaced by 0): a NaN bound is a missing age."""
    valid = ~(torch.isnan(lower) | torch.isnan(upper))
    return valid, torch.nan_to_num(lower), torch.nan_to_num(upper)


def interval_l1_loss(pred, lower, upper, reduction="mean"):
    """Interval (censored) L1: the distance from the predicted years to [lower, upper],
    max(lower - y, 0) + max(y - upper, 0): 0 inside the interval, |y - age| for an exact
    age (lower == upper). NaN bounds (missing age) add no loss and no gradient."""
    valid, lower, upper = _interval_valid(lower, upper)
    loss = F.relu(lower - pred) + F.relu(pred - upper)
    return masked_reduce(loss, valid, torch.zeros_like(valid, dtype=torch.long), None, reduction)


def interval_gaussian_nll(mu, sigma, lower, upper, reduction="mean"):
    """Gaussian negative log-likelihood with interval censoring (the Tobit / interval-
    censored likelihood): an exact age y gives log(sigma) + (y - mu)^2 / (2 sigma^2)
    + log(2 pi) / 2; an interval [lower, upper] gives -log(Phi(b) - Phi(a)) with
    a = (lower - mu) / sigma, b = (upper - mu) / sigma. NaN bounds are masked out."""
    valid, lower, upper = _interval_valid(lower, upper)
    point = lower == upper
    point_nll = F.gaussian_nll_loss(mu, lower, sigma ** 2, full=True, reduction="none", eps=1e-6)
    a, b = (lower - mu) / sigma, (upper - mu) / sigma
    flip = a > 0  # right tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b), no cancellation near 1
    hi, lo = torch.where(flip, -a, b), torch.where(flip, -b, a)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    diff = torch.clamp(log_lo - log_hi, max=-1e-6)  # log(Phi(lo) / Phi(hi)) < 0
    interval_nll = -(log_hi + torch.log(-torch.expm1(diff)))
    loss = torch.where(point, point_nll, torch.where(valid & ~point, interval_nll, torch.zeros_like(mu)))
    return masked_reduce(loss, valid, torch.zeros_like(valid, dtype=torch.long), None, reduction)


def age_regression_loss(output, target, kind="l1", scale=1.0):
    """The age head's loss: output (batch, 1 or 2) years [and sigma], target (batch, 2)
    [lower, upper] years; "l1" (interval L1, divided by ``scale`` years so that its size
    is that of the task losses) or "gaussian_nll" (needs the sigma column)."""
    check_choice("age_loss", kind, AGE_LOSSES)
    lower, upper = target[:, 0].to(output.dtype), target[:, 1].to(output.dtype)
    if kind == "l1":
        return interval_l1_loss(output[:, 0], lower, upper) / scale
    if output.shape[1] < 2:
        raise ValueError("age_loss: gaussian_nll needs a head that predicts sigma (2 outputs)")
    return interval_gaussian_nll(output[:, 0], output[:, 1], lower, upper)


def feature_kd_loss(student, teacher, kind="mse"):
    """Feature distillation, paper 004 Eq. 2: MSE or 1 - cosine similarity."""
    teacher = teacher.detach()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind in ("cos", "cosine"):
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    raise ValueError(f"unknown KD criterion {kind!r} (use 'mse' or 'cos')")


def soft_cross_entropy(student_logits, teacher_logits, temperature=1.0):
    """Paper 002 Eq. 2 with the softmax of Eq. 3 on both models: -sum_j y~_j log y_j, where
    y~ = softmax(z_teacher / T) and y = softmax(z_student / T); batch mean. It differs
    from KL(y~ || y) by the teacher's entropy only (same gradient)."""
    soft_targets = F.softmax(teacher_logits.detach() / temperature, dim=-1)  # Eq. 3 (teacher)
    log_y = F.log_softmax(student_logits / temperature, dim=-1)  # Eq. 3 (student)
    return -(soft_targets * log_y).sum(dim=-1).mean()  # Eq. 2


def logit_kd_loss(kd_loss, task_loss, temperature=1.0, lam=0.5):
    """Paper 002 Eq. 4 with the usual T^2 scaling (Hinton et al.):
    L = lam * T^2 * L_KD + (1 - lam) * L_task.

    ``lam`` weighs the distillation term; ``1 - lam`` the ground-truth term. Eq. 4 writes
    lam * L_KD + (1 - lam) / T^2 * L_CE, i.e. the same loss divided by T^2: multiplying by
    T^2 keeps the gradient scale of the ground-truth term independent of T, so lam = 0 is
    exactly the task loss at any T.
    """
    return lam * temperature ** 2 * kd_loss + (1.0 - lam) * task_loss  # Eq. 4 (x T^2)


class LogitKDObjective:
    """Multi-task logit KD: the task objective (``ProfilingObjective``, the ground-truth
    loss L_CE of Eq. 4) mixed with soft cross-entropy to the teacher's posteriors on every
    head (gender, age-sup, age-sub), summed over heads, by Eq. 4."""

    def __init__(self, task_objective, temperature=2.0, lam=0.2):
        if temperature <= 0 or not 0.0 <= lam <= 1.0:
            raise ValueError(f"logit KD needs temperature > 0 and 0 <= lambda <= 1, got T={temperature}, lambda={lam}")
        self.task = task_objective
        self.temperature = temperature
        self.lam = lam

    def set_class_counts(self, counts):
        """Class weights of the task objective (see ProfilingObjective.set_class_counts)."""
        if hasattr(self.task, "set_class_counts"):
            self.task.set_class_counts(counts)

    def __call__(self, logits, targets, teacher_logits=None):
        """Returns (total, terms); without teacher logits, the task loss alone."""
        task_total, terms = self.task(logits, targets)
        if teacher_logits is None:
            return task_total, terms
        kd = sum(soft_cross_entropy(logits[t], teacher_logits[t], self.temperature)
                 for t in ProfilingObjective.tasks)  # class heads (not the age regression)
        terms = dict(terms, kd=kd)
        return logit_kd_loss(kd, task_total, self.temperature, self.lam), terms


class ProfilingObjective:
    """Total multi-task loss, paper 004 Eq. 3 (without the KD term, added by KD brains).

    ``hierarchical: False`` is the paper's "base" row (cross-entropy with label smoothing
    on every head); ``True`` is "+CH" (CE on gender, ASL on age-sup and age-sub, plus the
    dependency loss). ``asl_form``: "printed" (Eq. 4 as printed, default) or
    "single_label" (the ASL authors' single-label code). ``class_weighting``: "none",
    "inverse" (1 / n_k) or "effective" ((1 - beta) / (1 - beta^n_k), "Class-Balanced Loss
    Based on Effective Number of Samples", Cui et al., arXiv 1901.05555), scaled to mean 1,
    on every head, from the train manifest's class counts (``set_class_counts``, called by
    build_datasets); each utterance weighs its target's weight (weighted mean).
    Every weight and ASL parameter comes from YAML. With an age head (``age_years`` in the
    logits and targets), ``age_weight`` times ``age_regression_loss`` (``age_loss``: "l1"
    or "gaussian_nll", ``age_scale`` years) is added (term ``age``). ``age_sub_ordinal: ldl``
    adds ``ldl_weight`` times the label-distribution loss of the age sub-group head (recipes/
    ordinal.py, term ``ldl``) to its hard-label term, which stays as it is.
    """

    tasks = TASKS

    def __init__(self, label_space, hierarchical=True, label_smoothing=0.1, gamma_pos=0.0,
                 gamma_neg=4.0, margin=0.05, dependency_base=1.0, gender_weight=1.0,
                 sup_weight=1.0, sub_weight=1.0, dependency_weight=1.0, asl_form="printed",
                 class_weighting="none", effective_beta=0.999, age_weight=1.0, age_loss="l1",
                 age_scale=20.0, age_sub_ordinal="none", ldl_sigma=1.0, ldl_weight=1.0):
        check_choice("age_sub_ordinal", age_sub_ordinal, ORDINAL_MODES)
        if age_sub_ordinal == "ldl" and not ldl_sigma > 0:
            raise ValueError(f"objective: ldl_sigma must be > 0 (bins), got {ldl_sigma}")
        check_choice("asl_form", asl_form, ASL_FORMS)
        check_choice("class_weighting", class_weighting, CLASS_WEIGHTINGS)
        self.parent = label_space.parent_index()
        self.hierarchical = hierarchical
        self.ls = label_smoothing
        self.asl = dict(gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin, label_smoothing=label_smoothing,
                        form=asl_form)
        self.dep_base = dependency_base
        self.w = dict(gender=gender_weight, age_sup=sup_weight, age_sub=sub_weight, dependency=dependency_weight,
                      age=age_weight, ldl=ldl_weight)
        self.ordinal, self.ldl_sigma = age_sub_ordinal, ldl_sigma
        self.age_loss, self.age_scale = age_loss, age_scale
        self.class_weighting, self.effective_beta = class_weighting, effective_beta
        self.class_weights = {t: None for t in self.tasks}

    def set_class_counts(self, counts):
        """counts: dict task -> per-class counts of the train split; sets the class weights."""
        if self.class_weighting == "none":
            return
        self.class_weights = {t: class_weights(counts[t], self.class_weighting, self.effective_beta)
                              for t in self.tasks}

    def __call__(self, logits, targets):
        """logits, targets: dicts with keys gender, age_sup, age_sub (and age_years: the head's
        output / the [lower, upper] years). Returns (total, terms)."""
        cw = self.class_weights
        terms = {"gender": cross_entropy(logits["gender"], targets["gender"], self.ls, cw["gender"])}
        for task in ("age_sup", "age_sub"):
            if self.hierarchical:
                terms[task] = asymmetric_loss(logits[task], targets[task], class_weights=cw[task], **self.asl)
            else:
                terms[task] = cross_entropy(logits[task], targets[task], self.ls, cw[task])
        if self.ordinal == "ldl":  # soft Gaussian targets over the neighbouring decades
            terms["ldl"] = ldl_loss(logits["age_sub"], targets["age_sub"], self.ldl_sigma)
        if self.hierarchical and self.w["dependency"] > 0:
            terms["dependency"] = dependency_loss(
                logits["age_sub"], logits["age_sup"], targets["age_sub"], targets["age_sup"],
                self.parent, base=self.dep_base)
        if "age_years" in logits and "age_years" in targets:  # the age head (recipes/age.py)
            terms["age"] = age_regression_loss(logits["age_years"], targets["age_years"], self.age_loss, self.age_scale)
        total = sum(self.w[k] * v for k, v in terms.items())
        return total, terms


CLASS_WEIGHTINGS = ("none", "inverse", "effective")


def class_weights(counts, kind="inverse", beta=0.999):
    """Per-class loss weights from class counts, scaled to mean 1 over the classes present:
    "inverse" 1 / n_k; "effective" (1 - beta) / (1 - beta^n_k) (class-balanced loss,
    Cui et al., arXiv 1901.05555, Eq. of the effective number). Absent classes get 0."""
    check_choice("class_weighting", kind, CLASS_WEIGHTINGS[1:])
    n = torch.as_tensor(counts, dtype=torch.float64)
    present = n > 0
    if kind == "inverse":
        w = torch.where(present, 1.0 / n.clamp(min=1), torch.zeros_like(n))
    else:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"effective_beta must be in [0, 1), got {beta}")
        w = torch.where(present, (1.0 - beta) / (1.0 - beta ** n.clamp(min=1)), torch.zeros_like(n))
    if present.any():
        w = w * present.sum() / w.sum()
    return w.float()
