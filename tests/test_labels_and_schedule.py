import pytest
import torch

from recipes.labels import LabelError, LabelSpace
from recipes.schedulers import StepDecayFrom


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


def test_paper_step_decay():
    s = StepDecayFrom(1e-4, factor=0.8, every=4, start=2, last=10)
    assert s(1) == pytest.approx(1e-4)
    assert s(2) == pytest.approx(0.8e-4)
    assert s(5) == pytest.approx(0.8e-4)
    assert s(6) == pytest.approx(0.64e-4)
    assert s(10) == pytest.approx(1e-4 * 0.8 ** 3)
    assert s(14) == pytest.approx(1e-4 * 0.8 ** 3)
