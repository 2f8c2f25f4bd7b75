"""Fake quantization against a real integer kernel: is what we simulate what a runtime computes?

Every number of the benchmark comes from fake quantization (:mod:`dptq.quant`: quantize, then
dequantize in float). :func:`int8_agreement` runs the same network through PyTorch's quantized
CPU backend (fbgemm kernels, ``torch.ao.quantization``'s FX flow: conv + batch norm + ReLU
fused, int8 weights, uint8 activations, integer convolutions) and compares predictions with ours at
a uniform 8 bits. Activation ranges are taken **per example**, as ours are: for each image the
observers are reset, see only that image, and the network is converted with those ranges (slow,
the network is converted once and its quantization parameters re-set per image:
:class:`Int8Runner`). Per-tensor min-max
observers without ``reduce_range`` (fbgemm's default keeps 7 bits), asymmetric activations and
symmetric per-tensor weights, as :mod:`dptq.quant` does.

Where the two differ, by construction: the int8 network also quantizes the image (our first layer
is kept at full precision), each fused block's *output* and every residual addition (we quantize
each Conv/Linear input only), and its weights at 8 bits (ours at the suite's ``weight_bits``, 16 by
default: compared both ways below). Hand-written around ``torch.ao`` because no library compares a
fake-quantized network with its converted twin per example.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch.utils.data import DataLoader

from .data import DatasetPair, normalize
from .models import QuantizableModel
from .splits import subset


def _fx(per_channel_weights: bool = False):
    """torch.ao's FX quantization (deprecated upstream in favour of torchao; still shipped)."""
    try:
        from torch.ao.quantization import (
            MinMaxObserver,
            PerChannelMinMaxObserver,
            QConfig,
            QConfigMapping,
        )
        from torch.ao.quantization.observer import ObserverBase
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as e:  # a torch without torch.ao.quantization
        raise RuntimeError(f"this torch has no torch.ao.quantization FX flow ({e})") from None
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(
            dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False
        ),
        weight=PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        )
        if per_channel_weights
        else MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
    )
    return QConfigMapping().set_global(qconfig), ObserverBase, prepare_fx, convert_fx


def int8_engine() -> str:
    """fbgemm where built, else qnnpack. Not ``x86`` (PyTorch's default, fbgemm + oneDNN): with
    per-example ranges regnetx_016's grouped convolutions come out wrong under it (the first one's
    output has relative error ~3; ungrouped convolutions ~0.02; static ranges are fine), and the
    network agrees 60% with ours, against 99% under fbgemm (docs/int8.md; cause not found)."""
    engines = torch.backends.quantized.supported_engines
    for e in ("fbgemm", "qnnpack"):
        if e in engines:
            return e
    raise RuntimeError(f"no fbgemm or qnnpack quantized engine in this torch (found {engines})")


class Int8Runner:
    """A network converted to int8 once, whose activation qparams are re-set for every input.

    Converting per example (``convert_fx`` on a fresh copy) is exact but slow and leaks memory (a
    converted GraphModule's packed weights outlive it). Instead: every activation observer of the
    prepared network is given a distinct probe range, the network is converted once, and the probe
    values are looked up in the converted network (each quantized module's ``scale`` /
    ``zero_point`` and each ``*_scale_k`` / ``*_zero_point_k`` attribute of the graph) to learn
    which observer feeds which place. :meth:`__call__` then observes the input, computes every
    observer's qparams and writes them there: the same numbers as a conversion for that input
    (``tests/test_int8.py`` compares both).
    """

    PROBE = 1e-3

    def __init__(
        self, model: torch.nn.Module, example: torch.Tensor, per_channel_weights: bool = False
    ):
        mapping, observer_base, prepare_fx, convert_fx = _fx(per_channel_weights)
        self._convert = convert_fx
        torch.backends.quantized.engine = int8_engine()
        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            self.prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, (example,))
        self.observers = [
            o
            for n, o in self.prepared.named_modules()
            if isinstance(o, observer_base) and n.startswith("activation_post_process")
        ]
        for k, o in enumerate(self.observers):  # probe: scale (k + 1) * PROBE, zero point 0
            o.min_val.fill_(0.0)
            o.max_val.fill_(255 * (k + 1) * self.PROBE)
        self.converted = self.convert()
        self.places: list[list] = [[] for _ in self.observers]
        for name, mod in self.converted.named_modules():
            if isinstance(getattr(mod, "scale", None), float):
                self.places[self._index(mod.scale, name)].append(("module", mod))
        for name, buf in self.converted.named_buffers():
            if "_scale_" in name.rsplit(".", 1)[-1]:
                zp = name.replace("_scale_", "_zero_point_")
                self.places[self._index(float(buf), name)].append(("buffer", name, zp))

    def _index(self, scale: float, where: str) -> int:
        k = round(scale / self.PROBE) - 1
        if not 0 <= k < len(self.observers) or abs(scale - (k + 1) * self.PROBE) > 1e-7:
            raise RuntimeError(f"int8: cannot tell which observer feeds {where} (scale {scale})")
        return k

    def convert(self) -> torch.nn.Module:
        """A fresh conversion with the observers' current ranges (the reference)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._convert(copy.deepcopy(self.prepared))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Int8 logits of ``x`` with activation ranges observed on ``x`` alone."""
        for o in self.observers:
            o.reset_min_max_vals()
        self.prepared(x)
        buffers = dict(self.converted.named_buffers())
        for o, places in zip(self.observers, self.places):
            scale, zero_point = o.calculate_qparams()
            for place in places:
                if place[0] == "module":
                    place[1].scale, place[1].zero_point = float(scale), int(zero_point)
                else:
                    buffers[place[1]].copy_(scale.reshape(buffers[place[1]].shape))
                    buffers[place[2]].copy_(zero_point.reshape(buffers[place[2]].shape))
        return self.converted(x)


@torch.no_grad()
def int8_agreement(
    net: QuantizableModel,
    data: DatasetPair,
    max_examples: int | None = 200,
    seed: int = 0,
    split: str = "test",
) -> dict:
    """Predictions of ``net`` fake-quantized at a uniform 8 bits (weights at ``net.weight_bits``
    and at 8) against the real int8 network, on a seeded, stratified subset of ``split``.

    Returns the agreement (% of examples with the same argmax) of each fake-quantized version with
    int8, the largest absolute logit difference, each one's accuracy and FP accuracy, and the FP
    top-2 margins of the examples where they disagree (beside the median margin).
    """
    model = net.model.cpu().eval()
    net = net.cpu().eval()
    ds = subset(getattr(data, split), max_examples, seed)
    loader = DataLoader(ds, batch_size=1, shuffle=False)
    runner = Int8Runner(model, normalize(next(iter(loader))[0], data.mean, data.std))
    w_bits = net.weight_bits
    rows = {"int8": [], "ours": [], "ours_w8": [], "fp": [], "y": [], "margin": []}
    max_diff = {"ours": 0.0, "ours_w8": 0.0}
    for images, y in loader:
        x = normalize(images, data.mean, data.std)
        int8 = runner(x)
        bits = torch.full((1, net.num_layers), 8)
        ours = net(x, bits)
        net.weight_bits = 8
        try:
            ours_w8 = net(x, bits)
        finally:
            net.weight_bits = w_bits
        for k, v in (("ours", ours), ("ours_w8", ours_w8)):
            max_diff[k] = max(max_diff[k], float((v - int8).abs().max()))
        fp = model(x)
        for k, v in (("int8", int8), ("ours", ours), ("ours_w8", ours_w8), ("fp", fp)):
            rows[k].append(int(v.argmax(1)))
        top2 = fp.topk(2, dim=1).values[0]
        rows["margin"].append(float(top2[0] - top2[1]))
        rows["y"].append(int(y))
    n = len(rows["y"])
    agree = lambda a, b: 100 * sum(p == q for p, q in zip(rows[a], rows[b])) / n  # noqa: E731
    return {
        "examples": n,
        "engine": torch.backends.quantized.engine,
        "weight_bits": w_bits,
        "agreement": agree("ours", "int8"),
        "agreement_w8": agree("ours_w8", "int8"),
        "max_logit_diff": max_diff["ours"],
        "max_logit_diff_w8": max_diff["ours_w8"],
        "acc": {k: agree(k, "y") for k in ("fp", "ours", "ours_w8", "int8")},
        # the FP top-2 logit margin of each example where ours (w16) and int8 disagree: small
        # margins mean the two quantizations' different rounding, not a bug, flipped it
        "disagree_margins": [
            m for m, a, b in zip(rows["margin"], rows["ours"], rows["int8"]) if a != b
        ],
        "median_margin": sorted(rows["margin"])[n // 2],
    }
