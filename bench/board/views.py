"""The board's frame and its tables (Markdown, CSV), as pure functions of the records.

:func:`frame` keeps the **latest** record per (suite, architecture, bit options, budget, seed)
(older ones stay in the data as history) and adds the verdict of :mod:`bench.records.protocol`; records
that are one evaluation (the same per-example file of the same cell, e.g. a suite that copied
another's stages) are one row, under the suite that made it first, the others named (``also_in``);
:func:`groups` puts the seeds of one (suite, architecture, options, budget) together (mean, sd,
n). Valid groups are ranked by their worst-case gap, smallest first; invalid ones are shown apart
with their reasons, never ranked; failed entries last; the closed division's architecture view
first, the open division apart (:mod:`bench.config.closed`). Same records, same bytes. One job: the
board's frame and the tables read from it (the figures are :mod:`bench.board.figures`, the page
:mod:`bench.board.page`).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

from dptq.scores import points
from dptq.tables import cell as md_cell
from dptq.tables import markdown_table

from ..names import roc_name
from . import groups as cell_groups
from .groups import ARCH_COLUMNS, KEY, architecture_view
from .indicators import best_indicator, indicator_markdown, indicator_table

MEASURED = ("f_n_acc", "f_r_fp_acc", "f_r_q_acc", "f_r_drop", "f_d_fp_acc", "f_d_q_acc")
MEASURED += ("f_d_drop", "gap", "fp_match", "f_d_random_acc")


def _transfer(r, which: str):
    t = r.analysis("quantizer_transfer")
    if t is None:
        return None
    scheme = t.gap_min_scheme if which == "min" else t.gap_max_scheme
    return t.gap(scheme)


def _random_drop(r):
    """f_D's mean drop under the random allocations, exactly from the counts."""
    return points(r.counts().f_D.drop("random", r.evaluation.total))


# a view's column -> how it is read off a record (its derived scores, its analyses' fields)
READ = {
    **{k: (lambda r, k=k: getattr(r, k)) for k in MEASURED},
    "transitory_rate_test": lambda r: r.analysis("transitory", "rate_of_test"),
    "transitory_rate_both_correct": lambda r: r.analysis("transitory", "rate_of_both_correct"),
    "f_d_random_drop": lambda r: _random_drop(r),
    "hidden_gap": lambda r: r.hidden_gap,
    "specificity": lambda r: r.specificity,
    "worst_non_own_drop": lambda r: r.worst_non_own_drop,
    "policy_only_drop": lambda r: r.analysis("audit", "policy_only_drop"),
    "transfer_gap_min": lambda r: _transfer(r, "min"),
    "transfer_gap_max": lambda r: _transfer(r, "max"),
    "best_defense_gap": lambda r: r.analysis("defenses", "best_gap"),
}
TEXTS = {
    "transfer_gap_min_scheme": lambda r: r.analysis("quantizer_transfer", "gap_min_scheme"),
    "transfer_gap_max_scheme": lambda r: r.analysis("quantizer_transfer", "gap_max_scheme"),
    "best_defense": lambda r: r.analysis("defenses", "best"),
}
MEASURES = tuple(READ)
NAMES = tuple(TEXTS)
COLUMNS = [  # (field, heading) of the ranked tables: accuracies at FP, then drops (points)
    ("architecture", "architecture"),
    ("options", "options"),
    ("budget", "budget"),
    ("recipe", "recipe"),
    ("winners", "winning configuration"),
    ("seeds", "valid seeds"),
    ("f_n_acc", "f_N acc"),
    ("f_r_fp_acc", "f_R FP acc"),
    ("f_d_fp_acc", "f_D FP acc"),
    ("fp_match", "FP match"),
    ("gap_worst", "worst-case gap"),
    ("attack_success", "attack success"),
    ("gap", "gap"),
    ("hidden_gap_worst", "worst hidden gap"),
    ("f_r_drop", "f_R drop"),
    ("f_d_drop", "f_D drop"),
    ("f_d_random_drop", "f_D random drop"),
    ("specificity_best", "specificity"),
    ("stealthy", "stealthy"),
    ("transitory_rate_test", "transitory %"),
    ("policy_only_drop", "policy-only attack"),
    ("transfer_gap_min", "gap, best quantizer"),
    ("transfer_gap_max", "gap, worst quantizer"),
    ("best_defense_gap", "gap after best defense"),
    ("best_defense", "best defense"),
    ("retries", "retries"),
    ("trust", "checked"),
    ("suite", "suite"),
]


def frame(
    records: list, roots: dict[str, Path] | None = None, checks: dict | None = None
) -> pd.DataFrame:
    """One row per current record (the latest of each (suite, arch, options, budget, seed)).

    ``records``: :class:`bench.records.record.Record`; ``roots`` (id -> board
    folder) lets links point at each record's own board.
    """
    latest: dict[tuple, object] = {}
    for r in sorted(records, key=lambda r: (r.date, r.id)):
        latest[(r.suite, r.architecture, r.bit_options, r.budget, r.seed)] = r
    first: dict[tuple, object] = {}  # one evaluation, one row: the first suite that made it
    also: dict[str, list[str]] = {}
    for r in sorted(latest.values(), key=lambda r: (r.date, r.id)):
        key = (r.dataset, r.architecture, r.bit_options, r.budget, r.seed, _evidence(r))
        if key[-1] is None:
            key = (*key, r.id)
        if key not in first:
            first[key] = r
            also[r.id] = []
        else:
            also[first[key].id].append(r.suite)
    rows = []
    for r in first.values():
        ok = r.error is None
        row = {
            "dataset": r.dataset,
            "division": r.division,
            "attack": r.attack or "",
            "suite": r.suite,
            "suite_hash": r.suite_hash,
            "architecture": r.architecture,
            "options": r.bit_options,
            "budget": r.budget,
            "recipe": r.recipe,
            "seed": r.seed,
            "id": r.id,
            "error": r.error or "",
            "valid": bool(ok and r.valid),
            "reasons": "; ".join(r.invalid_reasons or []) if ok else "",
            "stealthy": bool(ok and r.stealthy),
            "attacked": bool(ok and r.attacked),
            "num_layers": r.num_layers if ok else None,
            "degenerate": bool(r.degenerate),
            "retries": len(r.retries or []),
            "report": r.report if ok else None,
            "per_example": r.per_example if ok else None,
            "root": str((roots or {}).get(r.id, "")),
        }
        for k, read in READ.items():
            v = read(r) if ok else None
            row[k] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        for k, read in TEXTS.items():
            row[k] = (read(r) if ok else None) or ""
        row["indicators"] = r.analysis("fp_indicators", "values") if ok else None
        row.update(_closed_columns(r, ok))
        row.update(_trust_columns((checks or {}).get(r.id)))
        row["also_in"] = ", ".join(dict.fromkeys(also[r.id]))
        rows.append(row)
    columns = [*KEY, "seed", "id", "error", "valid", "reasons", "stealthy", "attacked"]
    columns += ["num_layers", "degenerate"]
    columns += ["retries", "report", "per_example", "root", *MEASURES, *NAMES, "indicators"]
    columns += ["attack", "configuration", "portfolio_attack", "wall_s", "changes", "also_in"]
    columns += ["reproduced", "reevaluated", "checked", "trust_gap", "trust_images"]
    columns += ["reevaluated_images", "reevaluated_own_images", "reevaluated_other_images"]
    columns += ["reevaluated_elsewhere", "reevaluated_agrees"]  # agrees: with other arithmetic
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["dataset", "id"], kind="mergesort").reset_index(drop=True)


def _trust_columns(check: dict | None) -> dict:
    """How far a record was checked (:func:`bench.board.leaderboard.load_boards`):
    ``reproduced`` (on another machine), ``reevaluated`` (from its networks), ``checked`` (the
    checks passed), the largest differences seen."""
    check = check or {}
    return {
        "reproduced": check.get("level") == "reproduced",
        "reevaluated": bool(check.get("reevaluated")),
        "checked": bool(check.get("passed")),
        "trust_gap": check.get("gap"),
        "trust_images": check.get("images"),
        "reevaluated_images": check.get("reevaluated_images"),
        "reevaluated_own_images": check.get("reevaluated_own_images"),
        "reevaluated_other_images": check.get("reevaluated_other_images"),
        "reevaluated_elsewhere": bool(check.get("reevaluated_elsewhere")),
        "reevaluated_agrees": check.get("other_agrees") is not False,
    }


def _evidence(r) -> str | None:
    """The hash of a record's per-example file: what makes two records one evaluation."""
    return r.per_example_sha256 if r.error is None else None


def _closed_columns(r, ok: bool) -> dict:
    """A record's division columns: the winning configuration, whether any configuration of its
    portfolio found an attack on validation (a drop above ``attack_min``), its wall time, and
    (open rows) what its suite changes from the standard attack."""
    rows = ((r.searches or {}).get("detrimental") or []) if ok else []
    limit = r.protocol.attack_min if ok else 0.0
    seconds = r.stage_seconds or {}
    return {
        "configuration": (r.configuration or {}).get("detrimental") or "",
        "portfolio_attack": any(
            t.val_drop is not None and t.val_drop > limit for t in rows if not t.failed
        ),
        "wall_s": float(sum(seconds.values())) if seconds else None,
        "changes": _changes(r.suite_text, r.division),
    }


@lru_cache(maxsize=256)
def _changes(text: str | None, division: str) -> str:
    """What an open record's suite changes from the standard attack (:func:`bench.config.closed.changes`)."""
    if division == "closed":
        return ""
    if text is None:
        return "unknown (a record without its suite)"
    import yaml

    from ..config.closed import changes

    return changes(yaml.safe_load(text))  # the suite's data: no suite built, no torch


def groups(df: pd.DataFrame) -> pd.DataFrame:
    """The seeds of each cell together, scored by their worst case (:func:`bench.board.groups.groups`)."""
    return cell_groups.groups(df, MEASURES, NAMES)


def fmt(row, key: str, digits: int = 2) -> str:
    """A cell's text: ``mean ± half width`` of its 95% interval over the seeds where it has one,
    ``-`` when absent."""
    v = row.get(key) if isinstance(row, dict) else row[key]
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if not isinstance(v, float):
        return str(v)
    sd = row.get(f"{key}_ci")
    if sd is not None and not (isinstance(sd, float) and math.isnan(sd)):
        return f"{v:.{digits}f} ± {sd:.{digits}f}"
    return f"{v:.{digits}f}"


INTRO = (
    "Catastrophic failure under dynamic post-training quantization, per architecture, bit "
    "options and budget, over seeds. **The closed division** is the ranking of architectures: "
    "every row made by one standard attack, fixed in code and versioned (`bench/closed.py`: a "
    "portfolio of detrimental configurations and one robust control, selection under the "
    "protocol on the validation split, protocol v3), as RobustBench runs one attack on every "
    "entry. **The open division** is everything else, each row named by what its suite changes "
    "from the standard attack: it compares recipes as much as architectures. **gap** = "
    "quantized drop of the detrimental pair minus that of the robust pair (points); a cell is "
    "scored by what an attacker can reach: its **worst-case gap** (the largest gap among its "
    "valid seeds; the rank, most robust first) and its **attack success** (valid seeds whose "
    "f_D dropped by more than the protocol's `attack_min`, 10 points, under its own policy: a "
    "seed whose search found no attack is the attacker's failure, not the architecture's "
    "robustness); other numbers are means over the valid seeds ± the half width of their 95% "
    "interval (Student's t). **hidden gap** = f_D's drop under its own policy minus its worst "
    "drop under any other allocation (pi_R, uniform, random, held-out); **specificity** = that "
    "worst other drop / the drop under pi_D (0: only pi_D breaks f_D; the paper's Table 3 pair: "
    "0.23), of the most specific attack among the valid seeds; **FP match** = |FP f_R - FP "
    "f_D|. Accuracy columns (acc) are at full precision; every other column is a drop in points. "
    "A cell is ranked when at least one seed is *valid* under the protocol its records name (v2: "
    "selected on the validation split, FP match and both FP drops within the bounds, f_N above "
    "the minimum; v3, the closed division's: the same without the FP match rule, full precision "
    "judged one-sided against f_N); invalid seeds are named with their reason and enter no "
    "score; cells without a valid seed are listed apart. Records that are one evaluation (the "
    "same per-example file) are one row, under the suite that made it first (*also in*). The "
    "deployer's columns (analyses `audit`, `quantizer_transfer`, `defenses`; `-` where a suite "
    "did not run them): **policy-only attack** = f_N's drop under an adversarial bit allocation "
    "alone, its weights frozen; **gap, best / worst quantizer** = the gap under the activation "
    "quantizer (of six) that shrinks / widens it most; **gap after best defense** = the smallest "
    "gap a defense leaves that costs f_D at most the protocol's FP drop. Generated by `python -m "
    "bench leaderboard` from `records/`; do not edit by hand."
)
DIVISION_TITLES = {
    "closed": "Every cell of the closed division, ranked by its worst-case gap:",
    "open": (
        "Every cell of the open division, by worst-case gap (its suites' recipes differ: an "
        "order of results, not a ranking of architectures):"
    ),
}


def render_markdown(df: pd.DataFrame) -> str:
    g = groups(df)
    lines = [
        "# dptq-bench leaderboard",
        "",
        INTRO,
        "",
        "![gap per architecture and budget](gap.png) ![FP accuracy vs gap](fp_vs_gap.png)",
        "",
    ]
    if df.empty:
        return "\n".join(lines + ["No records yet.", ""])
    arch = architecture_view(g) if not g.empty else g
    for dataset in sorted(df.dataset.unique()):
        lines += [f"## {md_cell(dataset)}", "", "### Closed division", ""]
        shown = arch[arch.dataset == dataset] if not arch.empty else arch
        lines += architecture_rows(shown) or [
            "No closed-division records yet: no architecture is ranked on this dataset.",
            "",
        ]
        sub = g[g.dataset == dataset] if not g.empty else g
        for division in ("closed", "open"):
            part = sub[sub.division == division] if not sub.empty else sub
            if division == "open":
                lines += ["### Open division", ""]
            lines += cell_rows(part, DIVISION_TITLES[division], division)
        failed = df[(df.dataset == dataset) & (df.error != "")]
        for _, row in failed.iterrows():
            lines.append(f"Failed: `{md_cell(row.id)}`: {md_cell(row.error)}")
        lines.append("")
        pairs_of, which = indicator_pairs(df[df.dataset == dataset])
        table = indicator_table(pairs_of)
        lines += [which, ""] if not table.empty else []
        lines += indicator_markdown(table)
        if best_indicator(table) is not None:
            lines += [f"![best indicator's ROC]({roc_name(dataset)})", ""]
    return "\n".join(lines)


def indicator_pairs(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows the full-precision indicator table reads: the closed division's (one row per
    evaluation) where it has pairs with the indicators, else every row; and a line saying which."""
    closed = df[df.division == "closed"] if not df.empty else df
    if not indicator_table(closed).empty:
        return closed, "Full-precision indicators over the closed division's pairs:"
    return df, "Full-precision indicators over every pair (no closed-division pair has them):"


def cell_rows(sub: pd.DataFrame, title: str, division: str) -> list[str]:
    """A division's cells: the valid ones ranked (ordered), the invalid ones apart."""
    if sub.empty:
        return []
    cols = COLUMNS + (
        [("changes", "changes from the standard attack")] if division == "open" else []
    )
    cols = cols + [("also_in", "also in")]
    heads = [h for _, h in cols]
    align = "r" + "l" * len(cols)
    lines = []
    valid, invalid = sub[sub.valid], sub[~sub.valid]
    if len(valid):
        rows = [
            [f"{row['rank']}" + (" (degenerate)" if row.degenerate else "")]
            + [md_cell(fmt(row, k)) for k, _ in cols]
            for _, row in valid.iterrows()
        ]
        lines += [title, "", *markdown_table(["rank", *heads], rows, align), ""]
    if len(invalid):
        rows = [
            [md_cell(row.reasons)] + [md_cell(fmt(row, k)) for k, _ in cols]
            for _, row in invalid.iterrows()
        ]
        lines += ["Not ranked (invalid):", "", *markdown_table(["reason", *heads], rows, align), ""]
    return lines


def architecture_rows(arch: pd.DataFrame) -> list[str]:
    """The architecture view of one dataset (:func:`bench.board.groups.architecture_view`)."""
    if arch.empty:
        return []
    attacks = ", ".join(sorted({a for a in arch.attack if a}))
    lines = [
        f"**Architectures** under the standard attack ({md_cell(attacks)}) at its cell "
        f"({md_cell(arch.iloc[0].cell)}), smallest worst-case gap first. The verdict says in "
        "words what the seeds show: an architecture *resists* only when every configuration of "
        "the portfolio failed on every seed; at 0/n attack success otherwise, an attack was "
        "found that broke full precision, which is no evidence of robustness. The winning "
        "configuration of each seed is the one selected on validation; wall time: every stage "
        "of every seed:",
        "",
    ]
    rows = [
        [md_cell(fmt(row, k, 1)) for k, _ in ARCH_COLUMNS]
        + ["yes" if row.valid else f"no: {md_cell(row.reasons)}"]
        for _, row in arch.iterrows()
    ]
    return [*lines, *markdown_table([*(h for _, h in ARCH_COLUMNS), "valid"], rows), ""]


def render_csv(df: pd.DataFrame) -> str:
    return df.drop(columns=["root", "indicators"]).to_csv(index=False, float_format="%.4f")


def link(root: str, rel: str | None, out: Path) -> str | None:
    """A record's file (``rel`` inside its board ``root``) as a link from the folder ``out``."""
    if not isinstance(rel, str) or not rel:
        return None
    target = Path(root or out) / rel
    return os.path.relpath(target, out).replace(os.sep, "/")
