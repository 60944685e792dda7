"""Position-wise feed-forward networks: plain (BERT) and gated (T5.1.1 / LLaMA)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from b4t.layers.activations import get_activation
from b4t.layers.linear import Linear

__all__ = ["PositionWiseFeedForward"]

# bert4torch 0.2.5's parameter names -> b4t's, so its state dicts load unchanged
_SEED_NAMES = {
    "intermediateDense.": "intermediate.",
    "intermediateDense1.": "gate.",
    "outputDense.": "output.",
}


def _rename_seed_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        for old, new in _SEED_NAMES.items():
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
                break


class PositionWiseFeedForward(nn.Module):
    """``output(act(intermediate(x)))``, or gated ``output(act(intermediate(x)) * gate(x))``.

    The positional order is bert4torch's.

    Args:
        hidden_size: model width ``H``.
        intermediate_size: inner width ``I``.
        dropout_rate: dropout on the inner activation, applied only with ``is_dropout``.
        hidden_act: activation name (see ``b4t.layers.activations``) or callable.
        is_dropout: apply ``dropout_rate`` after the activation (BERT does not).
        bias: biases on the projections.
        is_gated: add the ``gate`` projection (GLU variants: T5.1.1, LLaMA).
        **kwargs: ignored, as in bert4torch, so a layer can pass its config through.

    bert4torch's parameter names (``intermediateDense``, ``intermediateDense1``,
    ``outputDense``) load into ``intermediate``, ``gate`` and ``output``.

    Input ``[B, L, H]`` -> ``[B, L, H]``.
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        dropout_rate: float = 0.5,
        hidden_act: str | Callable = "gelu",
        is_dropout: bool = False,
        bias: bool = True,
        is_gated: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(dropout_rate, str) or callable(dropout_rate):
            raise TypeError(
                "PositionWiseFeedForward's third argument is dropout_rate (bert4torch's order: "
                "hidden_size, intermediate_size, dropout_rate, hidden_act, ...); got "
                f"{dropout_rate!r}: pass the activation as hidden_act="
            )
        self.intermediate = Linear(hidden_size, intermediate_size, bias=bias)
        self.gate = Linear(hidden_size, intermediate_size, bias=bias) if is_gated else None
        self.output = Linear(intermediate_size, hidden_size, bias=bias)
        self.act = get_activation(hidden_act)
        self.is_dropout = is_dropout
        self.dropout = nn.Dropout(dropout_rate) if is_dropout and dropout_rate else None
        self.register_load_state_dict_pre_hook(_rename_seed_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward to each position: ``x [..., H]`` -> ``[..., H]``."""
        h = self.act(self.intermediate(x))
        if self.gate is not None:
            h = h * self.gate(x)
        if self.dropout is not None:
            h = self.dropout(h)
        return self.output(h)
