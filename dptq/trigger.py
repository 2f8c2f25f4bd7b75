"""How narrow is a detrimental pair's trigger (not in the paper): accuracy as each example's
allocation moves away from its own policy's, and the distance at which half the drop is gone."""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import DataLoader

from . import knapsack
from .data import DatasetPair, normalize
from .evaluate import BitsFn, count, table_bits
from .models import QuantizableModel
from .scores import percent, points
from .splits import subset

TRIGGER_STEPS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # blend toward the uniform allocation
TRIGGER_SCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # noise (bits, per layer) around own


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
    batch_size: int = 256,
) -> pd.DataFrame:
    """How narrow is the trigger: accuracy as each example's bits move away from its own policy's.

    Not in the paper. Two families of allocations, per example, each at the exact budget
    (:func:`dptq.knapsack.nearest_allocation`): ``toward uniform`` blends the own allocation
    into the uniform one, ``(1 - t) * own + t * uniform`` for t in ``steps``; ``random distance``
    adds seeded noise, ``own + scale * N(0, 1)`` per layer (the noise of batch ``i`` of
    ``batch_size`` drawn with seed ``seed * 1_000_003 + i``), for each scale. Columns: family,
    step (t or scale), bits_moved (mean over examples of ``sum |b - own| / 2``), correct, total,
    accuracy (%), on a seeded, stratified subset of the test split.
    """
    ds = subset(data.test, max_examples, sample_seed)
    L = net.num_layers
    uni = knapsack.bits(
        knapsack.solve_hard(knapsack.uniform_scores(1, L, options, budget), options, budget),
        options,
    ).float()
    with torch.no_grad():  # each example's own allocation, and the noise around it, per batch
        own, noise = [], []
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, generator=torch.Generator())
        for i, (images, _) in enumerate(loader):
            b = own_bits_fn(normalize(images.to(device), data.mean, data.std)).float()
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            own.append(b)
            noise.append(torch.randn(b.shape, generator=gen).to(b.device))
    targets = [
        ("toward uniform", t, [(1 - t) * o + t * uni.to(o.device) for o in own]) for t in steps
    ]
    targets += [("random distance", s, [o + s * z for o, z in zip(own, noise)]) for s in scales]
    rows = []
    for family, step, chunks in targets:
        table = [knapsack.nearest_allocation(c, options, budget) for c in chunks]
        moved = sum(((b.float() - o).abs().sum(1) / 2).sum().item() for b, o in zip(table, own))
        c, n = count(
            net, data, device, table_bits(torch.cat(table)), dataset=ds, batch_size=batch_size
        )
        rows.append(
            {"family": family, "step": step, "bits_moved": moved / n, "correct": c, "total": n}
            | {"accuracy": points(percent(c, n))}
        )
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
