"""Figures (PNG, matplotlib Agg) and Markdown tables for one trained pair set.

:func:`write_report` runs every analysis of :mod:`dptq.metrics` on a pipeline folder's models and
writes ``report.md`` plus one PNG per figure type into a folder.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from . import metrics  # noqa: E402
from .metrics import HIST_BIN, HIST_RANGE  # noqa: E402

COLORS = {"f_R": "tab:blue", "f_D": "tab:red", "f_N": "tab:gray"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    """Per network (rows) and layer (columns): FP vs quantized activation histograms + sparsity."""
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
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            for k, (lab, c) in enumerate(
                (("FP", "tab:gray"), ("quantized", COLORS.get(net, "tab:red")))
            ):
                ax.plot(centres, hists[net][layer, k], color=c, lw=0.8, label=lab)
            sp = sparsity[net].iloc[layer]
            ax.set_title(f"{net} layer {layer + 1}", fontsize=9)
            ax.set_xlabel(
                f"activation value\nsparsity FP {sp.sparsity_fp:.1f}% -> Q {sp.sparsity_q:.1f}%",
                fontsize=8,
            )
            ax.set_ylabel("share of non-zero values", fontsize=8)
            ax.set_xlim(-1, 4)
            ax.legend(fontsize=7)
    fig.suptitle("Activation histograms (zero bin removed), FP vs quantized")
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


def plot_cross_policy(matrix: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: each network under each policy."""
    ax = matrix.T.plot.bar(figsize=(6.5, 3.6), rot=0)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("network")
    ax.set_ylim(0, 105)
    ax.set_title("Cross-policy accuracy (budget held by every policy)")
    ax.legend(title="policy", fontsize=8)
    return _save(ax.figure, path)


def contact_sheet(
    images: torch.Tensor, indices: list[int], path: Path, labels=None, max_images: int = 64
) -> Path:
    """A grid of the transitory images (uint8 ``[N, 3, H, W]``), titled with their test index."""
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
    """A DataFrame as a GitHub Markdown table (no extra dependency)."""
    cols = [str(c) for c in frame.columns]
    idx = frame.index.name or ""
    show_index = not isinstance(frame.index, pd.RangeIndex)
    head = ([idx] if show_index else []) + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, row in frame.iterrows():
        cells = [str(key)] if show_index else []
        cells += [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_pair_report(
    out: Path,
    nets: dict,
    bits: dict,
    robust: dict,
    detrimental: dict,
    f_n_acc: float,
    cross: dict,
    data,
    title: str,
    analyses=("layer_sweep", "histograms", "corruptions"),
    device: str = "cpu",
    max_examples: int | None = 512,
    seed: int = 0,
) -> dict:
    """Every table and figure for one pair set; returns the numbers the leaderboard keeps.

    ``nets``: {"f_N", "f_R", "f_D"} networks; ``bits``: {"f_R", "f_D"} bit functions of their own
    policies; ``robust``/``detrimental``: :func:`dptq.train.evaluate_pair` results; ``cross``: the
    cross-policy table.
    """
    out.mkdir(parents=True, exist_ok=True)
    r, d = robust, detrimental
    scores = metrics.pair_scores(r, d, f_n_acc)
    trans = metrics.transitory_points(r["fp_correct"], d["fp_correct"], d["q_correct"])
    test_imgs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    test_labels = [int(data.test[i][1]) for i in range(len(data.test))]
    contact_sheet(test_imgs, trans["indices"], out / "transitory.png", test_labels)
    matrix = metrics.cross_policy_matrix(cross)
    plot_cross_policy(matrix, out / "cross_policy.png")
    lines = [
        f"# {title}",
        "",
        f"Budget {r['budget']} bits.",
        "",
        "## Table 1: pair scores (accuracy %, delta = quantized - FP)",
        "",
        markdown_table(scores),
        "",
        "## Table 2: transitory points",
        "",
        f"{trans['count']} test examples: {trans['rate_of_test']:.2f}% of the test set, "
        f"{trans['rate_of_both_correct']:.2f}% of the examples both FP models classify correctly.",
        "",
        "![transitory](transitory.png)",
        "",
        "## Table 3: cross-policy accuracy (%)",
        "",
        markdown_table(matrix),
        "",
        "![cross-policy](cross_policy.png)",
        "",
    ]
    kept = {"transitory": trans, "corruption_summary": None}
    if "layer_sweep" in analyses:
        sweeps = [
            metrics.layer_sweep(nets[k], bits[k], data, device, max_examples=max_examples).assign(
                network=k
            )
            for k in ("f_R", "f_D")
        ]
        sweep = pd.concat(sweeps, ignore_index=True)
        sweep.to_csv(out / "layer_sweep.csv", index=False)
        plot_layer_sweep(sweep, out / "layer_sweep.png")
        inflect = pd.concat(
            [metrics.inflection_layers(s).assign(network=s.network.iloc[0]) for s in sweeps]
        )
        lines += [
            "## Fig. 2: layer sweeps",
            "",
            "Inflection layers (largest change between neighbouring layers):",
            "",
            markdown_table(inflect.reset_index(drop=True)),
            "",
            "![layer sweep](layer_sweep.png)",
            "",
        ]
    if "histograms" in analyses:
        hists, sparsity = {}, {}
        for k in ("f_R", "f_D"):
            hists[k], sparsity[k] = metrics.activation_histograms(nets[k], bits[k], data, device)
        plot_histograms(hists, sparsity, out / "histograms.png")
        sp = (
            sparsity["f_R"]
            .merge(sparsity["f_D"], on="layer", suffixes=(" f_R", " f_D"))
            .set_index("layer")
        )
        sp.to_csv(out / "sparsity.csv")
        lines += [
            "## Fig. 3: activation sparsity (% of values in the zero bin)",
            "",
            markdown_table(sp),
            "",
            "![histograms](histograms.png)",
            "",
        ]
    if "corruptions" in analyses:
        models = {}
        for k in ("f_R", "f_D"):
            models[f"{k} FP"] = (nets[k], None)
            models[f"{k} quantized"] = (nets[k], bits[k])
        corr = metrics.corruption_robustness(
            models, data, device=device, seed=seed, max_examples=max_examples
        )
        corr.to_csv(out / "corruptions.csv", index=False)
        plot_corruptions(corr, out / "corruptions.png")
        summary = metrics.corruption_summary(corr)
        kept["corruption_summary"] = summary["mean corrupted acc"].to_dict()
        lines += [
            "## Fig. 4: corruption robustness",
            "",
            markdown_table(summary),
            "",
            "![corruptions](corruptions.png)",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines))
    return kept


def write_report(
    run_dir: str | Path,
    cfg,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    max_examples: int | None = 512,
    seed: int = 0,
) -> Path:
    """Every table and figure for the pairs of a finished pipeline folder; returns ``report.md``.

    ``cfg`` is the run's :class:`dptq.pipeline.PipelineConfig`. Layer sweeps and corruptions are
    evaluated on at most ``max_examples`` examples per split (None: all).
    """
    import json

    from .data import load_dataset
    from .engine import load_checkpoint
    from .models import QuantizableModel, create_model
    from .pipeline import load_pair
    from .train import own_policy_bits

    run, out = Path(run_dir), Path(out_dir or Path(run_dir) / "report")
    res = json.loads((run / "results.json").read_text())
    data = load_dataset(cfg.dataset, **cfg.dataset_options)
    f_n = QuantizableModel(
        create_model(cfg.student, data.num_classes), act=cfg.act, weight_bits=cfg.weight_bits
    )
    f_n.model.load_state_dict(load_checkpoint(run / "kd.pt", "kd")["modules"]["student"])
    nets, bits = {"f_N": f_n.eval()}, {}
    for mode in ("robust", "detrimental"):
        f, pi = load_pair(run, cfg, mode, data.num_classes)
        key = "f_R" if mode == "robust" else "f_D"
        nets[key] = f
        bits[key] = own_policy_bits(pi, cfg.pair.options, res[mode]["budget"])
    title = f"DPTQ pair report: {cfg.student} on {cfg.dataset}, options {list(cfg.pair.options)}"
    write_pair_report(
        out,
        nets,
        bits,
        res["robust"],
        res["detrimental"],
        res["kd"]["test_acc"],
        res["cross_policy"],
        data,
        title,
        device=device,
        max_examples=max_examples,
        seed=seed,
    )
    return out / "report.md"
