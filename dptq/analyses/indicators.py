"""``fp_indicators``: full-precision indicators of f_N, f_R and f_D (:mod:`dptq.indicators`), the
numbers a deployer could compute without quantizing; the board scores how well each separates
f_D from f_R over the trained pairs (:mod:`bench.indicators`).

Torch-free at import (:mod:`dptq.analyses.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import Analysis, TrainedCell, register_analysis

NETS = ("f_N", "f_R", "f_D")
BATCH = 64  # images per forward (the statistics stream over batches)


@dataclass(frozen=True)
class IndicatorFields:
    """Every indicator of :data:`dptq.indicators.INDICATORS` per network (``values[net][name]``),
    on ``examples`` clean test examples (the analyses' subset)."""

    examples: int
    values: dict[str, dict[str, float]]


def model_indicators(nets: dict, data, max_examples, seed: int, device) -> tuple[int, dict, dict]:
    """:func:`dptq.indicators.fp_indicators` of each :class:`~dptq.models.QuantizableModel` of
    ``nets`` on the same seeded subset of ``data``'s test split: (examples, values by net,
    per-layer statistics by net). What the analysis and ``bench audit`` both report."""
    import torch

    from ..data import normalize
    from ..indicators import fp_indicators as compute
    from ..splits import subset

    ds = subset(data.test, max_examples, seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH)
    batches = [normalize(images.to(device), data.mean, data.std) for images, _ in loader]
    values, layers = {}, {}
    for name, q in nets.items():
        values[name], layers[name] = compute(q.model, q.layer_names, batches)
    return len(ds), values, layers


@register_analysis("fp_indicators", fields=IndicatorFields)
def fp_indicators(cell: TrainedCell, out: Path) -> Analysis:
    """Full-precision indicators of each network (no policy, no quantizer): could a deployer tell?"""
    import pandas as pd

    from .. import report
    from ..indicators import INDICATORS

    nets = {n: cell.nets[n] for n in NETS}
    n, values, layers = model_indicators(
        nets, cell.data, cell.max_examples, cell.sample_seed, cell.device
    )
    table = pd.DataFrame(
        {"indicator": list(INDICATORS), **{n: [values[n][k] for k in INDICATORS] for n in NETS}}
    )
    per_layer = pd.DataFrame(
        {
            "layer": range(1, len(layers["f_D"]) + 1),
            "name": [s.name for s in layers["f_D"]],
            **{f"{n} outlier": [s.outlier for s in layers[n]] for n in NETS},
        }
    )
    report.plot_layer_outliers(per_layer, out / "layer_outliers.png")
    worst = per_layer.loc[per_layer["f_D outlier"].idxmax()]
    text = (
        f"On {n} clean test images at full precision (higher reads as more suspicious). "
        f"f_D's most outlying layer input: {worst['name']} (layer {int(worst.layer)}, max/std "
        f"{worst['f_D outlier']:.1f}; f_R {worst['f_R outlier']:.1f}, f_N {worst['f_N outlier']:.1f})."
        " Over all pairs, how well each indicator separates f_D from f_R is on the board."
    )
    return Analysis(
        "Full-precision indicators",
        table,
        text,
        ["layer_outliers.png"],
        IndicatorFields(n, values),
    )
