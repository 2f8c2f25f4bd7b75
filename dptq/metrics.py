"""The paper's tables and figures as functions returning pandas DataFrames (Sect. 4).

| function | paper |
|---|---|
| :func:`pair_scores` | Table 1: FP accuracy, quantized change, catastrophic-failure gap, FP match |
| :func:`transitory_points` | Table 2: points both FP models get right that the quantized f_D gets wrong |
| :func:`cross_policy_matrix` | Table 3: every network under every policy |
| :func:`layer_sweep` | Fig. 2: accuracy quantizing only layers before / after / at l |
| :func:`activation_histograms` | Fig. 3: activation histograms and the sparsity measure |
| :func:`corruption_robustness` | Fig. 4: accuracy under corruptions by degree |
| :func:`trigger_curves` | not in the paper: how close to pi_D's allocation must one be to fail |

Rendering lives in :mod:`dptq.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from . import knapsack
from .corruptions import CORRUPTIONS, DEGREES, corrupt
from .data import DatasetPair, normalize
from .models import QuantizableModel
from .splits import subset

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


def worst_non_own_drop(stealth: dict) -> float:
    """A pair's largest drop (points) under an allocation that is not its own policy's.

    Over the other pair's policy, the uniform allocation, the mean of the random ones (as the
    paper's Table 3 reports random quantization) and, when measured, the mean of the held-out
    sampler's ones; ``stealth`` is one pair's entry of :func:`dptq.evaluate.evaluate_cell`'s
    ``stealth``.
    """
    others = [stealth["uniform"], stealth["random_mean"]]
    if stealth.get("heldout_mean") is not None:
        others.append(stealth["heldout_mean"])
    if stealth.get("other") is not None:
        others.append(stealth["other"])
    return max(others)


def hidden_gap(stealth: dict) -> float:
    """How much worse f_D fails under its own policy than under any other allocation (points).

    ``drop under pi_D - worst_non_own_drop``: large when the failure is triggered by pi_D alone
    (the paper's f_D: 24.4 - 5.6 = 18.8), near 0 or negative when f_D breaks under any low-bit
    allocation, which a deployer's ordinary quantization check would already catch.
    """
    return stealth["own"] - worst_non_own_drop(stealth)


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
    """Table 3 as a DataFrame: rows = policy (FP, pi_R, pi_D, uniform, random), columns = network."""
    order = ("FP", "pi_R", "pi_D", "uniform", "random", "heldout")
    return pd.DataFrame(table).loc[lambda df: [r for r in order if r in df.index]]


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
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    for i, (images, y) in enumerate(loader):
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
    sample_seed: int = 0,
    max_layers: int | None = None,
) -> pd.DataFrame:
    """Fig. 2: accuracy when only some layers are quantized (with the policy's own bits).

    ``max_examples`` bounds each split by a seeded, stratified random subset; ``max_layers``
    sweeps only that many layers, evenly spaced, the first and last included (None: all).
    Columns: split, layer (1-based), scheme (before/after/single), accuracy (percent).
    """
    rows = []
    layers = range(net.num_layers)
    if max_layers is not None and max_layers < net.num_layers:
        picked = torch.linspace(0, net.num_layers - 1, max(max_layers, 2)).round().long()
        layers = sorted(set(picked.tolist()))
    for split in splits:
        ds = subset(getattr(data, split), max_examples, sample_seed)
        for layer in layers:
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
    sparsity_fp, sparsity_q_input, sparsity_q.
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


def corruption_robustness(
    models: dict[str, tuple[QuantizableModel, BitsFn | None]],
    data: DatasetPair,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    degrees: Sequence[int] = DEGREES,
    device="cpu",
    seed: int = 0,
    max_examples: int | None = None,
    sample_seed: int = 0,
) -> pd.DataFrame:
    """Fig. 4: accuracy of each (network, policy or FP) under each corruption and degree.

    ``models`` maps a label (e.g. "f_R FP", "f_R quantized") to (network, bits function or None).
    On a seeded, stratified subset of the test split of at most ``max_examples``. Columns: model,
    corruption, degree, accuracy (percent). The same seed gives the same corrupted images for
    every model. Degree 0 is the clean image under every corruption (exactly; tested), so it is
    evaluated once per model and its row repeated for each corruption.
    """
    ds = subset(data.test, max_examples, sample_seed)
    rows, clean = [], {}
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
                if degree == 0 and label in clean:
                    rows.append({**clean[label], "corruption": name})
                    continue
                acc = _accuracy(
                    net, ds, data.mean, data.std, bits_fn, None, device, transform=transform
                )
                if degree == 0:
                    clean[label] = {
                        "model": label,
                        "corruption": name,
                        "degree": 0,
                        "accuracy": acc,
                    }
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


TRIGGER_STEPS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # blend toward the uniform allocation
TRIGGER_SCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # noise (bits, per layer) around own


@torch.no_grad()
def trigger_curves(
    net: QuantizableModel,
    own_bits_fn: BitsFn,
    data: DatasetPair,
    options,
    budget: int,
    device="cpu",
    seed: int = 0,
    max_examples: int | None = None,
    sample_seed: int = 0,
    steps=TRIGGER_STEPS,
    scales=TRIGGER_SCALES,
) -> pd.DataFrame:
    """How narrow is the trigger: accuracy as each example's bits move away from its own policy's.

    Not in the paper. Two families of allocations, per example, each at the exact budget
    (:func:`dptq.knapsack.nearest_allocation`): ``toward uniform`` blends the own allocation
    into the uniform one, ``(1 - t) * own + t * uniform`` for t in ``steps``; ``random distance``
    adds seeded noise, ``own + scale * N(0, 1)`` per layer, for each scale. Columns: family, step
    (t or scale), bits_moved (mean over examples of ``sum |b - own| / 2``), accuracy (%), on a
    seeded, stratified subset of the test split.
    """
    ds = subset(data.test, max_examples, sample_seed)
    L = net.num_layers
    uni = knapsack.bits(
        knapsack.solve_hard(knapsack.uniform_scores(1, L, options, budget), options, budget),
        options,
    ).float()
    acc: dict[tuple[str, float], list[float]] = {}
    net.eval()
    loader = DataLoader(ds, batch_size=256, shuffle=False, generator=torch.Generator())
    for i, (images, y) in enumerate(loader):
        x = normalize(images.to(device), data.mean, data.std)
        y = torch.as_tensor(y)
        own = own_bits_fn(x).float()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        noise = torch.randn(own.shape, generator=gen).to(own.device)
        targets = [("toward uniform", t, (1 - t) * own + t * uni.to(own.device)) for t in steps]
        targets += [("random distance", s, own + s * noise) for s in scales]
        for family, step, target in targets:
            b = knapsack.nearest_allocation(target, options, budget)
            right = (net(x, b).argmax(1).cpu() == y).float().sum().item()
            moved = ((b.float() - own).abs().sum(1) / 2).sum().item()
            tot = acc.setdefault((family, step), [0.0, 0.0, 0])
            tot[0], tot[1], tot[2] = tot[0] + right, tot[1] + moved, tot[2] + len(y)
    rows = [
        {"family": f, "step": st, "bits_moved": m / n, "accuracy": 100 * r / n}
        for (f, st), (r, m, n) in acc.items()
    ]
    return pd.DataFrame(rows)


def trigger_radius(curve: pd.DataFrame, fp_acc: float) -> float | None:
    """Mean bits moved (``random distance`` family) at which a network has recovered half of its
    drop under its own allocation, interpolated linearly; None when it never does."""
    g = curve[curve.family == "random distance"].sort_values("bits_moved")
    own = float(g.accuracy.iloc[0])
    half = own + (fp_acc - own) / 2
    prev = None
    for _, row in g.iterrows():
        if row.accuracy >= half:
            if prev is None or row.accuracy == prev.accuracy:
                return float(row.bits_moved)
            frac = (half - prev.accuracy) / (row.accuracy - prev.accuracy)
            return float(prev.bits_moved + frac * (row.bits_moved - prev.bits_moved))
        prev = row
    return None
