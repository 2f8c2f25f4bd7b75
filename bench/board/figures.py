"""The board's figures, as pure functions of its frame (:func:`bench.board.views.frame`): the gap and
hidden gap of every cell (``gap.png``), FP accuracy against the gap (``fp_vs_gap.png``), the
closed division's architectures at their cell (``architectures_<dataset>.png``) and the best
full-precision indicator's ROC curve (``indicator_roc_<dataset>.png``). 256-colour palette PNGs
(:func:`dptq.io.write_figure`); the same records give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dptq.io import write_figure  # noqa: E402

from ..names import figure_name, roc_name  # noqa: E402
from .groups import architecture_view  # noqa: E402
from .indicators import best_indicator, indicator_table, pairs  # noqa: E402
from .views import groups, indicator_pairs  # noqa: E402


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
        sub, _ = indicator_pairs(df[df.dataset == dataset])
        roc = render_roc(sub, indicator_table(sub), out / roc_name(dataset))
        paths += [roc] if roc is not None else []
    arch = architecture_view(g) if not g.empty else g
    for dataset in sorted(arch.dataset.unique()) if not arch.empty else []:
        path = out / figure_name(dataset)
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
    from sklearn.metrics import roc_curve

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
