"""Networks under dynamic quantization: any ``nn.Module`` (timm by name) with per-example bits.

Which activations are quantized: the **input of every** ``nn.Conv2d`` **and** ``nn.Linear`` (in
``named_modules`` order, which for timm's ResNet/RegNet/MobileNetV4 is execution order), minus any
whose module name matches a pattern in ``exclude`` (fnmatch). This is where a dynamic-quantization
runtime quantizes: at the input of each integer matmul/conv; residual additions stay in float.
When one tensor feeds two layers (a block's first conv and its downsample conv), each layer
quantizes its own copy with its own bit-width.

Weights: every Conv2d/Linear weight is fake-quantized statically, symmetric per tensor, at
``weight_bits`` (16 in the paper) in the quantized pass, through ``torch.func.functional_call`` so the
module keeps its own (full-precision) parameters: the same weights serve both passes, no copy.

Policy gradient (Sect. 3.4 and DESIGN): the quantized pass reads bit-widths from the hard knapsack
selection and runs one fake quantization per layer. The policy's gradient enters through an
identity "tap" on each quantized activation whose backward returns, per example and option o,
``<dL/dx_hat, Q_o(x)>``: exactly the gradient that the surrogate ``x_hat = sum_o G_o Q_o(x)`` (the
one-hot-weighted sum of every option's quantization) would give its weights G, without computing
O quantizations in the forward pass.

One job: a network run at per-example bit-widths (which layers, the hook, the policy's tap and
the weights' static quantization are one mechanism), and building one by name.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch

import torch
from torch import nn

from .errors import ConfigError
from .quant import (
    ScaleMode,
    fake_quantize,
    fake_quantize_static,
    fake_quantize_weight,
    option_inner_products,
)

QUANTIZABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class ActQuantConfig:
    """How activations are quantized (Sect. 4: asymmetric, min-max scale, per example).

    Attributes:
        symmetric: abs-max symmetric (Eq. 1) instead of min-max asymmetric.
        scale_mode: ``"minmax"`` or ``"percentile"``.
        percentile: used with ``scale_mode="percentile"``.
        grad_through_scale: let gradients reach the per-example scale/zero point.
        per_channel: one scale per example and channel (inputs of convolutions).
    """

    symmetric: bool = False
    scale_mode: ScaleMode = "minmax"
    percentile: float = 99.99
    grad_through_scale: bool = False
    per_channel: bool = False

    def __post_init__(self):
        if self.scale_mode not in ("minmax", "percentile"):
            raise ConfigError(f"scale_mode: {self.scale_mode!r} is not 'minmax' or 'percentile'")
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"percentile: must lie in (50, 100], got {self.percentile}")

    def __call__(
        self, x: torch.Tensor, bits: torch.Tensor | int, layer: int | None = None
    ) -> torch.Tensor:
        return fake_quantize(
            x,
            bits,
            self.symmetric,
            True,
            self.scale_mode,
            self.percentile,
            self.grad_through_scale,
            self.per_channel,
        )


@dataclass(frozen=True)
class StaticActQuant:
    """Static activation ranges (ordinary static PTQ, the non-dynamic baseline): layer l's input
    is quantized in the fixed range ``ranges[l]`` (calibrated on training images by
    :func:`calibrate_static`), whatever the example; the bit-widths stay per example. For
    evaluation only (a policy cannot be trained through it)."""

    ranges: tuple[tuple[float, float], ...]
    symmetric: bool = False

    def __call__(self, x: torch.Tensor, bits: torch.Tensor | int, layer: int) -> torch.Tensor:
        lo, hi = self.ranges[layer]
        return fake_quantize_static(x, bits, lo, hi, self.symmetric)


class _PolicyTap(torch.autograd.Function):
    """Identity on ``x_hat``; backward also gives ``sel`` the gradient ``<g, Q_o(x)>`` per option."""

    @staticmethod
    def forward(ctx, x_hat, x, sel, options, quantizer):
        ctx.save_for_backward(x)
        ctx.options, ctx.quantizer = options, quantizer
        return x_hat.view_as(x_hat)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad_sel = None
        if ctx.needs_input_grad[2]:
            q = ctx.quantizer
            grad_sel = option_inner_products(
                x, grad, ctx.options, q.symmetric, q.scale_mode, q.percentile, q.per_channel
            ).to(grad.dtype)
        return grad, None, grad_sel, None, None


class _LayerHook:
    """Forward pre-hook quantizing layer ``index``'s input (a class, so ``deepcopy`` rebinds it)."""

    def __init__(self, owner: QuantizableModel, index: int):
        self.owner, self.index = owner, index

    def __call__(self, module, args):
        state = self.owner._state
        if state is None:
            return None
        x, l = args[0], self.index
        if state.mask is not None and not state.mask[l]:
            if state.capture is not None:
                state.capture[l] = (x.detach(), x.detach())
            return None
        shape, x = x.shape, _per_example_view(x, state.bits.shape[0])
        x_hat = self.owner.act_quant(x, state.bits[:, l], l)
        if state.selection is not None:
            x_hat = _PolicyTap.apply(
                x_hat, x.detach(), state.selection[:, l], state.options, self.owner.act_quant
            )
        x, x_hat = x.reshape(shape), x_hat.reshape(shape)
        if state.capture is not None:
            state.capture[l] = (x.detach(), x_hat.detach())
        return (x_hat, *args[1:])


def _per_example_view(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` with one row per example. A layer inside a block that folds positions into the batch
    (MobileViT's transformer sees ``[B * P, N, C]``, windowed attention ``[B * W, ...]``) gets a
    leading dimension ``k * B``; such reshapes keep the example index outermost, so the example's
    values are rows ``b * k .. b * k + k - 1`` and ``[B, -1]`` gathers them: its bit-width and its
    one range (per example, Sect. 4) cover all of them, as for any other layer."""
    if x.shape[0] == batch:
        return x
    if x.dim() == 0 or x.shape[0] % batch:
        raise ValueError(
            f"a quantized layer's input has leading dimension {x.shape[0]}, not a multiple of "
            f"the batch {batch}: per-example bits cannot be matched to its rows"
        )
    return x.reshape(batch, -1)


@dataclass
class _PassState:
    bits: torch.Tensor
    mask: torch.Tensor | None
    selection: torch.Tensor | None
    options: tuple[int, ...] | None
    capture: dict | None


class QuantizableModel(nn.Module):
    """Wraps ``model``; ``forward(x)`` is full precision, ``forward(x, bits)`` dynamically quantized.

    Args:
        model: any classifier ``nn.Module``.
        exclude: fnmatch patterns of module names whose inputs are not quantized.
        skip_first: leave the first layer's input (the image itself) at full precision. With it,
            L is 20 / 77 / 59 for resnet18 / mobilenetv4_conv_medium / regnetx_016, the counts the
            paper's budgets imply (about 20, 77, 58); without it 21 / 78 / 60.
        act: activation quantizer settings.
        weight_bits: static symmetric weight bits in the quantized pass (None: FP weights).
    """

    def __init__(
        self,
        model: nn.Module,
        exclude: Sequence[str] = (),
        skip_first: bool = True,
        act: ActQuantConfig = ActQuantConfig(),
        weight_bits: int | None = 16,
    ):
        super().__init__()
        self.model, self.act_quant, self.weight_bits = model, act, weight_bits
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, QUANTIZABLE_TYPES)]
        self._weight_names = [f"{n}.weight" for n, _ in layers]
        kept = [
            (n, m) for n, m in layers[int(skip_first) :] if not any(fnmatch(n, p) for p in exclude)
        ]
        if not kept:
            raise ValueError("no quantizable layer (Conv2d/Linear) left in the model")
        self.layer_names: list[str] = [n for n, _ in kept]
        self._state: _PassState | None = None
        for i, (_, m) in enumerate(kept):
            m.register_forward_pre_hook(_LayerHook(self, i))

    @property
    def num_layers(self) -> int:
        """L, the number of dynamically quantized activations."""
        return len(self.layer_names)

    def forward(
        self,
        x: torch.Tensor,
        bits: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        selection: torch.Tensor | None = None,
        options: Sequence[int] | None = None,
        capture: dict | None = None,
    ) -> torch.Tensor:
        """Logits of ``x``.

        Args:
            bits: ``[B, L]`` integer bit-widths per example and layer; None = full precision.
            mask: ``[L]`` bool, quantize only the layers where True (layer sweeps).
            selection: ``[B, L, O]`` straight-through one-hot from :func:`dptq.knapsack.solve`; when
                given (with ``options``), the policy receives gradients through the taps.
            capture: a dict filled with ``{layer index: (input, quantized input)}`` (detached).
        """
        if bits is None:
            if capture is not None:
                bits = torch.full((x.shape[0], self.num_layers), 32, device=x.device)
                mask = torch.zeros(self.num_layers, dtype=torch.bool)
            else:
                return self.model(x)
        if bits.shape != (x.shape[0], self.num_layers):
            raise ValueError(
                f"bits must be [{x.shape[0]}, {self.num_layers}], got {list(bits.shape)}"
            )
        if selection is not None and options is None:
            raise ValueError("selection needs the bit options it selects from")
        opts = tuple(int(o) for o in options) if options is not None else None
        self._state = _PassState(bits, mask, selection, opts, capture)
        try:
            if self.weight_bits is None or (mask is not None and not bool(mask.any())):
                return self.model(x)
            return torch.func.functional_call(self.model, self._qweights(), (x,), strict=False)
        finally:
            self._state = None

    def _qweights(self) -> dict[str, torch.Tensor]:
        """Every Conv2d/Linear weight fake-quantized at ``weight_bits``.

        Without autograd (evaluation) the result is kept and reused until a weight changes (its
        version counter or storage): an evaluation of many small batches would otherwise
        re-quantize every weight per batch (a quarter of a 224 px analysis on the CPU).
        """
        params = dict(self.model.named_parameters())
        weights = [params[n] for n in self._weight_names]
        if torch.is_grad_enabled():
            return {
                n: fake_quantize_weight(w, self.weight_bits)
                for n, w in zip(self._weight_names, weights)
            }
        try:
            key = (self.weight_bits, *((w._version, w.data_ptr(), w.device) for w in weights))
        except RuntimeError:  # an inference-mode tensor has no version counter: no cache
            key = None
        cached = getattr(self, "_qweight_cache", None)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        q = {
            n: fake_quantize_weight(w, self.weight_bits)
            for n, w in zip(self._weight_names, weights)
        }
        self._qweight_cache = (key, q) if key is not None else None
        return q


@contextmanager
def quantizer(net: QuantizableModel, act):
    """``net`` with its activation quantizer replaced by ``act`` inside the block (evaluating one
    trained network under other quantizers without copying it)."""
    saved = net.act_quant
    net.act_quant = act
    try:
        yield net
    finally:
        net.act_quant = saved


@torch.no_grad()
def calibrate_static(net: QuantizableModel, batches, symmetric: bool = False) -> StaticActQuant:
    """Per-layer min/max of every quantized layer's full-precision input over ``batches``
    (normalised images), as PyTorch's ``MinMaxObserver`` records them: the static ranges."""
    net.eval()
    lo = [float("inf")] * net.num_layers
    hi = [float("-inf")] * net.num_layers
    for x in batches:
        capture: dict = {}
        net(x, capture=capture)
        for l, (inp, _) in capture.items():
            a, b = torch.aminmax(inp)
            lo[l], hi[l] = min(lo[l], float(a)), max(hi[l], float(b))
    if any(v == float("inf") for v in lo):
        raise ValueError("calibrate_static: no calibration batch reached every layer")
    return StaticActQuant(tuple(zip(lo, hi)), symmetric)


def _factory(name: str):
    """The ``package.module:function`` named, imported (nothing else is evaluated)."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", name):
        raise ValueError(
            f"model {name[:80]!r} is not 'package.module:function' (dotted names only; nothing "
            "in it is evaluated)"
        )
    mod_name, _, fn_name = name.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import model {name!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"model {name!r} is not a function")
    return fn


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` (one line) unless ``name`` is a timm model or an importable factory."""
    if ":" in name:
        _factory(name)
        return
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0][:40]}*")[:8]
        raise ValueError(f"unknown timm model {name[:80]!r}; similar: {close}")


def create_model(name: str, num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """A classifier by timm name, or ``package.module:function`` returning an ``nn.Module``.

    For ``module:function`` only that module is imported and only that function is called, with
    ``num_classes`` (and ``kwargs``); nothing else in a config is executed.
    """
    check_model_name(name)
    if ":" in name:
        model = _factory(name)(num_classes=num_classes, **kwargs)
        if not isinstance(model, nn.Module):
            raise ValueError(f"{name!r} returned a {type(model).__name__}, not a torch nn.Module")
        return model
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
