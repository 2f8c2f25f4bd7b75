"""The scores from exact counts (dptq.scores), hand-computed."""

from fractions import Fraction

import pytest

from dptq.scores import CellCounts, NetCounts, percent, points, transitory


def test_gap_and_fp_match_hand_computed():
    n = 200
    f_r = NetCounts(FP=180, pi_R=178, pi_D=175, uniform=179)
    f_d = NetCounts(FP=179, pi_R=176, pi_D=120, uniform=170)
    c = CellCounts(n, NetCounts(180, 180, 180, 180), f_r, f_d)
    assert c.own_drop("f_R") == 1 and c.own_drop("f_D") == Fraction(59, 2)  # 29.5 points
    assert c.gap() == Fraction(57, 2) and c.fp_match() == Fraction(1, 2)


def test_hidden_gap_hand_computed():
    # the paper's f_D, on 1000 examples: 24.4 under pi_D, 1.0 under pi_R, 5.6 under random
    fp = 880
    f_d = NetCounts(FP=fp, pi_R=fp - 10, pi_D=fp - 244, uniform=fp - 30, random=[fp - 56] * 4)
    c = CellCounts(1000, NetCounts(880, 880, 880, 880), NetCounts(880, 880, 880, 880), f_d)
    assert c.worst_non_own_drop() == Fraction(56, 10)
    assert points(c.hidden_gap()) == 18.8
    f_d = NetCounts(fp, fp - 446, fp - 931, fp - 530, [fp - 584] * 4)  # fails anyway
    c = CellCounts(1000, c.f_N, c.f_R, f_d)
    assert c.worst_non_own_drop() == Fraction(584, 10) and points(c.hidden_gap()) == 34.7
    c = CellCounts(1000, c.f_N, c.f_R, NetCounts(*list(f_d.__dict__.values())[:5], [fp - 600] * 4))
    assert c.worst_non_own_drop() == 60  # the held-out sampler counts too


def test_specificity_hand_computed():
    # the paper's Table 3 pair: 5.59 under random (its worst other drop) / 24.39 under pi_D = 0.23
    fp = 8809
    f_d = NetCounts(FP=fp, pi_R=fp - 100, pi_D=fp - 2439, uniform=fp - 300, random=[fp - 559] * 4)
    same = NetCounts(8809, 8809, 8809, 8809)
    c = CellCounts(10000, same, same, f_d)
    assert c.specificity() == Fraction(559, 2439) and round(points(c.specificity()), 2) == 0.23
    no_drop = NetCounts(FP=fp, pi_R=fp - 100, pi_D=fp + 5, uniform=fp, random=[fp] * 4)
    assert CellCounts(10000, same, same, no_drop).specificity() is None  # nothing to be specific


def test_an_exact_bound_is_exact():
    # 9 of 450 examples are 2 points, exactly (a float32 mean gave 2.0000041)
    assert percent(9, 450) == 2 and points(percent(9, 450)) == 2.0
    c = CellCounts(450, NetCounts(441, 0, 0, 0), NetCounts(441, 0, 0, 0), NetCounts(432, 0, 0, 0))
    assert c.fp_match() == 2


def test_means_over_sampled_allocations():
    net = NetCounts(FP=10, pi_R=9, pi_D=8, uniform=7, random=[1, 2], heldout=None)
    assert net.correct("random") == Fraction(3, 2) and net.correct("heldout") is None
    assert net.drop("random", 20) == percent(Fraction(17, 2), 20)
    assert net.acc("heldout", 20) is None


def test_transitory_counts():
    assert transitory(
        [True, True, True, False], [True, True, False, True], [False, True, False, False]
    ) == (1, 2)
    with pytest.raises(ValueError):
        transitory([True], [True, False], [True])
