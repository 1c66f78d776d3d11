import pytest
import torch

from recipes.labels import LabelError, LabelSpace
from recipes.config.recipe_yaml import load_recipe
from recipes.schedulers import step_to_epoch


def test_age_bins_and_hierarchy(label_space):
    assert label_space.sub_index(age="7") == 0
    assert label_space.sub_index(age=44) == 2
    assert label_space.sub_index(age="", age_group="senior") == 3
    assert label_space.sup_index(3) == 1
    assert torch.equal(label_space.parent_index(), torch.tensor([0, 0, 1, 1]))
    assert label_space.gender_index("Female") == 0 and label_space.gender_index("M") == 1
    with pytest.raises(LabelError, match="outside every age bin"):
        label_space.sub_index(age=130)
    with pytest.raises(LabelError, match="unknown gender"):
        label_space.gender_index("x")
    again = LabelSpace.from_dict(label_space.to_dict())
    assert again.age_sub == label_space.age_sub and again.sub_to_sup == label_space.sub_to_sup


@pytest.mark.parametrize("hierarchy, msg", [
    ({"a": ["x", "nope"]}, "unknown age bin"),
    ({"a": ["x"], "b": ["x", "y"]}, "two super-groups"),
    ({"a": ["x"]}, "belong to no super-group"),
])
def test_bad_hierarchy(hierarchy, msg):
    with pytest.raises(LabelError, match=msg):
        LabelSpace(["f", "m"], {"x": [0, 9], "y": [10, 99]}, hierarchy)


def test_overlapping_bins():
    with pytest.raises(LabelError, match="overlap"):
        LabelSpace(["f"], {"x": [0, 10], "y": [10, 99]}, {"a": ["x", "y"]})


def _yaml_schedule(lr):
    """The optimizer and the lr scheduler of the shipped core recipe (x0.8 at epochs 2, 6, 10)."""
    hp = load_recipe("hparams/speechocean762/train.yaml", {"data_folder": "unused", "lr": lr})
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return opt, hp["lr_schedule"](opt)


def test_paper_step_decay():
    """Paper 004: lr x0.8 at epochs 2, 6 and 10 (1-based), then constant."""
    opt, sched = _yaml_schedule(1e-4)
    lrs = {e: step_to_epoch(sched, e) for e in range(1, 15)}
    assert lrs[1] == pytest.approx(1e-4)
    assert lrs[2] == lrs[5] == pytest.approx(0.8e-4)
    assert lrs[6] == pytest.approx(0.64e-4)
    assert lrs[10] == lrs[14] == pytest.approx(1e-4 * 0.8 ** 3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.8 ** 3)


def test_step_decay_survives_resume():
    """A scheduler restored from its state (the checkpoint) goes on from its epoch; stepping
    to the epoch it is at already (resumed mid-epoch) changes nothing."""
    opt, sched = _yaml_schedule(1e-3)
    step_to_epoch(sched, 6)
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    opt2, sched2 = _yaml_schedule(1e-3)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    assert step_to_epoch(sched2, 6) == pytest.approx(1e-3 * 0.8 ** 2)
    assert step_to_epoch(sched2, 10) == pytest.approx(1e-3 * 0.8 ** 3)