"""The paper's Table 1 beside ours: each (student, bit-option version, budget A/B/C) cell the paper
reports, its numbers (Oxford-IIIT Pets) next to a suite's (from the committed records).

The paper's numbers are data (``leaderboard/paper/table1.csv``, typed from the paper and checked
against its text); a suite's cell matches the paper's row of the same architecture and version
in budget order when the suite runs as many budgets there as the paper, else the one whose budget
is nearest (ours may differ where the paper's is degenerate or infeasible: see
``suites/pets.yaml`` and MobileNetV4's III-A, 340 -> 404, in ``suites/digits-table1.yaml``).
Our Δ is minus the drop under the pair's own policy, as the paper signs it; over several seeds, the mean over the valid ones and their count.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dptq.tables import markdown_table

from .views import groups, md_cell

PAPER = Path(__file__).resolve().parents[2] / "leaderboard" / "paper" / "table1.csv"


def paper_rows(path: Path = PAPER) -> pd.DataFrame:
    """The paper's Table 1, one row per (architecture, version, budget letter)."""
    return pd.read_csv(path, comment="#")


def table1(g: pd.DataFrame, suite: str, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's rows beside the suite's cells (``g``: :func:`bench.board.views.groups`), in the
    paper's order (its architectures as it lists them, then version, then budget letter); a paper
    row the suite did not run is left out."""
    paper = paper_rows() if paper is None else paper
    ours = g[g.suite == suite] if not g.empty else g
    rows = []
    for _, c in ours.iterrows():
        same = paper[(paper.architecture == c.architecture) & (paper.version == c.options)]
        if same.empty:
            continue
        ran = sorted(
            ours[
                (ours.architecture == c.architecture) & (ours.options == c.options)
            ].budget.unique()
        )
        if len(ran) == len(same):
            p = same.sort_values("budget_bits").iloc[ran.index(c.budget)]
        else:
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


# what Table 1's columns mean, under the README's table and the page's
KEY = (
    "the paper: Oxford-IIIT Pets; budget: the paper's letter (its bits / ours); Δ = accuracy "
    "change under the pair's own policy, ours the mean over the valid seeds, or over all where "
    "none is valid (seeds: valid / run)"
)


def _cell(v) -> str:
    """One shown value of :func:`table1`: text as it is, a number to two places, none as -."""
    return v if isinstance(v, str) else "-" if v is None or v != v else f"{v:.2f}"


def table1_markdown(t: pd.DataFrame, suite: str) -> list[str]:
    """README's lines for :func:`table1` (none when the suite ran no paper cell)."""
    if t.empty:
        return []
    lines = [
        f"**Table 1 beside the paper** (suite `{suite}`, digits; {KEY}):",
        "",
    ]
    rows = [[md_cell(_cell(v)) for v in r] for _, r in t.iterrows()]
    return [*lines, *markdown_table(list(t.columns), rows), ""]


def board_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(suite, :func:`table1`) for every suite of the board (``df``: :func:`bench.board.views.frame`)
    with a cell the paper's Table 1 reports, in suite order; the board's README and page show
    them."""
    g = groups(df) if not df.empty else pd.DataFrame()
    if g.empty:
        return []
    paper = paper_rows()
    tables = [(suite, table1(g, suite, paper)) for suite in sorted(g.suite.unique())]
    return [(suite, t) for suite, t in tables if not t.empty]


def board_markdown(df: pd.DataFrame) -> str:
    """The board README's section: :func:`table1_markdown` for each of :func:`board_tables`."""
    lines = []
    for suite, t in board_tables(df):
        lines += table1_markdown(t, suite)
    return "\n".join(["## Beside the paper's Table 1", "", *lines]) if lines else ""


def board_html(df: pd.DataFrame) -> list[str]:
    """The page's section: one table per suite of :func:`board_tables`."""
    import html

    parts = []
    for suite, t in board_tables(df):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
        body = []
        for _, r in t.iterrows():
            body.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>")
        parts += [
            f"<h2>Suite {html.escape(suite)} beside the paper's Table 1</h2>",
            f'<p class="note">{KEY[0].upper() + KEY[1:]}.</p>',  # KEY: plain text, no markup
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
        ]
    return parts
