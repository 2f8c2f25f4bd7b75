"""Can a deployer tell f_D from f_R without quantizing? The board's answer, from the records'
``fp_indicators`` analysis (:mod:`dptq.indicators`): per indicator, the ROC AUC of its value at
separating f_D (positive) from f_R (negative) over the board's pairs, the number of pairs, and
the share of pairs whose f_D scores above its own f_R (a paired reading). An AUC of 0.5 is
chance; below 0.5 the indicator points the other way (reported as measured, never flipped).
Pure functions of the board's frame (:func:`bench.views.frame`); pandas and scikit-learn only
(the ROC figure is :func:`bench.views.render_roc`).
"""

from __future__ import annotations

import pandas as pd

# the pairs each AUC is computed over: the valid seeds; of those, the ones with an attack
SETS = (("valid", "valid pairs"), ("attacked", "valid pairs with an attack"))


def pairs(df: pd.DataFrame, which: str) -> pd.DataFrame:
    ok = df[(df.error == "") & df.indicators.notna()] if "indicators" in df else df.iloc[0:0]
    ok = ok[ok.valid]
    return ok[ok.attacked] if which == "attacked" else ok


def indicator_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per indicator: AUC and pairs for each of :data:`SETS`, and the paired share."""
    from sklearn.metrics import roc_auc_score

    names = sorted({k for v in pairs(df, "valid").indicators for k in v.get("f_D", {})})
    rows = []
    for name in names:
        row = {"indicator": name}
        for which, _ in SETS:
            sub = pairs(df, which)
            d = [v["f_D"][name] for v in sub.indicators]
            r = [v["f_R"][name] for v in sub.indicators]
            row[f"auc_{which}"] = (
                float(roc_auc_score([1] * len(d) + [0] * len(r), d + r)) if len(d) >= 2 else None
            )
            row[f"n_{which}"] = len(d)
            if which == "valid":
                row["f_D_above_f_R"] = sum(a > b for a, b in zip(d, r)) / len(d) if d else None
        rows.append(row)
    cols = ["indicator", *[c for w, _ in SETS for c in (f"auc_{w}", f"n_{w}")], "f_D_above_f_R"]
    return pd.DataFrame(rows, columns=cols)


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


def indicator_markdown(table: pd.DataFrame) -> list[str]:
    """The AUC table as Markdown lines (nothing when no record ran the analysis)."""
    if table.empty:
        return []

    lines = [
        "**Can a deployer tell f_D from f_R at full precision?** ROC AUC of each indicator "
        "(analysis `fp_indicators`: higher read as suspicious) at separating f_D from f_R, over "
        "the valid pairs and over those with an attack; 0.5 is chance, below 0.5 it points the "
        "other way; *f_D above f_R*: share of pairs whose f_D scores higher than its own f_R.",
        "",
        "| indicator | AUC, valid pairs | pairs | AUC, attacked pairs | pairs | f_D above f_R |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.indicator} | {num(r.auc_valid)} | {r.n_valid} | {num(r.auc_attacked)} | "
            f"{r.n_attacked} | {num(r.f_D_above_f_R)} |"
        )
    return [*lines, ""]
