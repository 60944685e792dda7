"""Exponential moving average of a model's trainable weights, and the :class:`EMA` callback
that keeps one during ``fit``."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import torch
from torch import nn

from b4t.trainer.callback import Callback, Logs


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
        """``{'decay', 'shadow', 'backup'}``: the averages and the weights swapped out."""
        return {"decay": self.decay, "shadow": dict(self.shadow), "backup": dict(self.backup)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (every averaged name must be there)."""
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


class EMA(Callback):
    """Keep an :class:`ExponentialMovingAverage` of the weights, stepped after each optimizer step.

    ``self.ema.apply_ema_weights()`` / ``restore_raw_weights()`` swap the
    averages in and out (e.g. inside an Evaluator); ``apply_at_end=True``
    leaves the averaged weights in the model when training ends.
    """

    def __init__(self, decay: float = 0.999, apply_at_end: bool = False) -> None:
        self.decay = decay
        self.apply_at_end = apply_at_end
        self.ema: ExponentialMovingAverage | None = None

    def set_trainer(self, trainer: Any) -> None:
        super().set_trainer(trainer)
        if self.ema is None or self.ema.model is not trainer.module:
            self.ema = ExponentialMovingAverage(trainer.module, self.decay)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if (global_step + 1) % self.trainer.grad_accumulation_steps == 0:
            assert self.ema is not None
            self.ema.step()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.apply_at_end and self.ema is not None:
            self.ema.apply_ema_weights()

    def state_dict(self) -> dict[str, Any]:
        """The averager's state (empty before training starts)."""
        return self.ema.state_dict() if self.ema is not None else {}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        """Restore the averager's state from a resume checkpoint."""
        if state and self.ema is not None:
            self.ema.load_state_dict(state)
