"""Losses of paper 004 (Eq. 2-5): feature KD, asymmetric loss, dependency loss, total;
logit KD with temperature of paper 002 (Eq. 2-4).

All inputs are raw logits (batch, n_classes) and integer targets (batch,).
"""

import torch
import torch.nn.functional as F


def asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=4.0, margin=0.05,
                    label_smoothing=0.1, reduction="mean"):
    """Single-label asymmetric loss, paper 004 Eq. 4 (Ben-Baruch et al., ASL).

    Positive class: (1 - p)^gamma_pos * log p. Negative classes: weighted by
    p_m^gamma_neg with the shifted probability p_m = max(p - m, 0), which discards
    (weight 0) negatives whose probability is already below the margin m. The
    single-label form puts the negatives' log-likelihood under the smoothed target
    (label_smoothing / K), so gamma_pos = gamma_neg = 0 and m = 0 gives exactly
    ``F.cross_entropy(logits, targets, label_smoothing=label_smoothing)``.
    """
    n_classes = logits.shape[-1]
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    onehot = F.one_hot(targets.long(), n_classes).to(logits.dtype)
    p_m = torch.clamp(p - margin, min=0.0)
    # asymmetric focusing weights (no gradient through the weights, as in ASL)
    w_pos = torch.pow(1.0 - p, gamma_pos)
    w_neg = torch.pow(p_m, gamma_neg)
    weights = (onehot * w_pos + (1.0 - onehot) * w_neg).detach()
    soft_targets = onehot * (1.0 - label_smoothing) + label_smoothing / n_classes
    loss = -(soft_targets * weights * log_p).sum(dim=-1)
    return _reduce(loss, reduction)


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
    wrong_sub = (sub_logits.argmax(-1) != sub_targets).to(sub_logits.dtype)
    wrong_sup = (sup_logits.argmax(-1) != sup_targets).to(sup_logits.dtype)
    l_sub = F.cross_entropy(sub_logits, sub_targets, reduction="none")
    l_sup = F.cross_entropy(sup_logits, sup_targets, reduction="none")
    loss = torch.pow(base + l_sub, conflict * wrong_sub) * torch.pow(base + l_sup, conflict * wrong_sup) - 1.0
    return _reduce(loss, reduction)


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

    def __call__(self, logits, targets, teacher_logits=None):
        """Returns (total, terms); without teacher logits, the task loss alone."""
        task_total, terms = self.task(logits, targets)
        if teacher_logits is None:
            return task_total, terms
        kd = sum(soft_cross_entropy(logits[t], teacher_logits[t], self.temperature) for t in logits)
        terms = dict(terms, kd=kd)
        return logit_kd_loss(kd, task_total, self.temperature, self.lam), terms


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class ProfilingObjective:
    """Total multi-task loss, paper 004 Eq. 3 (without the KD term, added by KD brains).

    ``hierarchical: False`` is the paper's "base" row (cross-entropy with label smoothing
    on every head); ``True`` is "+CH" (CE on gender, ASL on age-sup and age-sub, plus the
    dependency loss). Every weight and ASL parameter comes from YAML.
    """

    def __init__(self, label_space, hierarchical=True, label_smoothing=0.1, gamma_pos=0.0,
                 gamma_neg=4.0, margin=0.05, dependency_base=1.0, gender_weight=1.0,
                 sup_weight=1.0, sub_weight=1.0, dependency_weight=1.0):
        self.parent = label_space.parent_index()
        self.hierarchical = hierarchical
        self.ls = label_smoothing
        self.asl = dict(gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin, label_smoothing=label_smoothing)
        self.dep_base = dependency_base
        self.w = dict(gender=gender_weight, age_sup=sup_weight, age_sub=sub_weight, dependency=dependency_weight)

    def __call__(self, logits, targets):
        """logits, targets: dicts with keys gender, age_sup, age_sub. Returns (total, terms)."""
        terms = {"gender": F.cross_entropy(logits["gender"], targets["gender"], label_smoothing=self.ls)}
        for task in ("age_sup", "age_sub"):
            if self.hierarchical:
                terms[task] = asymmetric_loss(logits[task], targets[task], **self.asl)
            else:
                terms[task] = F.cross_entropy(logits[task], targets[task], label_smoothing=self.ls)
        if self.hierarchical and self.w["dependency"] > 0:
            terms["dependency"] = dependency_loss(
                logits["age_sub"], logits["age_sup"], targets["age_sub"], targets["age_sup"],
                self.parent, base=self.dep_base)
        total = sum(self.w[k] * v for k, v in terms.items())
        return total, terms
