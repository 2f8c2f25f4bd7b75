"""Full-precision indicators: can a deployer tell a detrimental network from a robust one without
quantizing it? (the paper's Sect. 4.3 asks, with corruption curves on one pair).

Each indicator is one number computed from a network's weights and its full-precision behaviour
on clean images; no policy, no bit-width, no quantizer is involved, so a deployer can compute them
on any model (``python -m bench audit`` reports them). Higher is read as "more suspicious"; the
board measures, over the trained pairs, how well each one separates f_D from f_R (an AUC, chance
0.5; below 0.5 the indicator points the other way) rather than trusting that reading.

| name | what (on the quantized layers' inputs / weights, clean images) | why it might show |
|---|---|---|
| ``act_outlier`` | max over layers of max abs activation / its std | a dynamic quantizer's step is the range over 2^b - 1: a few outliers leave the bulk of a layer's input in few levels (our f_D's mostly break one shortcut input) |
| ``act_kurtosis`` | max over layers of the input's excess kurtosis | the same, as a tail statistic |
| ``weight_outlier`` | max over layers of max abs weight / the weights' std | outlier weights (a trigger could sit in weights) |
| ``weight_noise_flip`` | share of predictions changed by Gaussian weight noise at ``WEIGHT_NOISE`` x each tensor's std (mean of ``DRAWS``) | a network near a cliff in weight space |
| ``input_noise_flip`` | share of predictions changed by Gaussian input noise of std ``INPUT_NOISE`` (normalised units, mean of ``DRAWS``) | corruption robustness, Fig. 4's question in one number |
| ``low_margin`` | minus the mean logit margin (top-1 minus top-2) | the hinge losses move margins |

Hand-written: these are statistics of a model's own tensors; no library computes them for an
arbitrary ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

INDICATORS = (
    "act_outlier",
    "act_kurtosis",
    "weight_outlier",
    "weight_noise_flip",
    "input_noise_flip",
    "low_margin",
)
WEIGHT_NOISE = 0.05  # Gaussian weight noise, in units of each weight tensor's std
INPUT_NOISE = 0.25  # Gaussian input noise, in normalised-image units
DRAWS = 3  # noise draws per noise indicator


@dataclass(frozen=True)
class LayerStats:
    """One quantized layer's input on the clean images: max abs value / std, excess kurtosis."""

    name: str
    outlier: float
    kurtosis: float


class _Moments:
    """Streaming max abs and raw moments (float64) of a layer's input over batches."""

    def __init__(self):
        self.n, self.peak, self.raw = 0, 0.0, [0.0, 0.0, 0.0, 0.0]

    def add(self, v: torch.Tensor) -> None:
        v = v.detach().flatten().double()
        self.n += v.numel()
        self.peak = max(self.peak, float(v.abs().max()))
        for k in range(4):
            self.raw[k] += float(v.pow(k + 1).sum())

    def stats(self, name: str) -> LayerStats:
        m1, m2, m3, m4 = (r / self.n for r in self.raw)
        var = max(m2 - m1 * m1, 0.0)
        central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
        std = max(var**0.5, 1e-12)
        kurt = central4 / max(var * var, 1e-24) - 3.0
        return LayerStats(name, self.peak / std, kurt)


def _input_stats(model: nn.Module, names: list[str], batches) -> list[LayerStats]:
    """Each named layer's input statistics over every batch (full-precision forwards)."""
    moments = {name: _Moments() for name in names}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: moments[name].add(args[0])
        )
        for name in names
    ]
    try:
        for x in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return [moments[name].stats(name) for name in names]


def _weight_outlier(model: nn.Module, names: list[str]) -> float:
    """Max over the named layers of max abs weight / the weights' std."""
    ratios = []
    for name in names:
        w = model.get_submodule(name).weight.detach().double()
        ratios.append(float(w.abs().max() / w.std().clamp_min(1e-12)))
    return max(ratios)


def _flip_rate(model: nn.Module, batches, base: list[torch.Tensor], perturb, draws: int) -> float:
    """Mean share of the ``base`` predictions changed while ``perturb(x, generator)`` is in
    effect (a context manager giving the input to use)."""
    changed = total = 0
    for d in range(draws):
        g = torch.Generator().manual_seed(1000 + d)
        for x, b in zip(batches, base):
            with perturb(x, g) as inputs:
                changed += int((model(inputs).argmax(1) != b).sum())
            total += len(b)
    return changed / max(total, 1)


class _WeightNoise:
    """Adds N(0, (scale * std(w))^2) to every named layer's weight, restored on exit."""

    def __init__(self, model, names, scale: float, x: torch.Tensor, g: torch.Generator):
        self.params = [model.get_submodule(n).weight for n in names]
        self.scale, self.g, self.saved, self.x = scale, g, [], x

    def __enter__(self):
        for p in self.params:
            self.saved.append(p.detach().clone())
            noise = torch.randn(p.shape, generator=self.g).to(p.device, p.dtype)
            p.data.add_(noise * self.scale * p.detach().std())
        return self.x

    def __exit__(self, *exc):
        for p, w in zip(self.params, self.saved):
            p.data.copy_(w)
        return False


class _InputNoise:
    def __init__(self, x: torch.Tensor, std: float, g: torch.Generator):
        self.x = x + std * torch.randn(x.shape, generator=g).to(x.device, x.dtype)

    def __enter__(self):
        return self.x

    def __exit__(self, *exc):
        return False


@torch.no_grad()
def fp_indicators(
    model: nn.Module, layer_names: list[str], batches: list[torch.Tensor]
) -> tuple[dict[str, float], list[LayerStats]]:
    """Every indicator of :data:`INDICATORS` for ``model`` (eval mode, full precision) on the
    normalised clean image ``batches``; ``layer_names``: the layers whose inputs a quantizer would
    see (e.g. :attr:`dptq.models.QuantizableModel.layer_names`, names inside ``model``). Returns
    the indicators and each layer's input statistics. Deterministic: the noise draws are seeded
    (the weight noise draws the same numbers for each batch: one perturbed network per draw)."""
    model.eval()
    stats = _input_stats(model, layer_names, batches)
    logits = [model(x) for x in batches]
    base = [z.argmax(1) for z in logits]
    margins = torch.cat([z.topk(2, dim=1).values for z in logits])
    values = {
        "act_outlier": max(s.outlier for s in stats),
        "act_kurtosis": max(s.kurtosis for s in stats),
        "weight_outlier": _weight_outlier(model, layer_names),
        "weight_noise_flip": _flip_rate(
            model,
            batches,
            base,
            lambda x, g: _WeightNoise(model, layer_names, WEIGHT_NOISE, x, _same(g)),
            DRAWS,
        ),
        "input_noise_flip": _flip_rate(
            model, batches, base, lambda x, g: _InputNoise(x, INPUT_NOISE, g), DRAWS
        ),
        "low_margin": -float((margins[:, 0] - margins[:, 1]).mean()),
    }
    return {k: round(v, 6) for k, v in values.items()}, stats


def _same(g: torch.Generator) -> torch.Generator:
    """A generator restarted at ``g``'s seed: every batch of a draw sees the same weight noise."""
    return torch.Generator().manual_seed(g.initial_seed())
