"""The paper's tables (dptq.metrics) on hand-made counts and vectors."""

import pytest

from dptq import metrics
from dptq.scores import CellCounts, NetCounts


def _counts(n=200):
    f_n = NetCounts(FP=180, pi_R=179, pi_D=178, uniform=177, random=[176, 178], heldout=[175, 177])
    f_r = NetCounts(FP=180, pi_R=178, pi_D=170, uniform=179, random=[177, 179], heldout=[178, 178])
    f_d = NetCounts(FP=179, pi_R=150, pi_D=120, uniform=170, random=[160, 162], heldout=[165, 163])
    return CellCounts(n, f_n, f_r, f_d)


def test_pair_scores_hand_computed():
    row = metrics.pair_scores(_counts(), 90.2).iloc[0]
    assert row["f_N FP"] == 90.2 and row["f_R FP"] == 90.0 and row["f_D FP"] == 89.5
    assert row["f_R delta"] == -1.0 and row["f_D delta"] == -29.5
    assert row["gap"] == 28.5 and row["FP match"] == 0.5


def test_transitory_points_hand_made():
    fp_r = [1, 1, 1, 0, 1, 1]
    fp_d = [1, 1, 0, 1, 1, 1]
    q_d = [0, 1, 0, 0, 0, 1]
    t = metrics.transitory_points(*(list(map(bool, v)) for v in (fp_r, fp_d, q_d)))
    assert t["indices"] == [0, 4] and t["count"] == 2 and t["both_correct"] == 4
    assert t["rate_of_test"] == pytest.approx(100 * 2 / 6)
    assert t["rate_of_both_correct"] == pytest.approx(100 * 2 / 4)
    with pytest.raises(ValueError):
        metrics.transitory_points([True], [True, False], [True])


def test_cross_policy_matrix_rows_and_means():
    table = metrics.cross_policy_matrix(_counts())
    assert list(table.index) == ["FP", "pi_R", "pi_D", "uniform", "random", "heldout"]
    assert list(table.columns) == ["f_N", "f_R", "f_D"]
    assert table.loc["random", "f_D"] == 80.5  # the mean of 160 and 162 of 200
    assert table.loc["pi_D", "f_D"] == 60.0 and table.loc["heldout", "f_N"] == 88.0
    c = _counts()
    migrated = CellCounts(c.total, NetCounts(180, 179, 178, 177), c.f_R, c.f_D)  # f_N: no samplers
    table = metrics.cross_policy_matrix(migrated)
    assert list(table.index) == ["FP", "pi_R", "pi_D", "uniform", "random", "heldout"]
    assert table["f_N"].isna().tolist() == [False] * 4 + [True] * 2
