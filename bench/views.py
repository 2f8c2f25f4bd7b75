"""Tables, CSV and figures of the leaderboard, as pure functions of the records.

:func:`frame` keeps the **latest** record per (suite, architecture, bit options, budget, seed)
(older ones stay in the data as history) and adds the verdict of :mod:`bench.protocol`;
:func:`groups` puts the seeds of one (suite, architecture, options, budget) together (mean, sd,
n). Valid groups are ranked by their worst-case gap, smallest first; invalid ones are shown apart
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

from dptq.io import write_figure  # noqa: E402
from dptq.scores import points  # noqa: E402

from . import groups as cell_groups  # noqa: E402
from .groups import ARCH_COLUMNS, KEY, architecture_view  # noqa: E402
from .indicator_view import (  # noqa: E402
    best_indicator,
    indicator_markdown,
    indicator_table,
    pairs,
)

MEASURED = ("f_n_acc", "f_r_fp_acc", "f_r_q_acc", "f_r_drop", "f_d_fp_acc", "f_d_q_acc")
MEASURED += ("f_d_drop", "gap", "fp_match", "f_d_random_acc")


def _transfer(r, which: str):
    t = r.analysis("quantizer_transfer")
    if t is None:
        return None
    scheme = t.gap_min_scheme if which == "min" else t.gap_max_scheme
    return t.gap(scheme)


def _random_drop(r):
    """f_D's mean drop under the random allocations: exact from the counts (schema 3), else from
    the stored accuracies (schema-1 history)."""
    if hasattr(r, "counts"):
        return points(r.counts().f_D.drop("random", r.evaluation.total))
    return None if r.f_d_random_acc is None else r.f_d_fp_acc - r.f_d_random_acc


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
        rows.append(row)
    columns = [*KEY, "seed", "id", "error", "valid", "reasons", "stealthy", "attacked"]
    columns += ["num_layers", "degenerate"]
    columns += ["retries", "report", "per_example", "root", *MEASURES, *NAMES, "indicators"]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["dataset", "id"], kind="mergesort").reset_index(drop=True)


def groups(df: pd.DataFrame) -> pd.DataFrame:
    """The seeds of each cell together, scored by their worst case (:func:`bench.groups.groups`)."""
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
        "options and budget, over seeds. **gap** = quantized drop of the detrimental pair minus "
        "that of the robust pair (points); a cell is scored by what an attacker can reach: its "
        "**worst-case gap** (the largest gap among its valid seeds; the rank, most robust first) "
        "and its **attack success** (valid seeds whose f_D dropped by more than the protocol's "
        "`attack_min`, 10 points, under its own policy: a seed whose search found no attack is "
        "the attacker's failure, not the architecture's robustness); other numbers are means "
        "over the valid seeds ± the half width of their 95% interval (Student's t). **hidden "
        "gap** = f_D's drop under its own policy minus its worst drop under any other allocation "
        "(pi_R, uniform, random, held-out); **specificity** = that worst other drop / the drop "
        "under pi_D (0: only pi_D breaks f_D; the paper's Table 3 pair: 0.23), of the most "
        "specific attack among the valid seeds; **FP match** = |FP f_R - FP f_D|. Accuracy "
        "columns (acc) are at full precision; every other column is a drop in points. A cell is "
        "ranked when at least one seed is *valid* (selected on the validation split, FP match and "
        "both FP drops within the protocol's bounds, f_N above the protocol's minimum); invalid "
        "seeds are named with their reason and enter no score; cells without a valid seed are "
        "listed apart. The deployer's columns (analyses `audit`, `quantizer_transfer`, "
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
    arch = architecture_view(g) if not g.empty else g
    for dataset in sorted(df.dataset.unique()):
        lines += [f"## {md_cell(dataset)}", ""]
        lines += architecture_rows(arch[arch.dataset == dataset] if not arch.empty else arch)
        sub = g[g.dataset == dataset] if not g.empty else g
        valid, invalid = (
            sub[sub.valid] if not sub.empty else sub,
            sub[~sub.valid] if not sub.empty else sub,
        )
        if len(valid):
            lines += ["Every cell, ranked by its worst-case gap:", "", head, rule]
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
        table = indicator_table(df[df.dataset == dataset])
        lines += indicator_markdown(table)
        if best_indicator(table) is not None:
            lines += [f"![best indicator's ROC]({roc_name(dataset)})", ""]
    return "\n".join(lines)


def roc_name(dataset: str) -> str:
    """The file of a dataset's best-indicator ROC figure."""
    return f"indicator_roc_{dataset}.png"


def architecture_rows(arch: pd.DataFrame) -> list[str]:
    """The architecture view of one dataset (:func:`bench.groups.architecture_view`)."""
    if arch.empty:
        return []
    lines = [
        f"**Architectures** at the common cell ({md_cell(arch.iloc[0].cell)}: the bit options and "
        "bits per layer the most architectures share), smallest worst-case gap first; at 0/n attack "
        "success no seed's search found an attack, which is no evidence of robustness:",
        "",
        "| " + " | ".join(h for _, h in ARCH_COLUMNS) + " | valid |",
        "|" + "---|" * (len(ARCH_COLUMNS) + 1),
    ]
    for _, row in arch.iterrows():
        verdict = "yes" if row.valid else f"no: {md_cell(row.reasons)}"
        cells = [md_cell(fmt(row, k, 1)) for k, _ in ARCH_COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {verdict} |")
    return [*lines, ""]


def render_csv(df: pd.DataFrame) -> str:
    return df.drop(columns=["root", "indicators"]).to_csv(index=False, float_format="%.4f")


def render_pngs(df: pd.DataFrame, out: Path) -> list[Path]:
    g = groups(df)
    paths = []
    # wide enough for every cell's label (a board of dozens of cells), up to 30 inches
    fig, ax = plt.subplots(figsize=(min(30.0, max(7.5, 0.3 * len(g))), 4.5))
    if not g.empty:
        labels = [
            f"{a} {o}-{b} ({s})" for a, o, b, s in zip(g.architecture, g.options, g.budget, g.suite)
        ]
        x = list(range(len(g)))
        hatch = ["" if v else "//" for v in g.valid]
        worst = [v if v is not None and v == v else 0 for v in g.gap_worst]
        bars = ax.bar([i - 0.2 for i in x], worst, 0.4, color="tab:red", label="worst-case gap")
        hid = [v if v is not None and v == v else 0 for v in g.hidden_gap_worst]
        bars2 = ax.bar([i + 0.2 for i in x], hid, 0.4, color="tab:purple", label="worst hidden gap")
        for b, h in zip([*bars, *bars2], hatch * 2):
            b.set_hatch(h)
        ci = [v if v is not None and v == v else 0 for v in g.gap_ci]
        kw = {"fmt": "o", "color": "black", "ms": 3, "label": "mean gap, 95% interval"}
        ax.errorbar([i - 0.2 for i in x], g.gap, yerr=ci, **kw)
        ax.set_xticks(x, labels, fontsize=6, rotation=90)
        ax.legend(fontsize=8, title="hatched: no valid seed", title_fontsize=7)
        # a gap lies in -100..100 points; a 3-seed interval can reach past it (t = 4.3), and
        # would squash every bar: the axis stops at the possible range and says so
        ax.set_ylim(-105, 105)
        ax.set_xlim(-0.8, len(g) - 0.2)
        ax.text(1, 1.01, "intervals clipped at +-100", transform=ax.transAxes, ha="right")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("points")
    ax.set_title("Worst-case gap and hidden gap per cell (bit options-budget, suite)")
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
    for dataset in sorted(df.dataset.unique()):
        sub = df[df.dataset == dataset]
        roc = render_roc(sub, indicator_table(sub), out / roc_name(dataset))
        paths += [roc] if roc is not None else []
    arch = architecture_view(g) if not g.empty else g
    for dataset in sorted(arch.dataset.unique()) if not arch.empty else []:
        path = out / f"architectures_{dataset}.png"
        paths.append(render_architectures(df, arch[arch.dataset == dataset], path))
    return paths


def render_architectures(df: pd.DataFrame, arch: pd.DataFrame, path: Path) -> Path:
    """Architectures at the common cell on one axis, each seed's gap a dot (filled: valid), the
    worst case over the valid seeds marked (the architecture view's order)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(arch) + 2), 3.8))
    for i, (_, a) in enumerate(arch.iterrows()):
        same = (df.error == "") & (df.suite == a.suite) & (df.suite_hash == a.suite_hash)
        same &= (df.architecture == a.architecture) & (df.options == a.options)
        seeds = df[same & (df.budget == a.budget)]
        for _, s in seeds.iterrows():
            face = "tab:red" if s.valid else "none"
            ax.scatter([i], [s.gap], s=28, facecolors=face, edgecolors="tab:red", zorder=3)
        if a.gap_worst is not None and a.gap_worst == a.gap_worst:
            ax.scatter([i], [a.gap_worst], marker="_", s=500, color="black", zorder=4)
    ax.scatter([], [], s=28, color="tab:red", label="seed (valid)")
    ax.scatter([], [], s=28, facecolors="none", edgecolors="tab:red", label="seed (invalid)")
    ax.scatter([], [], marker="_", s=200, color="black", label="worst case (valid seeds)")
    ax.set_xticks(range(len(arch)), list(arch.architecture), rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("gap (points)")
    cell = arch.iloc[0].cell if len(arch) else ""
    ax.set_title(f"Gap per architecture at {cell}", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def render_roc(df: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path | None:
    """The best indicator's ROC curve over the valid pairs (None: fewer than two pairs)."""
    import matplotlib
    from sklearn.metrics import roc_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .views import _save

    name = best_indicator(table)
    if name is None:
        return None
    sub = pairs(df, "valid")
    d = [v["f_D"][name] for v in sub.indicators]
    r = [v["f_R"][name] for v in sub.indicators]
    fpr, tpr, _ = roc_curve([1] * len(d) + [0] * len(r), d + r)
    auc = float(table.set_index("indicator").loc[name, "auc_valid"])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(fpr, tpr, "o-", color="tab:red", ms=3, label=f"{name} (AUC {auc:.2f}, {len(d)} pairs)")
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=0.8, label="chance")
    ax.set_xlabel("f_R flagged (false positive rate)")
    ax.set_ylabel("f_D flagged (true positive rate)")
    ax.set_title("Best full-precision indicator", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def link(root: str, rel: str | None, out: Path) -> str | None:
    """A record's file (``rel`` inside its board ``root``) as a link from the folder ``out``."""
    if not isinstance(rel, str) or not rel:
        return None
    target = Path(root or out) / rel
    return os.path.relpath(target, out).replace(os.sep, "/")
