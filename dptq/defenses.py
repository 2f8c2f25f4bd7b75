"""A defense track: what a deployer can do to a network without knowing whether it is f_R or f_D
(not in the paper; Qu-ANTI-zation finds that only re-training removes its static-quantization
attack).

Each defense is applied alike to both networks of a cell and changes one thing: the weights
(fine-tuning at full precision on clean data, Gaussian weight noise), the quantizer (percentile
scaling) or the allocation (ignore the policy: the uniform allocation at the same budget). The
table gives the gap that remains and what the defense costs at full precision.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from .data import DatasetPair, normalize
from .errors import ConfigError
from .evaluate import count
from .models import QUANTIZABLE_TYPES, ActQuantConfig, QuantizableModel, quantizer


@dataclass(frozen=True)
class DefenseConfig:
    """Settings of the defense track.

    Attributes:
        finetune_steps: steps of full-precision fine-tuning (cross-entropy on the labels of the
            training split, batch-norm statistics frozen, Adam); 0 leaves the defense out.
        finetune_lr, finetune_batch_size: its optimiser and batch.
        noise_scales: Gaussian weight noise, each Conv/Linear weight ``W + s * std(W) * N(0, 1)``.
        percentile: the percentile scaling defense (Sect. 4.2's suggestion).
    """

    finetune_steps: int = 50
    finetune_lr: float = 1e-4
    finetune_batch_size: int = 64
    noise_scales: tuple[float, ...] = (0.01, 0.05)
    percentile: float = 99.9

    def __post_init__(self):
        if not 0 <= self.finetune_steps <= 100_000:
            raise ConfigError(f"finetune_steps: must lie in 0..100000, got {self.finetune_steps}")
        if not self.finetune_lr > 0 or self.finetune_batch_size < 1:
            raise ConfigError("finetune_lr, finetune_batch_size: must be > 0")
        if any(not 0 < s <= 10 for s in self.noise_scales):
            raise ConfigError(f"noise_scales: each must lie in (0, 10], got {self.noise_scales}")
        if not 50 < self.percentile < 100:
            raise ConfigError(f"percentile: must lie in (50, 100), got {self.percentile}")


def finetune(
    net: QuantizableModel,
    data: DatasetPair,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
    device="cpu",
) -> QuantizableModel:
    """A copy of ``net`` fine-tuned at full precision for ``steps`` steps (cross-entropy on the
    training labels, batch norm in eval mode, Adam); ``net`` itself is unchanged."""
    out = copy.deepcopy(net)
    out.train()
    for m in out.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
    out.requires_grad_(True)
    opt = torch.optim.Adam(out.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=gen)
        for images, y in loader:
            x = normalize(images.to(device), data.mean, data.std)
            loss = F.cross_entropy(out(x), torch.as_tensor(y, device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    return out.eval()


@torch.no_grad()
def weight_noise(net: QuantizableModel, scale: float, seed: int = 0) -> QuantizableModel:
    """A copy of ``net`` with Gaussian noise ``scale * std(W)`` added to every Conv/Linear weight
    (seeded; biases and batch norm untouched)."""
    out = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(seed)
    for m in out.modules():
        if isinstance(m, QUANTIZABLE_TYPES):
            w = m.weight
            noise = torch.randn(w.shape, generator=gen).to(w.device, w.dtype)
            w.add_(noise * (scale * w.detach().float().std()).to(w.dtype))
    return out.eval()


def defense_table(
    pairs: dict[str, tuple[QuantizableModel, Callable]],
    uniform_bits: Callable,
    data: DatasetPair,
    cfg: DefenseConfig,
    device="cpu",
    seed: int = 0,
    split: str = "test",
) -> pd.DataFrame:
    """One row per defense: each network's FP and quantized correct counts after it (``<net> FP
    correct``, ``<net> quantized correct`` of ``total``) and accuracies, the remaining gap (f_D's
    drop - f_R's) and its full-precision cost to f_D (points lost against no defense).

    ``pairs``: ``{"f_R": (net, own bits_fn), "f_D": ...}``; ``uniform_bits``: the uniform
    allocation at the cell's budget.
    """

    def right(net, bits_fn):
        return count(net, data, device, bits_fn, split=split)

    defenses: dict[str, Callable] = {"none": lambda net, bits: (net, None, bits)}
    if cfg.finetune_steps:
        defenses["finetune"] = lambda net, bits: (
            finetune(
                net,
                data,
                cfg.finetune_steps,
                cfg.finetune_lr,
                cfg.finetune_batch_size,
                seed,
                device,
            ),
            None,
            bits,
        )
    for s in cfg.noise_scales:
        defenses[f"noise {s:g}"] = lambda net, bits, s=s: (weight_noise(net, s, seed), None, bits)
    pct = ActQuantConfig(scale_mode="percentile", percentile=cfg.percentile)
    defenses[f"percentile {cfg.percentile:g}"] = lambda net, bits: (net, pct, bits)
    defenses["uniform allocation"] = lambda net, bits: (net, None, uniform_bits)
    rows = []
    for name, defend in defenses.items():
        row = {"defense": name}
        for tag, (net, bits) in pairs.items():
            defended, act, bits_fn = defend(net, bits)
            fp, n = right(defended, None)
            if act is None:
                q = right(defended, bits_fn)[0]
            else:
                with quantizer(defended, act):
                    q = right(defended, bits_fn)[0]
            row |= {f"{tag} FP": 100 * fp / n, f"{tag} quantized": 100 * q / n}
            row |= {f"{tag} drop": 100 * (fp - q) / n, f"{tag} FP correct": fp}
            row |= {f"{tag} quantized correct": q, "total": n}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("defense")
    table["gap"] = table["f_D drop"] - table["f_R drop"]
    table["FP cost"] = table.loc["none", "f_D FP"] - table["f_D FP"]
    return table


def best_defense(table: pd.DataFrame, max_fp_cost: float) -> tuple[str | None, float | None]:
    """The defense (not ``none``) leaving the smallest gap among those costing f_D at most
    ``max_fp_cost`` points at full precision; (None, None) when none qualifies."""
    ok = table.drop(index="none")
    ok = ok[ok["FP cost"] <= max_fp_cost]
    if ok.empty:
        return None, None
    name = ok["gap"].idxmin()
    return str(name), float(ok.loc[name, "gap"])
