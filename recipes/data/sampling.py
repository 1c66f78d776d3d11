"""Class imbalance from the training manifest: class counts per head (for class-weighted
losses) and a class-balanced sampler (SpeechBrain's ReproducibleWeightedRandomSampler) that
draws the cells of the chosen heads (one head, or the joint gender x age-group cell)
about equally often.

YAML (top level): ``balance_sampling_by: [gender, age_sub]`` (empty list: off) and
``balanced_epoch_size`` (draws per epoch; null: the train split's size).
"""

import collections

import torch
from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler

from recipes.data.pipelines import MISSING, label_tensors
from recipes.labels import TASKS



def row_labels(label_space, row):
    """dict task -> class index of a manifest row (MISSING for a label it does not have)."""
    g, sup, sub = label_tensors(label_space, row.get("gender"), row.get("age"), row.get("age_group"), row.get("ID"))
    return {"gender": int(g), "age_sup": int(sup), "age_sub": int(sub)}


def class_counts(rows, label_space):
    """dict task -> LongTensor (n_classes,) of the rows' labels; missing labels not counted."""
    sizes = {"gender": label_space.n_gender, "age_sup": label_space.n_sup, "age_sub": label_space.n_sub}
    counts = {t: torch.zeros(n, dtype=torch.long) for t, n in sizes.items()}
    for row in rows:
        for t, idx in row_labels(label_space, row).items():
            if idx != MISSING:
                counts[t][idx] += 1
    return counts


def balanced_weights(rows, label_space, by):
    """Per-row sampling weight 1 / (rows in its cell), the cell being the tuple of the
    ``by`` heads' labels (a missing label is a value of its own): every cell present is
    drawn equally often in expectation."""
    by = check_heads(by)
    cells = [tuple(row_labels(label_space, r)[t] for t in by) for r in rows]
    size = collections.Counter(cells)
    return torch.tensor([1.0 / size[c] for c in cells], dtype=torch.double)


def check_heads(by):
    by = [by] if isinstance(by, str) else list(by or [])
    unknown = [t for t in by if t not in TASKS]
    if unknown:
        raise ValueError(f"balance_sampling_by: unknown head(s) {unknown} (use some of {list(TASKS)})")
    return by


class BalancedSampler(ReproducibleWeightedRandomSampler):
    """Weighted draws with replacement, seeded by (seed, epoch). With ``epoch_counter``
    (the recipe's EpochCounter) the epoch is read from it at each pass, so epochs draw
    differently and a resumed run draws as the uninterrupted one; under torchrun the
    Brain wraps it in SpeechBrain's DistributedSamplerWrapper (same draws on every rank,
    each rank takes its share)."""

    def __init__(self, weights, num_samples, seed=0, epoch_counter=None):
        super().__init__(weights, num_samples=num_samples, replacement=True, seed=seed)
        self.epoch_counter = epoch_counter

    def __iter__(self):
        if self.epoch_counter is not None:
            self.epoch = int(self.epoch_counter.current)
        return super().__iter__()


def balanced_sampler(dataset, label_space, by, num_samples=None, seed=0, epoch_counter=None):
    """A BalancedSampler over a DynamicItemDataset's rows (in the dataset's order)."""
    rows = [dict(dataset.data[uid], ID=uid) for uid in dataset.data_ids]
    if not rows:
        raise ValueError("balanced sampling: the training split is empty")
    weights = balanced_weights(rows, label_space, by)
    return BalancedSampler(weights, int(num_samples or len(rows)), seed=seed, epoch_counter=epoch_counter)
