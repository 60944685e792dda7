"""Learning-rate schedules with warmup, as ``LambdaLR`` schedulers.

Each factor multiplies the optimizer's initial learning rate; ``step`` counts
optimizer steps (the trainer steps schedulers once per optimizer step).
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _check(num_warmup_steps: int, num_training_steps: int | None = None) -> None:
    if num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
    if num_training_steps is not None and num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be > 0, got {num_training_steps}")


def _linear(step: int, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    remaining = num_training_steps - step
    return max(0.0, remaining / max(1, num_training_steps - num_warmup_steps))


def _cosine(step: int, num_warmup_steps: int, num_training_steps: int, num_cycles: float) -> float:
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress)))


def _constant(step: int, num_warmup_steps: int) -> float:
    return min(1.0, step / max(1, num_warmup_steps)) if num_warmup_steps else 1.0


def get_linear_schedule_with_warmup(
    optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int, last_epoch: int = -1
) -> LambdaLR:
    """Rise linearly from 0 over ``num_warmup_steps``, then fall linearly to 0."""
    _check(num_warmup_steps, num_training_steps)
    fn = partial(_linear, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    return LambdaLR(optimizer, fn, last_epoch)


def get_cosine_schedule_with_warmup(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Linear warmup, then a cosine decay (``num_cycles=0.5``: one half-wave down to 0)."""
    _check(num_warmup_steps, num_training_steps)
    fn = partial(
        _cosine,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )
    return LambdaLR(optimizer, fn, last_epoch)


def get_constant_schedule_with_warmup(
    optimizer: Optimizer, num_warmup_steps: int, last_epoch: int = -1
) -> LambdaLR:
    """Linear warmup, then the constant initial learning rate."""
    _check(num_warmup_steps)
    return LambdaLR(optimizer, partial(_constant, num_warmup_steps=num_warmup_steps), last_epoch)
