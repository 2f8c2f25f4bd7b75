"""Fig. 4 of the paper: accuracy under image corruptions by degree (the corruptions themselves are
:mod:`dptq.corruptions`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from .corruptions import CORRUPTIONS, DEGREES, corrupt
from .data import DatasetPair
from .evaluate import BitsFn, count
from .models import QuantizableModel
from .scores import percent, points
from .splits import subset


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
    corruption, degree, correct, total, accuracy (percent). The same seed gives the same corrupted images for
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
                c, n = count(net, data, device, bits_fn, dataset=ds, transform=transform)
                row = {"model": label, "corruption": name, "degree": degree}
                row |= {"correct": c, "total": n, "accuracy": points(percent(c, max(n, 1)))}
                if degree == 0:
                    clean[label] = row
                rows.append(row)
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
