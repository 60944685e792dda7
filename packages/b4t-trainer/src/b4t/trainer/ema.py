"""Exponential moving average of a model's trainable weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ExponentialMovingAverage:
    """Keep ``shadow = decay * shadow + (1 - decay) * weight`` for each trainable parameter.

    ``step()`` after each optimizer step; ``apply_ema_weights()`` swaps the
    averages into the model (for evaluation or saving), ``restore_raw_weights()``
    swaps the trained weights back.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.model = model
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: param.detach().clone()
            for name, param in model.named_parameters()
            if param.requires_grad
        }
        self.backup: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        """Fold the current weights into the averages."""
        for name, param in self.model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def apply_ema_weights(self) -> None:
        """Copy the averages into the model, keeping the raw weights aside."""
        if self.backup:
            raise RuntimeError("EMA weights are already applied; call restore_raw_weights first")
        for name, param in self.model.named_parameters():
            if name in self.shadow:
                self.backup[name] = param.detach().clone()
                param.copy_(self.shadow[name])

    @torch.no_grad()
    def restore_raw_weights(self) -> None:
        """Put back the weights saved by :meth:`apply_ema_weights`."""
        for name, param in self.model.named_parameters():
            if name in self.backup:
                param.copy_(self.backup[name])
        self.backup = {}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": dict(self.shadow), "backup": dict(self.backup)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks parameters: {sorted(missing)}")
        self.decay = state["decay"]
        for name, value in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name].copy_(value)
        self.backup = {k: v.clone() for k, v in state.get("backup", {}).items()}


def extend_with_exponential_moving_average(
    model: nn.Module, decay: float = 0.999
) -> ExponentialMovingAverage:
    """bert4torch's helper: an :class:`ExponentialMovingAverage` of ``model``."""
    return ExponentialMovingAverage(model, decay)
