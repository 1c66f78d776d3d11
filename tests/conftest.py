import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.fixture
def label_space():
    from recipes.labels import LabelSpace
    return LabelSpace(
        genders=["f", "m"],
        age_bins={"child": [0, 11], "teen": [12, 17], "adult": [18, 44], "senior": [45, 120]},
        hierarchy={"minor": ["child", "teen"], "grown": ["adult", "senior"]},
    )


def needs_shared(name):
    path = os.path.join(SHARED_DATA, name)
    return pytest.mark.skipif(not os.path.isdir(path),
                              reason=f"real corpus {path} absent (../shared is not on this machine)")
