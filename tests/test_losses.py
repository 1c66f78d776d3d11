import pytest
import torch
import torch.nn.functional as F

from recipes.losses import (ProfilingObjective, asymmetric_loss, dependency_loss,
                            feature_kd_loss, hierarchy_conflict)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_single_label_asl_equals_cross_entropy_without_focusing(eps):
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    asl = asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=0, margin=0, label_smoothing=eps, form="single_label")
    ce = F.cross_entropy(logits, y, label_smoothing=eps)
    assert torch.allclose(asl, ce, atol=1e-6)


def test_single_label_asl_focusing_and_margin_change_the_loss():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    ce = F.cross_entropy(logits, y, label_smoothing=0.1)
    # gamma_pos > 0 down-weights confident positives: loss strictly smaller than CE
    assert asymmetric_loss(logits, y, gamma_pos=2, gamma_neg=0, margin=0, form="single_label") < ce
    # margin discards low-probability negatives (weight 0): loss changes
    a = asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=1, margin=0.0, form="single_label")
    b = asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=1, margin=0.5, form="single_label")
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_printed_asl_without_focusing_is_one_vs_rest_bce(eps):
    """Eq. 4 with gamma+ = gamma- = m = 0: binary cross-entropy of every class on softmax p
    (label smoothing is not part of Eq. 4)."""
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5) * 3, torch.randint(0, 5, (16,))
    p = F.softmax(logits, -1)
    bce = F.binary_cross_entropy(p, F.one_hot(y, 5).float(), reduction="none").sum(-1).mean()
    asl = asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=0, margin=0, label_smoothing=eps)
    assert torch.allclose(asl, bce, atol=1e-5)
    assert not torch.allclose(asl, F.cross_entropy(logits, y), atol=1e-3)  # the negatives count


def _printed_terms(logits, y, gamma_pos, gamma_neg, m):
    """Eq. 4 by hand, per class: positive and negative terms (batch, K)."""
    p = F.softmax(logits.double(), -1)
    onehot = F.one_hot(y, logits.shape[-1]).double()
    pm = (p - m).clamp(min=0)
    pos = -(1 - p) ** gamma_pos * torch.log(p)
    neg = -(pm ** gamma_neg) * torch.log(1 - pm)
    return onehot * pos, (1 - onehot) * neg


def test_printed_asl_gamma_neg_and_margin_change_only_the_negative_terms():
    torch.manual_seed(1)
    logits, y = torch.randn(32, 4) * 2, torch.randint(0, 4, (32,))
    base_pos, base_neg = _printed_terms(logits, y, 1.0, 0.0, 0.0)
    for gamma_neg, m in [(4.0, 0.0), (0.0, 0.2), (2.0, 0.05)]:
        pos, neg = _printed_terms(logits, y, 1.0, gamma_neg, m)
        assert torch.allclose(pos, base_pos) and not torch.allclose(neg, base_neg)
        got = asymmetric_loss(logits, y, gamma_pos=1.0, gamma_neg=gamma_neg, margin=m)
        assert torch.allclose(got.double(), (pos + neg).sum(-1).mean(), atol=1e-5)
    # the positive term is the same in all: only negatives differ from the gamma-/m-free loss
    no_neg = asymmetric_loss(logits, y, gamma_pos=1.0, gamma_neg=0, margin=0, reduction="none")
    hand = (base_pos + base_neg).sum(-1)
    assert torch.allclose(no_neg.double(), hand, atol=1e-5)


def test_printed_asl_finite_near_p_equal_one():
    logits = torch.tensor([[60.0, 0.0, 0.0], [0.0, 60.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 1])  # row 0: a confident wrong class, p = 1 in float32
    loss = asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=0, margin=0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 50  # -log(1 - p) ~ 60, not inf or clamped
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 0] > 0


def test_asl_unknown_form():
    with pytest.raises(ValueError, match="asl_form"):
        asymmetric_loss(torch.randn(2, 3), torch.tensor([0, 1]), form="multi_label")


PARENT = torch.tensor([0, 0, 1, 1])  # sub 0,1 -> sup 0; sub 2,3 -> sup 1


def onehot_logits(idx, n):
    return F.one_hot(torch.tensor(idx), n).float() * 5.0


def test_dependency_loss_zero_when_consistent_even_if_wrong():
    sub = onehot_logits([0, 3, 1], 4)
    sup = onehot_logits([0, 1, 0], 2)
    # targets disagree with predictions, but predictions respect the hierarchy
    loss = dependency_loss(sub, sup, torch.tensor([2, 0, 3]), torch.tensor([1, 0, 1]), PARENT)
    assert hierarchy_conflict(sub, sup, PARENT).sum() == 0
    assert loss.item() == 0.0


def test_dependency_loss_positive_on_conflict_and_differentiable():
    sub = onehot_logits([0, 3], 4).requires_grad_()
    sup = onehot_logits([1, 1], 2).requires_grad_()  # utt 0: sub child-of-0 vs sup 1 -> conflict
    y_sub, y_sup = torch.tensor([2, 3]), torch.tensor([1, 1])
    loss = dependency_loss(sub, sup, y_sub, y_sup, PARENT)
    assert loss.item() > 0
    loss.backward()
    assert sub.grad.abs().sum() > 0
    # only the conflicting utterance carries gradient
    assert sub.grad[1].abs().sum() == 0


def test_feature_kd_zero_when_equal():
    x = torch.randn(4, 8)
    assert feature_kd_loss(x, x.clone(), "mse").item() == 0.0
    assert feature_kd_loss(x, x.clone(), "cos").abs().item() < 1e-6
    assert feature_kd_loss(x, torch.randn(4, 8), "mse").item() > 0
    with pytest.raises(ValueError):
        feature_kd_loss(x, x, "l1")


def test_objective_base_vs_ch(label_space):
    torch.manual_seed(0)
    logits = {"gender": torch.randn(6, 2), "age_sup": torch.randn(6, 2), "age_sub": torch.randn(6, 4)}
    targets = {"gender": torch.randint(0, 2, (6,)), "age_sub": torch.tensor([0, 1, 2, 3, 0, 2])}
    targets["age_sup"] = label_space.parent_index()[targets["age_sub"]]
    base_total, base_terms = ProfilingObjective(label_space, hierarchical=False)(logits, targets)
    ch_total, ch_terms = ProfilingObjective(label_space, hierarchical=True)(logits, targets)
    assert set(base_terms) == {"gender", "age_sup", "age_sub"}
    assert set(ch_terms) == {"gender", "age_sup", "age_sub", "dependency"}
    expected = sum(F.cross_entropy(logits[t], targets[t], label_smoothing=0.1) for t in logits)
    assert torch.allclose(base_total, expected)
    assert not torch.allclose(base_total, ch_total)
