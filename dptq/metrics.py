"""The paper's tables and figures as functions returning pandas DataFrames (Sect. 4).

| function | paper |
|---|---|
| :func:`pair_scores` | Table 1: FP accuracy, quantized change, catastrophic-failure gap, FP match |
| :func:`transitory_points` | Table 2: points both FP models get right that the quantized f_D gets wrong |
| :func:`cross_policy_matrix` | Table 3: every network under every policy |
| :func:`layer_sweep` | Fig. 2: accuracy quantizing only layers before / after / at l |
| :func:`activation_histograms` | Fig. 3: activation histograms and the sparsity measure |
| :func:`corruption_robustness` | Fig. 4: accuracy under corruptions by degree |

Rendering lives in :mod:`dptq.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .corruptions import CORRUPTIONS, DEGREES, corrupt
from .data import DatasetPair, normalize
from .models import QuantizableModel

BitsFn = Callable[[torch.Tensor], torch.Tensor]


def drop(result: dict) -> float:
    """Quantized drop of one pair (points): FP accuracy minus accuracy under its own policy."""
    return result["fp_acc"] - result["q_acc"]


def gap(robust: dict, detrimental: dict) -> float:
    """The catastrophic-failure gap (Table 1): f_D's quantized drop minus f_R's (points)."""
    return drop(detrimental) - drop(robust)


def fp_match(robust: dict, detrimental: dict) -> float:
    """|FP f_R - FP f_D| (points): a gap only says something when this is small."""
    return abs(robust["fp_acc"] - detrimental["fp_acc"])


def pair_scores(robust: dict, detrimental: dict, f_n_acc: float | None = None) -> pd.DataFrame:
    """Table 1 for one (network, options, budget): one row.

    ``robust`` / ``detrimental`` hold ``fp_acc`` and ``q_acc`` (percent); see :func:`gap` and
    :func:`fp_match`.
    """
    return pd.DataFrame(
        [
            {
                "f_N FP": f_n_acc,
                "f_R FP": robust["fp_acc"],
                "f_R delta": -drop(robust),
                "f_D FP": detrimental["fp_acc"],
                "f_D delta": -drop(detrimental),
                "gap": gap(robust, detrimental),
                "FP match": fp_match(robust, detrimental),
            }
        ]
    )


def transitory_points(fp_r: Sequence[bool], fp_d: Sequence[bool], q_d: Sequence[bool]) -> dict:
    """Table 2: examples both FP models classify correctly but the quantized f_D gets wrong.

    Returns the indices and two rates (percent), since the paper does not say which it used: as a
    share of the whole test set, and as a share of the points both FP models get right.
    """
    fp_r, fp_d, q_d = (torch.as_tensor(list(v), dtype=torch.bool) for v in (fp_r, fp_d, q_d))
    if not len(fp_r) == len(fp_d) == len(q_d):
        raise ValueError("correctness vectors must have the same length")
    both = fp_r & fp_d
    trans = both & ~q_d
    n_both = int(both.sum())
    return {
        "indices": trans.nonzero().flatten().tolist(),
        "count": int(trans.sum()),
        "rate_of_test": 100 * float(trans.sum()) / max(len(fp_r), 1),
        "rate_of_both_correct": 100 * float(trans.sum()) / n_both if n_both else float("nan"),
    }


def cross_policy_matrix(table: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Table 3 as a DataFrame: rows = policy (FP, pi_R, pi_D, random), columns = network."""
    return pd.DataFrame(table).loc[
        lambda df: [r for r in ("FP", "pi_R", "pi_D", "random") if r in df.index]
    ]


@torch.no_grad()
def _accuracy(
    net: QuantizableModel,
    dataset: Dataset,
    mean,
    std,
    bits_fn: BitsFn | None,
    mask: torch.Tensor | None,
    device,
    batch_size: int = 256,
    transform: Callable | None = None,
) -> float:
    net.eval()
    correct = total = 0
    for i, (images, y) in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
        images = images.to(device)
        x = transform(images, i) if transform else normalize(images, mean, std)
        if bits_fn is None:
            logits = net(x)
        else:
            logits = net(x, bits_fn(x), mask=mask)
        correct += int((logits.argmax(1).cpu() == torch.as_tensor(y)).sum())
        total += len(y)
    return 100 * correct / max(total, 1)


def sweep_masks(num_layers: int, layer: int) -> dict[str, torch.Tensor]:
    """Masks at layer ``layer`` (0-based): before = layers < l, after = layers >= l, single = l.

    "before" and "after" partition the layers (the paper calls "after" the inverse of "before").
    """
    idx = torch.arange(num_layers)
    return {"before": idx < layer, "after": idx >= layer, "single": idx == layer}


def layer_sweep(
    net: QuantizableModel,
    bits_fn: BitsFn,
    data: DatasetPair,
    device="cpu",
    splits: Sequence[str] = ("train", "test"),
    max_examples: int | None = None,
) -> pd.DataFrame:
    """Fig. 2: accuracy when only some layers are quantized (with the policy's own bits).

    Columns: split, layer (1-based), scheme (before/after/single), accuracy (percent).
    """
    rows = []
    for split in splits:
        ds = getattr(data, split)
        if max_examples is not None and len(ds) > max_examples:
            ds = torch.utils.data.Subset(ds, range(max_examples))
        for layer in range(net.num_layers):
            for scheme, mask in sweep_masks(net.num_layers, layer).items():
                acc = _accuracy(net, ds, data.mean, data.std, bits_fn, mask, device)
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


@torch.no_grad()
def activation_histograms(
    net: QuantizableModel, bits_fn: BitsFn, data: DatasetPair, device="cpu", max_examples: int = 512
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Fig. 3: per layer, histograms of activation values at FP and quantized, and sparsity.

    Bins of width 0.01 over [-8, 8] (1600 bins); the bin holding 0, [0, 0.01), is removed and the
    rest renormalised to sum to 1. The **sparsity measure** is the share (percent) of all values
    that fall in that zero bin. Returns ``hist [L, 2, 1599]`` (index 1: 0 = FP, 1 = quantized) and
    a DataFrame with layer, sparsity_fp, sparsity_q.
    """
    n_bins = int(round(2 * HIST_RANGE / HIST_BIN))
    zero_bin = n_bins // 2
    counts = torch.zeros(net.num_layers, 2, n_bins, dtype=torch.float64)
    totals = torch.zeros(net.num_layers, 2, dtype=torch.float64)
    ds = data.test
    if len(ds) > max_examples:
        ds = torch.utils.data.Subset(ds, range(max_examples))
    net.eval()
    for images, _ in DataLoader(ds, batch_size=128, shuffle=False):
        x = normalize(images.to(device), data.mean, data.std)
        cap: dict = {}
        net(x, bits_fn(x), capture=cap)
        for layer, (pre, post) in cap.items():
            for k, t in enumerate((pre, post)):
                counts[layer, k] += torch.histc(
                    t.float().cpu(), n_bins, -HIST_RANGE, HIST_RANGE
                ).double()
                totals[layer, k] += t.numel()
    sparsity = 100 * counts[:, :, zero_bin] / totals
    rest = torch.cat([counts[:, :, :zero_bin], counts[:, :, zero_bin + 1 :]], dim=2)
    hist = rest / rest.sum(dim=2, keepdim=True).clamp_min(1)
    frame = pd.DataFrame(
        {
            "layer": range(1, net.num_layers + 1),
            "sparsity_fp": sparsity[:, 0].tolist(),
            "sparsity_q": sparsity[:, 1].tolist(),
        }
    )
    return hist.float(), frame


def corruption_robustness(
    models: dict[str, tuple[QuantizableModel, BitsFn | None]],
    data: DatasetPair,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    degrees: Sequence[int] = DEGREES,
    device="cpu",
    seed: int = 0,
    max_examples: int | None = None,
) -> pd.DataFrame:
    """Fig. 4: accuracy of each (network, policy or FP) under each corruption and degree.

    ``models`` maps a label (e.g. "f_R FP", "f_R quantized") to (network, bits function or None).
    Columns: model, corruption, degree, accuracy (percent). The same seed gives the same corrupted
    images for every model.
    """
    ds = data.test
    if max_examples is not None and len(ds) > max_examples:
        ds = torch.utils.data.Subset(ds, range(max_examples))
    rows = []
    for name in corruptions:
        for degree in degrees:

            def transform(images, batch_index, name=name, degree=degree):
                x = corrupt(
                    name, images, degree, seed * 1_000_003 + batch_index, data.mean, data.std
                )
                m = torch.tensor(data.mean, device=x.device).view(1, -1, 1, 1)
                s = torch.tensor(data.std, device=x.device).view(1, -1, 1, 1)
                return (x - m) / s

            for label, (net, bits_fn) in models.items():
                acc = _accuracy(
                    net, ds, data.mean, data.std, bits_fn, None, device, transform=transform
                )
                rows.append({"model": label, "corruption": name, "degree": degree, "accuracy": acc})
    return pd.DataFrame(rows)


def corruption_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model: clean accuracy and mean accuracy over corruptions and degrees 1..5.

    For labels "<net> FP" / "<net> quantized" the quantized-vs-FP change of that mean is added.
    """
    clean = frame[frame.degree == 0].groupby("model", sort=False)["accuracy"].mean()
    mean = frame[frame.degree > 0].groupby("model", sort=False)["accuracy"].mean()
    out = pd.DataFrame({"clean acc": clean, "mean corrupted acc": mean})
    change = {}
    for label in out.index:
        if label.endswith(" quantized") and f"{label[:-10]} FP" in out.index:
            change[label] = (
                out.loc[label, "mean corrupted acc"]
                - out.loc[f"{label[:-10]} FP", "mean corrupted acc"]
            )
    out["quantized - FP"] = pd.Series(change, dtype=float)
    return out
