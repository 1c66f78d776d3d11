"""Age in years: the targets of the regression head (recipes.heads.AgeHead) and the groups
derived from predicted years.

Targets are intervals ``[lower, upper]`` in years: an exact age is ``[age, age]`` (a point),
an age-group label only is its bin of the label space (``age_bins``, e.g. ``[60, 120]``), a
missing age is ``[nan, nan]`` (no loss, not scored). The loss (recipes/losses.py
``interval_l1_loss`` / ``interval_gaussian_nll``) is zero inside an interval.

The head's output (key ``AGE_KEY`` of ``ProfilingHeads``' dict) is (batch, 1) years, or
(batch, 2) years and sigma (years) with ``age_loss: gaussian_nll``.
"""

import math

import torch

AGE_KEY = "age_years"
AGE_LOSSES = ("l1", "gaussian_nll")


def age_interval(label_space, age, age_group):
    """(lower, upper) years of a manifest row: (age, age) for an exact age, the bin of an
    age-group label, (nan, nan) when both are empty (the row's labels are validated first)."""
    if age is not None and str(age).strip() != "":
        a = float(age)
        return a, a
    if age_group is not None and str(age_group).strip() != "":
        lo, hi = label_space.age_bins[str(age_group).strip()]
        return float(lo), float(hi)
    return math.nan, math.nan


def derived_sub_index(years, label_space):
    """Age sub-group index of predicted years (tensor or array, (n,)) through the label
    space's bins: the bin containing the age, or the nearest one (gaps between bins, ages
    beyond the first / last bin)."""
    years = torch.as_tensor(years, dtype=torch.float64).reshape(-1, 1)
    bins = torch.tensor([label_space.age_bins[s] for s in label_space.age_sub], dtype=torch.float64)
    dist = torch.relu(bins[:, 0] - years) + torch.relu(years - bins[:, 1])  # (n, n_sub)
    return dist.argmin(dim=1)


def split_age_output(out):
    """(years (batch,), sigma (batch,) or None) of the head's output."""
    return out[:, 0], (out[:, 1] if out.shape[1] > 1 else None)
