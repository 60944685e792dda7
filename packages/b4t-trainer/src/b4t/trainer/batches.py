"""How the trainer reads a batch: ``(X, y)`` pairs, the device, the batch size, the
forward's argument rule, and logged values as plain numbers."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (nested lists/tuples/dicts) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def split_batch(batch: Any, where: str, device: torch.device) -> tuple[Any, Any]:
    """``(X, y)`` of a loader's batch, on ``device``; a ``TypeError`` naming ``where``
    (the loader) when the batch is not a pair."""
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        got = (
            f"a {type(batch).__name__} of length {len(batch)}"
            if isinstance(batch, (list, tuple))
            else f"a {type(batch).__name__}"
        )
        raise TypeError(f"{where} must yield (X, y) pairs, got {got}")
    return to_device(batch[0], device), to_device(batch[1], device)


def log_value(name: str, value: Any) -> Any:
    """A logged value as a Python number (one-element tensors are unwrapped)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"logged value {name!r} must be a number or a one-element tensor, got a tensor "
                f"of shape {tuple(value.shape)}"
            )
        return value.item()
    return value


def _first_dim(obj: Any) -> int | None:
    """Dim 0 of the first tensor in ``obj`` (nested lists/tuples/dicts), or None."""
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() > 0 else None
    if isinstance(obj, (list, tuple)) and obj:
        return _first_dim(obj[0])
    if isinstance(obj, Mapping) and obj:
        return _first_dim(next(iter(obj.values())))
    return None


def batch_size(X: Any, y: Any = None) -> int:
    """The number of samples in a batch: dim 0 of the first input tensor (as torch4keras
    0.0.4 takes it), else of the first target tensor, else 1."""
    size = _first_dim(X)
    if size is None:
        size = _first_dim(y)
    return 1 if size is None else size


def unpacks_lists(module: nn.Module) -> bool:
    """Whether a list/tuple input is spread over ``module.forward``'s arguments.

    torch4keras 0.0.4's rule: spread it when ``forward`` has two or more positional
    parameters (besides ``self``); pass it whole to a one-argument ``forward(self, inputs)``
    and to ``forward(self, *inputs)``.
    """
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: spread, the common case
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in params) >= 2


def loss_parts(raw: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """What the loss returned as ``(scalar loss, other parts to log)``: a tensor, a dict
    with a ``'loss'`` key, or a tuple whose first item is the loss (``loss1``, ... after)."""
    extras: dict[str, Any] = {}
    if isinstance(raw, torch.Tensor):
        loss = raw
    elif isinstance(raw, Mapping):
        if "loss" not in raw:
            raise ValueError(f"the loss returned a dict without a 'loss' key: {sorted(raw)}")
        loss = raw["loss"]
        extras = {k: v for k, v in raw.items() if k != "loss"}
    elif isinstance(raw, (list, tuple)):
        if not raw:
            raise ValueError("the loss returned an empty tuple")
        loss = raw[0]
        extras = {f"loss{i}": v for i, v in enumerate(raw[1:], start=1)}
    else:
        loss = raw
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the loss must be a tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(
            f"the loss must be a scalar tensor, got shape {tuple(loss.shape)}; "
            "reduce it (e.g. reduction='mean')"
        )
    return loss, extras
