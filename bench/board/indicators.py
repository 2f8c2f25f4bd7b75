"""Can a deployer tell f_D from f_R without quantizing? The board's answer, from the records'
``fp_indicators`` analysis (:mod:`dptq.indicators`): per indicator, the ROC AUC of its value at
separating f_D (positive) from a reference (negative) over the board's pairs, the number of
pairs, and the share of pairs whose f_D scores above its own f_R (a paired reading). Two
references: f_R (what the robust twin looks like) and f_N (the distilled student both were copied
from, i.e. the deployer's honest model): an indicator that tells f_D from f_R but not from f_N
reads the robust hinge's mark on f_R, not the attack's mark on f_D. A pair whose three networks
share one f_N counts that f_N once per pair. An AUC of 0.5 is chance; below 0.5 the indicator
points the other way (reported as measured, never flipped).
Pure functions of the board's frame (:func:`bench.board.views.frame`); pandas and scikit-learn only
(the ROC figure is :func:`bench.board.figures.render_roc`).
"""

from __future__ import annotations

import pandas as pd

from dptq.tables import markdown_table

# the pairs each AUC is computed over: the valid seeds; of those, the ones with an attack
SETS = (("valid", "valid pairs"), ("attacked", "valid pairs with an attack"))
# the negatives each AUC puts against f_D, and the column suffix that names them
REFERENCES = (("f_R", ""), ("f_N", "_vs_f_N"))


def pairs(df: pd.DataFrame, which: str) -> pd.DataFrame:
    ok = df[(df.error == "") & df.indicators.notna()] if "indicators" in df else df.iloc[0:0]
    ok = ok[ok.valid]
    return ok[ok.attacked] if which == "attacked" else ok


def indicator_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per indicator: AUC and pairs for each of :data:`SETS` against each of
    :data:`REFERENCES`, and the paired share (f_D above its own f_R)."""
    from sklearn.metrics import roc_auc_score

    values = {which: list(pairs(df, which).indicators) for which, _ in SETS}
    names = sorted({k for v in values["valid"] for k in v.get("f_D", {})})
    rows = []
    for name in names:
        row = {"indicator": name}
        for which, _ in SETS:
            for ref, suffix in REFERENCES:
                sub = [v for v in values[which] if ref in v]
                d = [v["f_D"][name] for v in sub]
                r = [v[ref][name] for v in sub]
                row[f"auc_{which}{suffix}"] = (
                    float(roc_auc_score([1] * len(d) + [0] * len(r), d + r))
                    if len(d) >= 2
                    else None
                )
                row[f"n_{which}{suffix}"] = len(d)
                if which == "valid" and ref == "f_R":
                    row["f_D_above_f_R"] = sum(a > b for a, b in zip(d, r)) / len(d) if d else None
        rows.append(row)
    cols = ["indicator"]
    cols += [f"{c}_{w}{x}" for _, x in REFERENCES for w, _ in SETS for c in ("auc", "n")]
    return pd.DataFrame(rows, columns=[*cols, "f_D_above_f_R"])


def best_indicator(table: pd.DataFrame) -> str | None:
    """The indicator farthest from chance over the valid pairs (ties: the first by name)."""
    scored = table.dropna(subset=["auc_valid"])
    if scored.empty:
        return None
    far = (scored.auc_valid - 0.5).abs()
    return str(scored.loc[far.idxmax(), "indicator"])


def num(v, digits: int = 2) -> str:
    """A table's number, ``-`` where there is none (too few pairs)."""
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def cells(r) -> list[str]:
    """One table row's cells after the indicator's name: per reference, the AUC over valid and
    over attacked pairs with their pair counts, then the paired share (Markdown and page)."""
    out = []
    for _, x in REFERENCES:
        for w, _ in SETS:
            out.append(f"{num(r[f'auc_{w}{x}'])} ({r[f'n_{w}{x}']})")
    return [*out, num(r.f_D_above_f_R)]


HEADER = [
    "AUC vs f_R, valid (pairs)",
    "vs f_R, attacked",
    "AUC vs f_N, valid",
    "vs f_N, attacked",
    "f_D above f_R",
]


def indicator_markdown(table: pd.DataFrame) -> list[str]:
    """The AUC table as Markdown lines (nothing when no record ran the analysis)."""
    if table.empty:
        return []

    lines = [
        "**Can a deployer tell f_D from f_R, or from f_N, at full precision?** ROC AUC of each "
        "indicator (analysis `fp_indicators`: higher read as suspicious) at separating f_D from "
        "f_R and from f_N (the student both were copied from), over the valid pairs and over "
        "those with an attack (pairs in brackets); 0.5 is chance, below 0.5 it points the other "
        "way; an indicator high against f_R but near 0.5 against f_N reads f_R's robust training, "
        "not f_D's attack; *f_D above f_R*: share of pairs whose f_D scores higher than its own "
        "f_R.",
        "",
    ]
    rows = [[r.indicator, *cells(r)] for _, r in table.iterrows()]
    align = "l" + "r" * len(HEADER)
    return [*lines, *markdown_table(["indicator", *HEADER], rows, align), ""]
