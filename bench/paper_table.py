"""The paper's Table 1 beside ours: each (student, bit-option version, budget A/B/C) cell the paper
reports, its numbers (Oxford-IIIT Pets) next to a suite's (from the committed records).

The paper's numbers are data (``leaderboard/paper/table1.csv``, typed from the paper and checked
against its text); a suite's cell matches the paper's row of the same architecture and version
whose budget is nearest (ours may differ where the paper's is degenerate or infeasible: see
``suites/pets.yaml``). Our Δ is minus the drop under the pair's own policy, as the paper signs it;
over several seeds, the mean over the valid ones and their count.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .views import md_cell

PAPER = Path(__file__).resolve().parent.parent / "leaderboard" / "paper" / "table1.csv"


def paper_rows(path: Path = PAPER) -> pd.DataFrame:
    """The paper's Table 1, one row per (architecture, version, budget letter)."""
    return pd.read_csv(path, comment="#")


def table1(g: pd.DataFrame, suite: str, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's rows beside the suite's cells (``g``: :func:`bench.views.groups`), in the
    paper's order (its architectures as it lists them, then version, then budget letter); a paper
    row the suite did not run is left out."""
    paper = paper_rows() if paper is None else paper
    ours = g[g.suite == suite] if not g.empty else g
    rows = []
    for _, c in ours.iterrows():
        same = paper[(paper.architecture == c.architecture) & (paper.version == c.options)]
        if same.empty:
            continue
        p = same.iloc[(same.budget_bits - c.budget).abs().argsort().iloc[0]]
        rows.append(
            {
                "_order": (
                    list(paper.architecture.unique()).index(c.architecture),
                    c.options,
                    p.budget,
                ),
                "architecture": c.architecture,
                "version": c.options,
                "budget": f"{p.budget} ({p.budget_bits} / {c.budget})",
                "paper f_N": p.t_acc,
                "f_N": c.f_n_acc,
                "paper R FP": p.r_fp,
                "R FP": c.f_r_fp_acc,
                "paper R Δ": p.r_delta,
                "R Δ": None if c.f_r_drop is None else -c.f_r_drop,
                "paper D FP": p.d_fp,
                "D FP": c.f_d_fp_acc,
                "paper D Δ": p.d_delta,
                "D Δ": None if c.f_d_drop is None else -c.f_d_drop,
                "seeds": c.seeds,
            }
        )
    cols = ["architecture", "version", "budget", "paper f_N", "f_N", "paper R FP", "R FP"]
    cols += ["paper R Δ", "R Δ", "paper D FP", "D FP", "paper D Δ", "D Δ", "seeds"]
    rows.sort(key=lambda r: r.pop("_order"))
    return pd.DataFrame(rows, columns=cols)


def table1_markdown(t: pd.DataFrame, suite: str) -> list[str]:
    """README's lines for :func:`table1` (none when the suite ran no paper cell)."""
    if t.empty:
        return []
    lines = [
        f"**Table 1 beside the paper** (suite `{suite}`, digits; the paper: Oxford-IIIT Pets; "
        "budget: the paper's letter (its bits / ours); Δ = accuracy change under the pair's own "
        "policy, ours the mean over the valid seeds, or over all where none is valid (seeds: valid / run)):",
        "",
        "| " + " | ".join(t.columns) + " |",
        "|" + "---|" * len(t.columns),
    ]
    for _, r in t.iterrows():
        cells = [v if isinstance(v, str) else "-" if v is None or v != v else f"{v:.2f}" for v in r]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return [*lines, ""]
