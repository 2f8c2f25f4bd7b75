"""The paper's tables as DataFrames, from a cell's exact counts (:mod:`dptq.scores`).

| function | paper |
|---|---|
| :func:`pair_scores` | Table 1: FP accuracy, quantized change, catastrophic-failure gap, FP match |
| :func:`transitory_points` | Table 2: points both FP models get right that the quantized f_D gets wrong |
| :func:`cross_policy_matrix` | Table 3: every network under every policy |

The figures' functions: :mod:`dptq.sweeps` (Fig. 2, Fig. 3), :mod:`dptq.robustness` (Fig. 4),
:mod:`dptq.trigger` (not in the paper); rendering: :mod:`dptq.report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .scores import ALLOCATIONS, CellCounts, percent, points, transitory


def pair_scores(counts: CellCounts, f_n_acc: float | None = None) -> pd.DataFrame:
    """Table 1 for one (network, options, budget): one row (percent and points).

    ``f_n_acc``: f_N's reference accuracy (the one selection compared against; None: its test
    accuracy). ``delta`` = quantized - FP under each pair's own policy.
    """
    n = counts.total
    return pd.DataFrame(
        [
            {
                "f_N FP": f_n_acc if f_n_acc is not None else points(percent(counts.f_N.FP, n)),
                "f_R FP": points(percent(counts.f_R.FP, n)),
                "f_R delta": points(-counts.own_drop("f_R")),
                "f_D FP": points(percent(counts.f_D.FP, n)),
                "f_D delta": points(-counts.own_drop("f_D")),
                "gap": points(counts.gap()),
                "FP match": points(counts.fp_match()),
            }
        ]
    )


def transitory_points(fp_r: Sequence[bool], fp_d: Sequence[bool], q_d: Sequence[bool]) -> dict:
    """Table 2: examples both FP models classify correctly but the quantized f_D gets wrong.

    Returns the indices, the counts (``count``, ``both_correct``, ``total``) and two rates
    (percent), since the paper does not say which it used: as a share of the whole test set,
    and as a share of the points both FP models get right.
    """
    fp_r, fp_d, q_d = (list(map(bool, v)) for v in (fp_r, fp_d, q_d))
    n_trans, n_both = transitory(fp_r, fp_d, q_d)
    total = len(fp_r)
    return {
        "indices": [i for i, (a, b, q) in enumerate(zip(fp_r, fp_d, q_d)) if a and b and not q],
        "count": n_trans,
        "both_correct": n_both,
        "total": total,
        "rate_of_test": points(percent(n_trans, max(total, 1))),
        "rate_of_both_correct": points(percent(n_trans, n_both)) if n_both else float("nan"),
    }


def cross_policy_matrix(counts: CellCounts) -> pd.DataFrame:
    """Table 3 as a DataFrame: rows = allocation (FP, pi_R, pi_D, uniform, random, held-out; the
    last two the means over their K allocations), columns = network, accuracy (%)."""
    frame = pd.DataFrame(counts.cross_policy())
    return frame.loc[[a for a in ALLOCATIONS if frame.loc[a].notna().any()]]
