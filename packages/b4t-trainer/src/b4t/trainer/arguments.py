"""Checks of ``Trainer.compile`` / ``Trainer.fit`` arguments: each returns the value the
trainer keeps, or raises an error naming the argument."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import torch


def count(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError/TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return int(value)


def schedulers(scheduler: Any) -> list[Any]:
    """``compile(scheduler=...)`` (none, one, or a list/tuple) as a list of schedulers."""
    if scheduler is None:
        found = []
    elif isinstance(scheduler, (list, tuple)):
        found = list(scheduler)
    else:
        found = [scheduler]
    for sched in found:
        if not hasattr(sched, "step") or not hasattr(sched, "state_dict"):
            raise TypeError(f"scheduler {sched!r} has no step()/state_dict()")
    return found


def accumulation_steps(value: Any) -> int:
    """``grad_accumulation_steps``: an int >= 1."""
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"grad_accumulation_steps must be an int >= 1, got {value!r}")
    return value


def clip_norm(value: Any) -> float | None:
    """``clip_grad_norm``: ``None`` or a finite number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"clip_grad_norm must be a number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"clip_grad_norm must be a finite number > 0, got {value}")
    return value


def amp_precision(use_amp: bool, mixed_precision: str | None, device: torch.device) -> str | None:
    """The ``mixed_precision`` in force once ``use_amp`` is taken into account.

    ``use_amp=True`` is fp16 autocast on CUDA; off CUDA it does nothing (as 0.2.5's
    ``torch.cuda.amp``), with a warning. It cannot be combined with another
    ``mixed_precision``.
    """
    if not use_amp:
        return mixed_precision
    if mixed_precision not in (None, "fp16"):
        raise ValueError(
            f"use_amp=True is fp16 autocast; it cannot be combined with "
            f"mixed_precision={mixed_precision!r}"
        )
    if device.type == "cuda":
        return "fp16"
    warnings.warn(
        f"use_amp=True does nothing on {device} (0.2.5's torch.cuda.amp "
        "disables itself off CUDA): training runs in full precision; pass "
        "mixed_precision='bf16' for CPU autocast",
        stacklevel=4,
    )
    return mixed_precision


def steps_per_epoch(train_dataloader: Any, value: Any) -> int:
    """``fit(steps_per_epoch=...)``; ``None`` is the loader's ``len()`` (one pass)."""
    if value is None:
        try:
            value = len(train_dataloader)
        except TypeError:
            raise TypeError("train_dataloader has no len(); pass steps_per_epoch") from None
        if value < 1:
            raise ValueError("train_dataloader is empty (len() == 0)")
    return count("steps_per_epoch", value)
