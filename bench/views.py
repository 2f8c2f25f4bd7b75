"""Tables, CSV and figures of the leaderboard, as pure functions of the records.

:func:`frame` keeps the **latest** record per (suite, architecture, bit options, budget, seed)
(older ones stay in the data as history) and adds the verdict of :mod:`bench.protocol`;
:func:`groups` puts the seeds of one (suite, architecture, options, budget) together (mean, sd,
n). Valid groups are ranked, most robust first (smallest mean gap); invalid ones are shown apart
with their reasons, never ranked; failed entries last. Same records, same bytes. One job: the
board's tables and figures from one frame of the records (the page is :mod:`bench.page`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dptq.io import atomic_file  # noqa: E402

MEASURED = ("f_n_acc", "f_r_fp_acc", "f_r_q_acc", "f_r_drop", "f_d_fp_acc", "f_d_q_acc")
MEASURED += ("f_d_drop", "gap", "fp_match", "f_d_random_acc")


def _transfer(r, which: str):
    t = r.analysis("quantizer_transfer")
    if t is None:
        return None
    scheme = t.gap_min_scheme if which == "min" else t.gap_max_scheme
    return t.gap(scheme)


# a view's column -> how it is read off a record (its derived scores, its analyses' fields)
READ = {
    **{k: (lambda r, k=k: getattr(r, k)) for k in MEASURED},
    "transitory_rate_test": lambda r: r.analysis("transitory", "rate_of_test"),
    "transitory_rate_both_correct": lambda r: r.analysis("transitory", "rate_of_both_correct"),
    "hidden_gap": lambda r: r.hidden_gap,
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
KEY = ["dataset", "suite", "suite_hash", "architecture", "options", "budget", "recipe"]
COLUMNS = [  # (field, heading) of the ranked tables
    ("architecture", "architecture"),
    ("options", "options"),
    ("budget", "budget"),
    ("recipe", "recipe"),
    ("n", "seeds"),
    ("f_n_acc", "f_N acc"),
    ("f_r_fp_acc", "f_R FP"),
    ("f_r_drop", "f_R drop"),
    ("f_d_fp_acc", "f_D FP"),
    ("f_d_drop", "f_D drop"),
    ("gap", "gap"),
    ("hidden_gap", "hidden gap"),
    ("fp_match", "FP match"),
    ("stealthy", "stealthy"),
    ("f_d_random_acc", "f_D random"),
    ("transitory_rate_test", "transitory %"),
    ("policy_only_drop", "policy-only attack"),
    ("transfer_gap_min", "gap, best quantizer"),
    ("transfer_gap_max", "gap, worst quantizer"),
    ("best_defense_gap", "gap after best defense"),
    ("best_defense", "best defense"),
    ("retries", "retries"),
    ("suite", "suite"),
]


def frame(records: list, roots: dict[str, Path] | None = None) -> pd.DataFrame:
    """One row per current record (the latest of each (suite, arch, options, budget, seed)).

    ``records``: :class:`bench.record.Record` (or schema-1 history); ``roots`` (id -> board
    folder) lets links point at each record's own board.
    """
    latest: dict[tuple, object] = {}
    for r in sorted(records, key=lambda r: (r.date, r.id)):
        latest[(r.suite, r.architecture, r.bit_options, r.budget, r.seed)] = r
    rows = []
    for r in latest.values():
        ok = r.error is None
        row = {
            "dataset": r.dataset,
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
        rows.append(row)
    columns = [*KEY, "seed", "id", "error", "valid", "reasons", "stealthy", "degenerate"]
    columns += ["retries", "report", "per_example", "root", *MEASURES, *NAMES]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["dataset", "id"], kind="mergesort").reset_index(drop=True)


def groups(df: pd.DataFrame) -> pd.DataFrame:
    """The seeds of each (suite, architecture, options, budget) together: mean and sd per number,
    ``n``, the verdict of every seed (valid only when all are), ranked within each dataset."""
    ok = df[df.error == ""]
    rows = []
    for key, g in ok.groupby(KEY, sort=True):
        row = dict(zip(KEY, key))
        row["n"] = len(g)
        for k in MEASURES:
            vals = [v for v in g[k] if v is not None and not math.isnan(v)]
            row[k] = sum(vals) / len(vals) if vals else None
            row[f"{k}_sd"] = pd.Series(vals).std() if len(vals) > 1 else None
        for k in NAMES:  # the seeds' choices, each once
            row[k] = "/".join(dict.fromkeys(v for v in g[k] if v)) or None
        row["valid"] = bool(g.valid.all())
        row["reasons"] = "; ".join(
            f"seed {s}: {r}" if len(g) > 1 else r for s, r in zip(g.seed, g.reasons) if r
        )
        row["stealthy"] = bool(g.stealthy.all())
        row["degenerate"] = bool(g.degenerate.any())
        row["retries"] = int(g.retries.sum())
        row["links"] = [
            (int(s), rep, pe, root)
            for s, rep, pe, root in zip(g.seed, g.report, g.per_example, g.root)
        ]
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_invalid"] = ~out.valid
    out = out.sort_values(
        ["dataset", "_invalid", "gap", "architecture", "budget"], kind="mergesort"
    )
    out["rank"] = None
    for _, g in out[out.valid].groupby("dataset"):
        out.loc[g.index, "rank"] = range(1, len(g) + 1)
    return out.drop(columns="_invalid").reset_index(drop=True)


def fmt(row, key: str, digits: int = 2) -> str:
    """A cell's text: ``mean +- sd`` over several seeds, ``-`` when absent."""
    v = row.get(key) if isinstance(row, dict) else row[key]
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if not isinstance(v, float):
        return str(v)
    sd = row.get(f"{key}_sd") if isinstance(row, dict) else row.get(f"{key}_sd", None)
    if sd is not None and not (isinstance(sd, float) and math.isnan(sd)):
        return f"{v:.{digits}f} ± {sd:.{digits}f}"
    return f"{v:.{digits}f}"


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no column break, no HTML, one line)."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(df: pd.DataFrame) -> str:
    g = groups(df)
    lines = [
        "# dptq-bench leaderboard",
        "",
        "Catastrophic failure under dynamic post-training quantization, per architecture, bit "
        "options and budget (mean ± sd over seeds). **gap** = quantized drop of the detrimental "
        "pair minus that of the robust pair (points); **hidden gap** = f_D's drop under its own "
        "policy minus its worst drop under any other allocation (pi_R, uniform, random): large "
        "when the failure is triggered by pi_D alone; **FP match** = |FP f_R - FP f_D|. A row is "
        "ranked only when it is *valid* (selected on the validation split, FP match and both FP "
        "drops within the protocol's bounds, f_N well above chance); invalid rows are listed "
        "apart with the reason. The deployer's columns (analyses `audit`, `quantizer_transfer`, "
        "`defenses`; `-` where a suite did not run them): **policy-only attack** = f_N's drop "
        "under an adversarial bit allocation alone, its weights frozen; **gap, best / worst "
        "quantizer** = the gap under the activation quantizer (of six) that shrinks / widens it "
        "most; **gap after best defense** = the smallest gap a defense leaves that costs f_D at "
        "most the protocol's FP drop. Generated by `python -m bench leaderboard` from "
        "`records/`; do not edit by hand.",
        "",
        "![gap per architecture and budget](gap.png) ![FP accuracy vs gap](fp_vs_gap.png)",
        "",
    ]
    if df.empty:
        return "\n".join(lines + ["No records yet.", ""])
    head = "| rank | " + " | ".join(h for _, h in COLUMNS) + " |"
    rule = "|---:|" + "---|" * len(COLUMNS)
    for dataset in sorted(df.dataset.unique()):
        lines += [f"## {md_cell(dataset)}", ""]
        sub = g[g.dataset == dataset] if not g.empty else g
        valid, invalid = (
            sub[sub.valid] if not sub.empty else sub,
            sub[~sub.valid] if not sub.empty else sub,
        )
        if len(valid):
            lines += [head, rule]
            for _, row in valid.iterrows():
                mark = " (degenerate)" if row.degenerate else ""
                cells = [md_cell(fmt(row, k)) for k, _ in COLUMNS]
                lines.append(f"| {row['rank']}{mark} | " + " | ".join(cells) + " |")
            lines.append("")
        if len(invalid):
            lines += ["Not ranked (invalid):", "", head.replace("| rank |", "| reason |"), rule]
            for _, row in invalid.iterrows():
                cells = [md_cell(fmt(row, k)) for k, _ in COLUMNS]
                lines.append(f"| {md_cell(row.reasons)} | " + " | ".join(cells) + " |")
            lines.append("")
        failed = df[(df.dataset == dataset) & (df.error != "")]
        for _, row in failed.iterrows():
            lines.append(f"Failed: `{md_cell(row.id)}`: {md_cell(row.error)}")
        lines.append("")
    return "\n".join(lines)


def render_csv(df: pd.DataFrame) -> str:
    return df.drop(columns=["root"]).to_csv(index=False, float_format="%.4f")


def render_pngs(df: pd.DataFrame, out: Path) -> list[Path]:
    g = groups(df)
    paths = []
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if not g.empty:
        labels = [
            f"{a}\n{o} / {b}\n{s}"
            for a, o, b, s in zip(g.architecture, g.options, g.budget, g.suite)
        ]
        x = range(len(g))
        err = [v if v is not None and v == v else 0 for v in g.get("gap_sd", [0] * len(g))]
        hatch = ["" if v else "//" for v in g.valid]
        bars = ax.bar([i - 0.2 for i in x], g.gap, 0.4, yerr=err, color="tab:red", label="gap")
        hid = [v if v is not None else 0 for v in g.hidden_gap]
        bars2 = ax.bar([i + 0.2 for i in x], hid, 0.4, color="tab:purple", label="hidden gap")
        for b, h in zip([*bars, *bars2], hatch * 2):
            b.set_hatch(h)
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.legend(fontsize=8, title="hatched: invalid", title_fontsize=7)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("points")
    ax.set_title("Gap and hidden gap per architecture (bit options / budget, suite), mean ± sd")
    paths.append(_save(fig, out / "gap.png"))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ok = df[df.error == ""]
    for arch, a in ok.groupby("architecture", sort=True):
        ax.scatter(a.f_d_fp_acc, a.gap, label=arch, s=30)
    ax.set_xlabel("f_D full-precision accuracy (%)")
    ax.set_ylabel("gap (points)")
    ax.set_title("Full-precision accuracy vs gap (each seed)")
    if not ok.empty:
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "fp_vs_gap.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def link(root: str, rel: str | None, out: Path) -> str | None:
    """A record's file (``rel`` inside its board ``root``) as a link from the folder ``out``."""
    if not isinstance(rel, str) or not rel:
        return None
    target = Path(root or out) / rel
    return os.path.relpath(target, out).replace(os.sep, "/")


RESULTS_BEGIN = "<!-- results: generated by `python -m bench leaderboard --readme README.md` -->"
RESULTS_END = "<!-- results: end -->"


def results_section(df: pd.DataFrame, suites: tuple[str, ...]) -> str:
    """README's results: the groups of ``suites``, every number from the committed records."""
    g = groups(df)
    lines = [RESULTS_BEGIN, ""]
    cols = [
        ("architecture", "architecture"),
        ("options", "options"),
        ("budget", "budget"),
        ("n", "seeds"),
        ("f_n_acc", "f_N"),
        ("f_r_fp_acc", "f_R FP"),
        ("f_r_drop", "f_R drop"),
        ("f_d_fp_acc", "f_D FP"),
        ("f_d_drop", "f_D drop"),
        ("gap", "gap"),
        ("hidden_gap", "hidden gap"),
        ("fp_match", "FP match"),
        ("worst_non_own_drop", "f_D worst other drop"),
        ("stealthy", "stealthy"),
    ]
    for suite in suites:
        sub = g[g.suite == suite] if not g.empty else g
        if sub.empty:
            continue
        # read in budget order here (the board ranks)
        sub = sub.sort_values(["architecture", "options", "budget"], kind="mergesort")
        lines += [f"**Suite `{suite}`** (test split; mean ± sd over seeds):", ""]
        lines += [
            "| " + " | ".join(h for _, h in cols) + " | valid |",
            "|" + "---|" * (len(cols) + 1),
        ]
        for _, row in sub.iterrows():
            verdict = "yes" if row.valid else f"no: {md_cell(row.reasons)}"
            lines.append(
                "| " + " | ".join(md_cell(fmt(row, k, 1)) for k, _ in cols) + f" | {verdict} |"
            )
        lines.append("")
        lines += _deployer_rows(sub)
    return "\n".join([*lines, RESULTS_END])


def _deployer_rows(sub: pd.DataFrame) -> list[str]:
    """The deployer's analyses of a suite's groups, when it ran them (README's results)."""
    if all(v is None or v != v for v in sub.get("policy_only_drop", [])):
        return []

    def named(row, value: str, name: str) -> str:
        text = fmt(row, value, 1)
        return f"{text} ({row[name]})" if row[name] else text

    lines = [
        "The deployer's analyses (audit, quantizer transfer, defenses):",
        "",
        "| architecture | options | budget | policy-only attack on f_N | gap, best quantizer | "
        "gap, worst quantizer | gap after best defense |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in sub.iterrows():
        cells = [
            row.architecture,
            row.options,
            str(row.budget),
            fmt(row, "policy_only_drop", 1),
            named(row, "transfer_gap_min", "transfer_gap_min_scheme"),
            named(row, "transfer_gap_max", "transfer_gap_max_scheme"),
            named(row, "best_defense_gap", "best_defense"),
        ]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return [*lines, ""]
