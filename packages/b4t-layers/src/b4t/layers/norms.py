"""Normalisation layers: LayerNorm (optionally conditional, bias-free or RMS) and RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm", "RMSNorm"]


class RMSNorm(nn.Module):
    """Root-mean-square norm (T5 / LLaMA): ``x / rms(x) * weight``, no centring, no bias.

    Input ``[..., hidden_size]`` -> same shape. Computed in float32, cast back.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        out = x.float() * torch.rsqrt(variance + self.eps)
        return self.weight * out.to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with the bert4torch options.

    Args:
        hidden_size: last dimension of the input.
        eps: added to the variance.
        conditional_size: if set, ``forward(x, cond)`` adds ``cond @ W`` to the
            gain and bias (conditional LayerNorm, cond ``[B, conditional_size]`` or
            ``[B, L, conditional_size]``); the extra projections start at zero, so an
            untrained conditional norm equals the plain one.
        bias: with ``False`` there is no learned bias.
        norm_mode: ``'normal'`` (mean and variance) or ``'rmsnorm'`` (no centring).

    Input ``[..., hidden_size]`` -> same shape.
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-12,
        conditional_size: int | None = None,
        bias: bool = True,
        norm_mode: str = "normal",
    ) -> None:
        super().__init__()
        if norm_mode not in ("normal", "rmsnorm"):
            raise ValueError(f"norm_mode must be 'normal' or 'rmsnorm', got {norm_mode!r}")
        self.hidden_size = hidden_size
        self.eps = eps
        self.norm_mode = norm_mode
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.conditional_size = conditional_size
        if conditional_size:
            self.dense1 = nn.Linear(conditional_size, hidden_size, bias=False)
            self.dense2 = nn.Linear(conditional_size, hidden_size, bias=False)
            nn.init.zeros_(self.dense1.weight)
            nn.init.zeros_(self.dense2.weight)
            # tells model initialisers (b4t.models) to keep these at zero
            self.dense1.zero_init = True
            self.dense2.zero_init = True

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None and self.norm_mode == "normal":
            return F.layer_norm(x, (self.hidden_size,), self.weight, self.bias, self.eps)
        if self.norm_mode == "rmsnorm":
            variance = x.float().pow(2).mean(-1, keepdim=True)
            normed = (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)
        else:
            normed = F.layer_norm(x, (self.hidden_size,), None, None, self.eps)
        weight: torch.Tensor = self.weight
        bias = self.bias
        if cond is not None:
            if not self.conditional_size:
                raise ValueError(
                    "a cond tensor was given to a LayerNorm built without conditional_size"
                )
            if cond.dim() == 2:
                cond = cond.unsqueeze(1)
            while cond.dim() < x.dim():
                cond = cond.unsqueeze(1)
            weight = weight + self.dense1(cond)
            bias = (bias if bias is not None else 0) + self.dense2(cond)
        out = normed * weight
        return out + bias if bias is not None else out
