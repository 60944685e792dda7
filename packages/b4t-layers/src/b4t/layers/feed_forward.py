"""Position-wise feed-forward networks: plain (BERT) and gated (T5.1.1 / LLaMA)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from b4t.layers.activations import get_activation

__all__ = ["PositionWiseFeedForward"]


class PositionWiseFeedForward(nn.Module):
    """``output(act(intermediate(x)))``, or gated ``output(act(intermediate(x)) * gate(x))``.

    Args:
        hidden_size: model width ``H``.
        intermediate_size: inner width ``I``.
        hidden_act: activation name (see ``b4t.layers.activations``) or callable.
        dropout_rate: dropout on the inner activation (0 for BERT, which drops after output).
        is_gated: add the ``gate`` projection (GLU variants).
        bias: biases on the projections.

    Input ``[B, L, H]`` -> ``[B, L, H]``.
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        hidden_act: str | Callable = "gelu",
        dropout_rate: float = 0.0,
        is_gated: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.intermediate = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=bias) if is_gated else None
        self.output = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.act = get_activation(hidden_act)
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.intermediate(x))
        if self.gate is not None:
            h = h * self.gate(x)
        if self.dropout is not None:
            h = self.dropout(h)
        return self.output(h)
