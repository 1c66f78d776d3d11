"""Class imbalance: class weights in the losses and the class-balanced sampler."""

import collections

import pytest
import speechbrain as sb
import torch
import torch.nn.functional as F

from recipes.data.sampling import balanced_sampler, class_counts
from recipes.losses import ProfilingObjective, asymmetric_loss, class_weights, cross_entropy


def toy_rows(n_male=90, n_female=10):
    """An imbalanced toy manifest: mostly male, ages spread unevenly over the bins."""
    rows, ages = [], [8, 15, 30, 30, 30, 60]
    for i in range(n_male + n_female):
        rows.append({"ID": f"u{i}", "wav": f"u{i}.wav", "duration": 1.0, "spk_id": f"s{i}",
                     "gender": "m" if i < n_male else "f", "age": str(ages[i % len(ages)]), "age_group": ""})
    return rows


def toy_dataset(rows):
    return sb.dataio.dataset.DynamicItemDataset({r["ID"]: {k: v for k, v in r.items() if k != "ID"} for r in rows})


def test_class_weights_hand_values():
    counts = torch.tensor([30, 10, 0, 60])
    inv = class_weights(counts, "inverse")
    hand = torch.tensor([1 / 30, 1 / 10, 0.0, 1 / 60])
    assert torch.allclose(inv, hand * 3 / hand.sum())  # mean 1 over the 3 present classes
    beta = 0.9
    eff = class_weights(counts, "effective", beta)
    raw = torch.tensor([(1 - beta) / (1 - beta ** 30), (1 - beta) / (1 - beta ** 10), 0.0,
                        (1 - beta) / (1 - beta ** 60)])
    assert torch.allclose(eff, raw * 3 / raw.sum())
    assert eff[1] > eff[0] > eff[3]  # rarer class, larger weight
    with pytest.raises(ValueError, match="class_weighting"):
        class_weights(counts, "sqrt")


def test_weighted_losses_differ_and_equal_the_hand_value():
    torch.manual_seed(0)
    logits, y = torch.randn(12, 3), torch.randint(0, 3, (12,))
    w = torch.tensor([0.5, 2.0, 1.0])
    per = F.cross_entropy(logits, y, label_smoothing=0.1, reduction="none")
    hand = (w[y] * per).sum() / w[y].sum()
    got = cross_entropy(logits, y, 0.1, w)
    assert torch.allclose(got, hand)
    assert not torch.allclose(got, cross_entropy(logits, y, 0.1))
    assert torch.allclose(cross_entropy(logits, y, 0.0, w), F.cross_entropy(logits, y, weight=w))
    asl_per = asymmetric_loss(logits, y, reduction="none")
    assert torch.allclose(asymmetric_loss(logits, y, class_weights=w), (w[y] * asl_per).sum() / w[y].sum())


def test_objective_class_weights_from_train_counts(label_space):
    rows = toy_rows()
    counts = class_counts(rows, label_space)
    assert counts["gender"].tolist() == [10, 90]
    assert counts["age_sub"].sum() == len(rows) and counts["age_sup"].sum() == len(rows)
    torch.manual_seed(0)
    logits = {"gender": torch.randn(8, 2), "age_sup": torch.randn(8, 2), "age_sub": torch.randn(8, 4)}
    targets = {"gender": torch.tensor([0, 1, 1, 1, 0, 1, 1, 1]), "age_sub": torch.tensor([0, 1, 2, 3, 2, 2, 1, 0])}
    targets["age_sup"] = label_space.parent_index()[targets["age_sub"]]
    plain = ProfilingObjective(label_space, hierarchical=False)
    weighted = ProfilingObjective(label_space, hierarchical=False, class_weighting="inverse")
    weighted.set_class_counts(counts)
    _, t0 = plain(logits, targets)
    _, t1 = weighted(logits, targets)
    w = class_weights(counts["gender"], "inverse")
    per = F.cross_entropy(logits["gender"], targets["gender"], label_smoothing=0.1, reduction="none")
    wy = w[targets["gender"]]
    assert torch.allclose(t1["gender"], (wy * per).sum() / wy.sum())
    assert not torch.allclose(t0["gender"], t1["gender"])
    with pytest.raises(ValueError, match="class_weighting"):
        ProfilingObjective(label_space, class_weighting="focal")


@pytest.mark.parametrize("by", [["gender"], ["gender", "age_sub"]])
def test_balanced_sampler_draws_cells_uniformly(label_space, by):
    rows = toy_rows()
    data = toy_dataset(rows)
    sampler = balanced_sampler(data, label_space, by, num_samples=6000, seed=3)
    key = {r["ID"]: tuple(r["gender"] if t == "gender" else label_space.sub_index(r["age"]) for t in by)
           for r in rows}
    drawn = collections.Counter(key[data.data_ids[i]] for i in sampler)
    shares = [c / 6000 for c in drawn.values()]
    natural = collections.Counter(key.values())
    assert len(drawn) == len(natural)  # every cell is drawn
    assert max(shares) - min(shares) < 0.06, drawn  # ~uniform, although 90 % of rows are male
    assert max(natural.values()) / len(rows) > 0.25  # the toy manifest is imbalanced
    # epochs draw differently, reproducibly
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_balanced_sampler_options(label_space):
    from recipes.data.datasets import loader_kwargs

    data = toy_dataset(toy_rows())
    with pytest.raises(ValueError, match="unknown head"):
        balanced_sampler(data, label_space, ["age"])
    from conftest import data_block

    hp = data_block(train_dataloader_opts={"batch_size": 4, "shuffle": True}, eval_dataloader_opts={"batch_size": 4},
                    balance_sampling_by=["gender"], label_space=label_space, seed=1, dynamic_batching=True,
                    epoch_counter=None)
    with pytest.raises(ValueError, match="fixed-size batches"):
        loader_kwargs(hp, {"train": data})
    hp["dynamic_batching"] = False
    opts = loader_kwargs(hp, {"train": data})["train"]
    assert "shuffle" not in opts and len(opts["sampler"]) == len(data)


def test_balanced_sampler_under_torchrun_wrapper(label_space):
    """torchrun: SpeechBrain's Brain wraps the train sampler in DistributedSamplerWrapper; the
    ranks draw the same weighted sequence for an epoch and each takes its own share."""
    from speechbrain.dataio.sampler import DistributedSamplerWrapper
    from speechbrain.utils.epoch_loop import EpochCounter

    data = toy_dataset(toy_rows())
    counter = EpochCounter(3)
    shares = []
    for rank in (0, 1):
        sampler = balanced_sampler(data, label_space, ["gender"], num_samples=400, seed=5, epoch_counter=counter)
        wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        wrapped.set_epoch(1)
        shares.append(list(wrapped))
    full = list(balanced_sampler(data, label_space, ["gender"], num_samples=400, seed=5, epoch_counter=counter))
    assert len(shares[0]) == len(shares[1]) == 200
    assert sorted(shares[0] + shares[1]) == sorted(full)  # the ranks split one epoch's draws
    female = sum(data.data[data.data_ids[i]]["gender"] == "f" for i in shares[0]) / 200
    assert 0.35 < female < 0.65  # each rank's share is balanced too (10 % of the rows are female)
