"""Fig. 2 and Fig. 3 of the paper: accuracy when only some layers are quantized (layer sweeps) and
the activation histograms with their sparsity measure."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader

from .data import DatasetPair, normalize
from .evaluate import BitsFn, accuracy
from .models import QuantizableModel
from .splits import subset


def sweep_masks(num_layers: int, layer: int) -> dict[str, torch.Tensor]:
    """Masks at layer ``layer`` (0-based): before = layers < l, after = layers >= l, single = l.

    "before" and "after" partition the layers (the paper calls "after" the inverse of "before").
    """
    idx = torch.arange(num_layers)
    return {"before": idx < layer, "after": idx >= layer, "single": idx == layer}


def sweep_layers(num_layers: int, max_layers: int | None) -> list[int]:
    """The layers a sweep visits (0-based): all, or ``max_layers`` evenly spaced with the first
    and the last."""
    if max_layers is None or max_layers >= num_layers:
        return list(range(num_layers))
    picked = torch.linspace(0, num_layers - 1, max(max_layers, 2)).round().long()
    return sorted(set(picked.tolist()))


def layer_sweep(
    net: QuantizableModel,
    bits_fn: BitsFn,
    data: DatasetPair,
    device="cpu",
    splits: Sequence[str] = ("train", "test"),
    max_examples: int | None = None,
    sample_seed: int = 0,
    max_layers: int | None = None,
) -> pd.DataFrame:
    """Fig. 2: accuracy when only some layers are quantized (with the policy's own bits).

    ``max_examples`` bounds each split by a seeded, stratified random subset; ``max_layers``
    sweeps only that many layers (:func:`sweep_layers`). Columns: split, layer (1-based), scheme
    (before/after/single), accuracy (percent).
    """
    rows = []
    for split in splits:
        ds = subset(getattr(data, split), max_examples, sample_seed)
        for layer in sweep_layers(net.num_layers, max_layers):
            for scheme, mask in sweep_masks(net.num_layers, layer).items():
                acc = accuracy(net, data, device, bits_fn, dataset=ds, mask=mask)
                rows.append({"split": split, "layer": layer + 1, "scheme": scheme, "accuracy": acc})
    return pd.DataFrame(rows)


def inflection_layers(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per split and scheme (before/after), the layer where accuracy changes most from its neighbour."""
    rows = []
    for (split, scheme), g in sweep[sweep.scheme != "single"].groupby(["split", "scheme"]):
        g = g.sort_values("layer")
        change = g.accuracy.diff().abs()
        if change.notna().any():
            i = change.idxmax()
            rows.append(
                {
                    "split": split,
                    "scheme": scheme,
                    "layer": int(g.loc[i, "layer"]),
                    "change": float(change.loc[i]),
                }
            )
    return pd.DataFrame(rows)


HIST_RANGE, HIST_BIN = 8.0, 0.01
HIST_VIEWS = ("fp", "q_input", "q")  # rows of activation_histograms


@torch.no_grad()
def activation_histograms(
    net: QuantizableModel,
    bits_fn: BitsFn,
    data: DatasetPair,
    device="cpu",
    max_examples: int | None = 512,
    sample_seed: int = 0,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Fig. 3: per layer, histograms of activation values and the sparsity measure.

    Three views of each quantized layer's input (``HIST_VIEWS``): ``fp``, the full-precision
    network's own activation (a pass with nothing quantized); ``q_input``, what the quantizer
    receives inside the quantized pass (already carrying the error of the layers before it);
    ``q``, the quantized activation. Bins of width 0.01 over [-8, 8] (1600 bins); the bin holding 0,
    [0, 0.01), is removed and the rest renormalised to sum to 1. The **sparsity measure** is the
    share (percent) of all values in that zero bin. On a seeded, stratified subset of the test
    split of at most ``max_examples``. Returns ``hist [L, 3, 1599]`` and a DataFrame with layer,
    sparsity_fp, sparsity_q_input, sparsity_q. (Not an accuracy: its own loop over the
    activations, not :func:`dptq.evaluate.predict`.)
    """
    n_bins = int(round(2 * HIST_RANGE / HIST_BIN))
    zero_bin = n_bins // 2
    counts = torch.zeros(net.num_layers, len(HIST_VIEWS), n_bins, dtype=torch.float64)
    totals = torch.zeros(net.num_layers, len(HIST_VIEWS), dtype=torch.float64)
    ds = subset(data.test, max_examples, sample_seed)
    net.eval()
    for images, _ in DataLoader(ds, batch_size=128, shuffle=False, generator=torch.Generator()):
        x = normalize(images.to(device), data.mean, data.std)
        fp: dict = {}
        q: dict = {}
        net(x, capture=fp)  # nothing quantized: each layer's input as the FP network computes it
        net(x, bits_fn(x), capture=q)
        for layer in q:
            for k, t in enumerate((fp[layer][0], q[layer][0], q[layer][1])):
                counts[layer, k] += torch.histc(
                    t.float().cpu(), n_bins, -HIST_RANGE, HIST_RANGE
                ).double()
                totals[layer, k] += t.numel()
    sparsity = 100 * counts[:, :, zero_bin] / totals
    rest = torch.cat([counts[:, :, :zero_bin], counts[:, :, zero_bin + 1 :]], dim=2)
    hist = rest / rest.sum(dim=2, keepdim=True).clamp_min(1)
    frame = pd.DataFrame(
        {"layer": range(1, net.num_layers + 1)}
        | {f"sparsity_{v}": sparsity[:, k].tolist() for k, v in enumerate(HIST_VIEWS)}
    )
    return hist.float(), frame
