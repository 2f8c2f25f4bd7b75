"""The quantizer-transfer matrix: trained networks under their own bits with other activation
quantizers (not in the paper; its Sect. 4.2 suggests percentile scaling as a remedy).

A pair is trained against one quantizer (the suite's ``act``: per-example asymmetric min-max by
default). A deployer's runtime may use another. Each scheme below changes only how a layer's input
is scaled; the bit-widths stay those of the network's own policy, so a change of accuracy is the
quantizer's doing. ``static`` is ordinary static PTQ (ranges calibrated once on training images,
the same for every example): the non-dynamic baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader

from .data import DatasetPair, normalize
from .evaluate import count
from .models import ActQuantConfig, QuantizableModel, calibrate_static, quantizer
from .splits import subset

SCHEMES: dict[str, str] = {
    "minmax": "per-example min-max, asymmetric (the paper's and the default)",
    "absmax_sym": "per-example abs-max, symmetric (Eq. 1)",
    "pct99.9": "per-example percentile 99.9 / 0.1, asymmetric (outliers clamped)",
    "pct99.99": "per-example percentile 99.99 / 0.01, asymmetric",
    "per_channel": "per-example and per-channel min-max, asymmetric",
    "static": "static min-max ranges calibrated on training images (static PTQ)",
}
DYNAMIC = {
    "minmax": ActQuantConfig(),
    "absmax_sym": ActQuantConfig(symmetric=True),
    "pct99.9": ActQuantConfig(scale_mode="percentile", percentile=99.9),
    "pct99.99": ActQuantConfig(scale_mode="percentile", percentile=99.99),
    "per_channel": ActQuantConfig(per_channel=True),
}


def calibration_batches(
    data: DatasetPair, device, examples: int = 256, seed: int = 0, batch_size: int = 64
):
    """Normalised batches of a seeded, stratified subset of the training split."""
    loader = DataLoader(subset(data.train, examples, seed), batch_size=batch_size, shuffle=False)
    for images, _ in loader:
        yield normalize(images.to(device), data.mean, data.std)


def scheme_quantizer(
    name: str,
    net: QuantizableModel,
    data: DatasetPair,
    device,
    calib_examples: int = 256,
    seed: int = 0,
):
    """The activation quantizer of scheme ``name`` for ``net`` (``static`` calibrates on it)."""
    if name == "static":
        return calibrate_static(net, calibration_batches(data, device, calib_examples, seed))
    if name not in DYNAMIC:
        raise ValueError(f"unknown quantizer scheme {name!r}; known: {list(SCHEMES)}")
    return DYNAMIC[name]


def transfer_matrix(
    nets: dict[str, tuple[QuantizableModel, Callable]],
    data: DatasetPair,
    device="cpu",
    schemes=tuple(SCHEMES),
    calib_examples: int = 256,
    seed: int = 0,
    split: str = "test",
) -> pd.DataFrame:
    """Long table: network, scheme, FP and quantized (own bits) correct counts of ``total``, and
    the same as accuracies and a drop (percent, points).

    ``nets``: ``{name: (network, its own policy's bits_fn)}``.
    """
    rows = []
    for name, (net, bits_fn) in nets.items():
        fp, n = count(net, data, device, split=split)
        for scheme in schemes:
            q = scheme_quantizer(scheme, net, data, device, calib_examples, seed)
            with quantizer(net, q), torch.no_grad():
                c = count(net, data, device, bits_fn, split=split)[0]
            rows.append(
                {"network": name, "scheme": scheme, "fp_correct": fp, "q_correct": c, "total": n}
                | {"fp_acc": 100 * fp / n, "q_acc": 100 * c / n, "drop": 100 * (fp - c) / n}
            )
    return pd.DataFrame(rows)


def gap_by_scheme(frame: pd.DataFrame) -> pd.DataFrame:
    """Per scheme: f_R's and f_D's drop and the gap (f_D's drop - f_R's), plus f_N's under pi_A
    when the audit's network is in ``frame``."""
    wide = frame.pivot(index="scheme", columns="network", values="drop")
    wide = wide.loc[[s for s in SCHEMES if s in wide.index]]
    out = pd.DataFrame(index=wide.index)
    order = [k for k in ("f_R", "f_D", "f_N") if k in wide.columns]
    for k in order + [k for k in wide.columns if k not in order]:
        out[f"{k} drop"] = wide[k]
    if {"f_R", "f_D"} <= set(wide.columns):
        out["gap"] = wide["f_D"] - wide["f_R"]
    return out
