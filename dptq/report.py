"""Figures (PNG, matplotlib Agg) and Markdown tables for the analyses of :mod:`dptq.analyses`.

Plotting only: each function draws one figure from a DataFrame (or tensors) and writes it whole
(:func:`dptq.io.write_figure`: a palette PNG), with no metadata that changes between runs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from . import tables  # noqa: E402
from .io import write_figure  # noqa: E402
from .sweeps import HIST_BIN, HIST_RANGE  # noqa: E402

COLORS = {"f_R": "tab:blue", "f_D": "tab:red", "f_N": "tab:gray"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_layer_sweep(sweep: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Small multiples: one panel per (network, split), before/after/single curves."""
    nets = list(dict.fromkeys(sweep["network"])) if "network" in sweep else [""]
    splits = list(dict.fromkeys(sweep["split"]))
    fig, axes = plt.subplots(
        len(nets),
        len(splits),
        figsize=(5 * len(splits), 3.2 * len(nets)),
        squeeze=False,
        sharey=True,
    )
    for i, net in enumerate(nets):
        for j, split in enumerate(splits):
            ax = axes[i][j]
            sub = sweep[(sweep.split == split) & ((sweep.network == net) if net else True)]
            for scheme, style in (("before", "-o"), ("after", "-s"), ("single", "--^")):
                g = sub[sub.scheme == scheme].sort_values("layer")
                ax.plot(g.layer, g.accuracy, style, ms=3, label=scheme)
            ax.set_title(f"{net} {split}".strip())
            ax.set_xlabel("layer l (quantized: before = < l, after = >= l, single = l)")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 101)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title or "Layer sweep: accuracy when only some layers are quantized")
    return _save(fig, path)


def plot_histograms(
    hists: dict[str, torch.Tensor],
    sparsity: dict[str, pd.DataFrame],
    path: Path,
    layers: list[int] | None = None,
) -> Path:
    """Per network (rows) and layer (columns): the FP network's activations, the quantizer's
    input inside the quantized pass and the quantized activations, with sparsity."""
    nets = list(hists)
    num_layers = next(iter(hists.values())).shape[0]
    layers = layers or sorted(
        {0, num_layers // 4, num_layers // 2, (3 * num_layers) // 4, num_layers - 1}
    )
    edges = torch.arange(-HIST_RANGE, HIST_RANGE, HIST_BIN)
    centres = torch.cat([edges[: len(edges) // 2], edges[len(edges) // 2 + 1 :]]) + HIST_BIN / 2
    fig, axes = plt.subplots(
        len(nets), len(layers), figsize=(3.2 * len(layers), 2.8 * len(nets)), squeeze=False
    )
    for i, net in enumerate(nets):
        views = (
            ("FP network", "tab:gray", "-"),
            ("quantizer input", "tab:olive", ":"),
            ("quantized", COLORS.get(net, "tab:red"), "-"),
        )
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            for k, (lab, c, style) in enumerate(views):
                ax.plot(centres, hists[net][layer, k], style, color=c, lw=0.8, label=lab)
            sp = sparsity[net].iloc[layer]
            ax.set_title(f"{net} layer {layer + 1}", fontsize=9)
            ax.set_xlabel(
                f"activation value\nsparsity FP {sp.sparsity_fp:.1f}% -> Q {sp.sparsity_q:.1f}%",
                fontsize=8,
            )
            ax.set_ylabel("share of non-zero values", fontsize=8)
            ax.set_xlim(-1, 4)
            ax.legend(fontsize=7)
    fig.suptitle("Activation histograms (zero bin removed): FP network, quantizer input, quantized")
    return _save(fig, path)


def plot_corruptions(frame: pd.DataFrame, path: Path) -> Path:
    """Small multiples: one panel per corruption, accuracy vs degree for each model."""
    names = list(dict.fromkeys(frame.corruption))
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        sub = frame[frame.corruption == name]
        for model, g in sub.groupby("model", sort=False):
            net = model.split()[0]
            ax.plot(
                g.degree,
                g.accuracy,
                "-" if model.endswith("FP") else "--",
                marker="o",
                ms=3,
                color=COLORS.get(net),
                label=model,
            )
        ax.set_title(name)
        ax.set_xlabel("degree (0 = clean)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Accuracy under corruptions, FP (solid) and quantized (dashed)")
    return _save(fig, path)


def plot_trigger(curves: pd.DataFrame, path: Path) -> Path:
    """Accuracy as the bits move from each pair's own allocation: toward the uniform one (left),
    by random noise (right), against the mean number of bits moved."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, family in zip(axes, ("toward uniform", "random distance")):
        for net, g in curves[curves.family == family].groupby("network", sort=True):
            g = g.sort_values("bits_moved")
            ax.plot(g.bits_moved, g.accuracy, "-o", ms=3, color=COLORS.get(net), label=net)
        ax.set_title(f"{family} from the own allocation")
        ax.set_xlabel("bits moved per example (mean)")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("How narrow is the trigger? (budget held exactly)")
    return _save(fig, path)


def plot_cross_policy(matrix: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: each network under each policy."""
    ax = matrix.T.plot.bar(figsize=(6.5, 3.6), rot=0)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("network")
    ax.set_ylim(0, 105)
    ax.set_title("Cross-policy accuracy (budget held by every policy)")
    ax.legend(title="policy", fontsize=8)
    return _save(ax.figure, path)


def _layer_figure(num_layers: int):
    """A figure with one axis over the quantized layers, wide enough for their count."""
    return plt.subplots(figsize=(max(6.0, 0.22 * num_layers + 2), 3.4))


def _finish_layers(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """Integer layer ticks, labels, legend and grid of a per-layer figure; written."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("quantized layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_bits_per_layer(mean: list[float], uniform: list[float], path: Path, title: str) -> Path:
    """Mean bits per layer under the adversarial policy against the uniform allocation."""
    layers = list(range(1, len(mean) + 1))
    fig, ax = _layer_figure(len(layers))
    ax.bar(layers, mean, color="tab:red", alpha=0.75, label="adversarial policy (mean)")
    ax.step(layers, uniform, where="mid", color="black", lw=1.2, label="uniform allocation")
    return _finish_layers(fig, ax, "bits", title, path)


def plot_policy_bits(table: pd.DataFrame, lo: int, hi: int, path: Path) -> Path:
    """pi_D's and pi_R's bits per layer (mean and sd over the examples, layers in order) beside
    the uniform allocation (``table``: the ``allocations`` analysis' columns)."""
    layers = list(table.layer)
    fig, ax = _layer_figure(len(layers))
    for net, shift in (("f_R", -0.15), ("f_D", 0.15)):
        pol = f"pi_{net[-1]}"
        x = [v + shift for v in layers]
        ax.errorbar(
            x,
            table[f"{pol} mean"],
            yerr=table[f"{pol} sd"],
            fmt="o",
            ms=3,
            capsize=2,
            color=COLORS[net],
            label=f"{pol} (mean ± sd)",
        )
    ax.step(layers, table.uniform, where="mid", color="black", lw=1.0, label="uniform allocation")
    ax.set_ylim(lo - 0.5, hi + 0.5)
    return _finish_layers(fig, ax, "bits", "Bits per layer over the test split", path)


def plot_grouped(frame: pd.DataFrame, path: Path, title: str, ylabel: str) -> Path:
    """Grouped bars: one group per row of ``frame``, one bar per column (transfer, defenses)."""
    ax = frame.plot.bar(figsize=(max(7.5, 0.9 * len(frame) + 3), 3.8), rot=20)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return _save(ax.figure, path)


def contact_sheet(
    images: dict[int, torch.Tensor],
    indices: list[int],
    path: Path,
    labels: dict[int, int] | None = None,
    max_images: int = 64,
) -> Path:
    """A grid of the transitory images (uint8 ``[3, H, W]`` by test index), titled with the index.

    Only the first ``max_images`` of ``indices`` are drawn (``images`` needs only those).
    """
    shown = indices[:max_images]
    cols = 8
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        ax.set_title(f"#{i}" + (f" y={labels[i]}" if labels is not None else ""), fontsize=7)
    fig.suptitle(f"Transitory points ({len(indices)}; first {len(shown)} shown)", fontsize=9)
    return _save(fig, path)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A DataFrame as a GitHub Markdown table (:func:`dptq.tables.markdown_table`): the index
    first unless it is a RangeIndex, floats as ``floatfmt``, the rest as ``str()``."""
    cols = [str(c) for c in frame.columns]
    idx = frame.index.name or ""
    show_index = not isinstance(frame.index, pd.RangeIndex)
    head = ([idx] if show_index else []) + cols
    rows = [
        ([str(key)] if show_index else [])
        + [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row.tolist()]
        for key, row in frame.iterrows()
    ]
    return "\n".join(tables.markdown_table(head, rows))


def plot_layer_outliers(table: pd.DataFrame, path: Path) -> Path:
    """Each network's max abs input / std per quantized layer (log scale, layers in order): where a
    quantizer's range is set by a few outliers (``table``: the ``fp_indicators`` analysis' rows)."""
    layers = list(table.layer)
    fig, ax = _layer_figure(len(layers))
    for net in ("f_N", "f_R", "f_D"):
        ax.plot(layers, table[f"{net} outlier"], "o-", ms=3, lw=1, color=COLORS[net], label=net)
    ax.set_yscale("log")
    title = "Activation outliers at full precision (clean test images)"
    return _finish_layers(fig, ax, "max |input| / std", title, path)
