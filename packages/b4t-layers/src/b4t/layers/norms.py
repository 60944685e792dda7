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
        """Normalise ``x [..., hidden_size]`` by its root mean square -> same shape."""
        if x.dtype == torch.float32:  # one op, the same float32 arithmetic
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        variance = x.float().pow(2).mean(-1, keepdim=True)
        out = x.float() * torch.rsqrt(variance + self.eps)
        return self.weight * out.to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with bert4torch's options and argument order.

    Args:
        hidden_size: last dimension of the input.
        eps: added to the variance.
        conditional_size: if set (an int > 0), the norm is conditional: the forward takes
            ``cond`` (``[B, conditional_size]`` or ``[B, L, conditional_size]``) and adds
            ``cond @ W1`` to the gain and ``cond @ W2`` to the bias (``dense1`` / ``dense2``,
            zero-initialised, so an untrained conditional norm equals the plain one).
        weight: with ``False`` there is no learned gain (RoFormer-v2).
        bias: with ``False`` there is no learned bias (T5).
        norm_mode: ``'normal'`` (mean and variance) or ``'rmsnorm'`` (no centring).
        **kwargs: ignored, as in bert4torch, so a layer can pass its config through.

    ``forward(x)``, ``forward(x, cond)`` or bert4torch's ``forward((x, cond))``:
    ``x [..., hidden_size]`` -> same shape.
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-12,
        conditional_size: int | bool | None = False,
        weight: bool = True,
        bias: bool = True,
        norm_mode: str = "normal",
        **kwargs: object,
    ) -> None:
        super().__init__()
        if norm_mode not in ("normal", "rmsnorm"):
            raise ValueError(f"norm_mode must be 'normal' or 'rmsnorm', got {norm_mode!r}")
        self.hidden_size = hidden_size
        self.eps = eps
        self.norm_mode = norm_mode
        self.weight = nn.Parameter(torch.ones(hidden_size)) if weight else None
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.conditional_size = int(conditional_size) if conditional_size else None
        if self.conditional_size:
            self.dense1 = nn.Linear(self.conditional_size, hidden_size, bias=False)
            self.dense2 = nn.Linear(self.conditional_size, hidden_size, bias=False)
            nn.init.zeros_(self.dense1.weight)
            nn.init.zeros_(self.dense2.weight)
            # tells model initialisers (b4t.models) to keep these at zero
            self.dense1.zero_init = True
            self.dense2.zero_init = True

    def forward(
        self, x: torch.Tensor | tuple | list, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalise ``x [..., hidden_size]`` -> same shape.

        ``cond`` ``[B, conditional_size]`` or ``[B, L, conditional_size]`` (or bert4torch's
        ``x = (x, cond)``) shifts the gain and bias of a conditional norm.
        """
        if isinstance(x, (tuple, list)):  # bert4torch passes (x, cond) as one argument
            if not 1 <= len(x) <= 2:
                raise ValueError(f"LayerNorm takes (x, cond) as a pair, got {len(x)} items")
            if len(x) == 2 and cond is None:
                cond = x[1]
            x = x[0]
        if cond is None and self.norm_mode == "normal":
            return F.layer_norm(x, (self.hidden_size,), self.weight, self.bias, self.eps)
        if self.norm_mode == "rmsnorm" and cond is None and x.dtype == torch.float32:
            # one op for the formula below (the same float32 arithmetic, in its order)
            out = F.rms_norm(x, (self.hidden_size,), self.weight, self.eps)
            return out if self.bias is None else out + self.bias
        if self.norm_mode == "rmsnorm":
            variance = x.float().pow(2).mean(-1, keepdim=True)
            normed = (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)
        else:
            normed = F.layer_norm(x, (self.hidden_size,), None, None, self.eps)
        weight = self.weight
        bias = self.bias
        if cond is not None:
            if not self.conditional_size:
                raise ValueError(
                    "a cond tensor was given to a LayerNorm built without conditional_size"
                )
            if cond.size(-1) != self.conditional_size:
                raise ValueError(
                    f"LayerNorm cond must end in conditional_size={self.conditional_size}, "
                    f"got shape {tuple(cond.shape)}"
                )
            while cond.dim() < x.dim():
                cond = cond.unsqueeze(1)
            weight = self.dense1(cond) if weight is None else weight + self.dense1(cond)
            bias = self.dense2(cond) if bias is None else bias + self.dense2(cond)
        out = normed if weight is None else normed * weight
        return out if bias is None else out + bias
