"""Weights from a checkpoint file whatever its layout (``torch.load(..., weights_only=True)``):
a plain ``state_dict``, one held under a common key, a ``DataParallel``/DDP one, or a dptq KD or
pair checkpoint. What ``bench audit`` and anyone auditing their own model load."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

STATE_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "weights")


def _tensors(obj) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def state_dict_from(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in a checkpoint file (``weights_only=True``): a plain one, one held under
    a common key (``state_dict``, ``model``, ...), or a dptq KD/pair checkpoint's network. A
    ``module.`` prefix (DataParallel/DDP) is removed. One-line ``ValueError`` otherwise."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # truncated, not a torch file, or pickled objects beyond tensors
        raise ValueError(
            f"{path}: not a readable weights-only checkpoint ({type(e).__name__})"
        ) from None
    candidates = [obj]
    if isinstance(obj, dict):
        candidates += [obj[k] for k in STATE_KEYS if k in obj]
        mods = obj.get("modules")
        if isinstance(mods, dict):
            candidates += [mods.get("student"), mods.get("model")]
    for c in candidates:
        if _tensors(c):
            if all(k.startswith("module.") for k in c):
                c = {k[len("module.") :]: v for k, v in c.items()}
            return c
    keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"{path}: no state_dict found (top-level keys {keys}); save model.state_dict() or "
        f"a dict holding it under one of {list(STATE_KEYS)}"
    )


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load ``path``'s state_dict into ``model``; a mismatch is one line naming the first keys."""
    state = state_dict_from(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not fit the model: missing keys {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''} ({len(missing)}), unexpected keys "
            f"{unexpected[:3]}{' ...' if len(unexpected) > 3 else ''} ({len(unexpected)}); "
            "the model or its class count differs from the checkpoint's"
        )
    shapes = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if shapes:
        k = shapes[0]
        raise ValueError(
            f"{path}: {k} has shape {list(state[k].shape)}, the model expects "
            f"{list(own[k].shape)} ({len(shapes)} such keys)"
        )
    model.load_state_dict(state)
    return model
