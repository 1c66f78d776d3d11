"""benchmarks/ordinal_ages.py: the cross-corpus scores and the row commands (no training)."""

import argparse

import pytest

from benchmarks.ordinal_ages import FIRST, ROWS, command, cross_corpus, folder, so_line
from recipes.labels import LabelSpace


@pytest.fixture
def decades():
    return LabelSpace(["f", "m"], {"teens": [0, 18], "20s": [19, 29], "30s": [30, 39], "40s": [40, 120]},
                      {"young": ["teens", "20s"], "older": ["30s", "40s"]})


def test_cross_corpus_hand_values(decades):
    clips = [{"spk": "a", "age": 22, "gender": "f", "gender_pred": "f", "decade_pred": "20s", "years_pred": 25.0},
             {"spk": "a", "age": 24, "gender": "f", "gender_pred": "m", "decade_pred": "40s", "years_pred": 44.0},
             {"spk": "b", "age": 35, "gender": "m", "gender_pred": "m", "decade_pred": "teens", "years_pred": 20.0}]
    s = cross_corpus(clips, decades, majority=1, constant=30.0)
    assert (s["clips"], s["speakers"]) == (3, 2)
    assert s["decade_acc"] == pytest.approx(1 / 3) and s["decade_mace"] == pytest.approx((0 + 2 + 2) / 3)
    assert s["majority_acc"] == pytest.approx(2 / 3) and s["majority_mace"] == pytest.approx(1 / 3)
    assert s["mae"] == pytest.approx((3 + 20 + 15) / 3) and s["constant_mae"] == pytest.approx((8 + 6 + 5) / 3)
    assert s["gender_acc"] == pytest.approx(2 / 3)
    line = so_line("row", s, decades, 1)
    assert "MISSED: decade acc > majority" in line and "MISSED: MAE >= 20 % below the constant" in line
    better = dict(s, decade_acc=0.9, mae=0.7 * s["constant_mae"])
    assert "met: decade acc > majority; met: MAE" in so_line("row", better, decades, 1)


def test_rows_share_the_first_split_and_differ_only_in_their_options():
    args = argparse.Namespace(results="results/ordinal")
    first = command(args, FIRST)
    assert not any(a.startswith("--manifest_folder") for a in first)
    for name in ROWS:
        cmd = command(args, name)
        assert f"--output_folder={folder(args, name)}" in cmd
        if name != FIRST:
            assert f"--manifest_folder={folder(args, FIRST)}/manifests" in cmd
    assert folder(args, "ge2e_ch_ldl_median_seed2").endswith("ge2e_ch_ldl_median_seed2/2")
    ldl = command(args, "ge2e_ch_ldl_median")
    assert "--age_sub_ordinal=ldl" in ldl and "--age_sub_decode=median" in ldl
