"""``Precision``: autocast, the fp16 ``GradScaler``, and the optimizer step with clipping.

- ``None``: full precision, plain backward and step.
- ``'bf16'``: ``torch.autocast(device_type, torch.bfloat16)``, on CPU or CUDA;
  bf16 has fp32's range, so no loss scaling.
- ``'fp16'``: CUDA only: ``torch.autocast(..., torch.float16)`` plus a
  ``GradScaler`` (gradients are unscaled before clipping; steps with inf/NaN
  gradients are skipped by the scaler).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

MODES = (None, "fp16", "bf16")


class Precision:
    """The mixed-precision policy of one training run on ``device``."""

    def __init__(self, mode: str | None, device: torch.device) -> None:
        if mode not in MODES:
            raise ValueError(f"mixed_precision must be None, 'fp16' or 'bf16', got {mode!r}")
        if mode == "fp16" and device.type != "cuda":
            raise ValueError(
                "mixed_precision='fp16' needs the model on a CUDA device (it uses a "
                f"GradScaler); the model is on {device}. Use mixed_precision='bf16' on CPU"
            )
        self.mode = mode
        self.device_type = device.type
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode or "")
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context (a no-op in full precision)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, through the scaler under fp16."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[nn.Parameter],
        clip_grad_norm: float | None,
    ) -> None:
        """Clip (on unscaled gradients) and step the optimizer."""
        if self.scaler is not None:
            if clip_grad_norm is not None:
                self.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state (``None`` without a scaler)."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if state is not None and self.scaler is not None:
            self.scaler.load_state_dict(dict(state))
