"""The transformer block: attention + feed-forward with residuals, post- or pre-norm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers.attention import MultiHeadAttention
from b4t.layers.feed_forward import PositionWiseFeedForward
from b4t.layers.norms import LayerNorm

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """One encoder layer.

    Post-norm (BERT): ``x = norm1(x + drop(attn(x))); x = norm2(x + drop(ffn(x)))``.
    Pre-norm (GPT-2, T5, LLaMA): ``x = x + drop(attn(norm1(x))); x = x + drop(ffn(norm2(x)))``.

    Args:
        hidden_size: model width ``H``.
        num_attention_heads: number of heads ``N``.
        intermediate_size: feed-forward inner width.
        hidden_act: feed-forward activation (a name or a callable).
        dropout_rate: residual dropout.
        attention_dropout: dropout on the attention probabilities.
        layer_norm_eps: epsilon of the two norms.
        pre_norm: pre-norm ordering.
        is_gated: gated feed-forward (GLU variants).
        bias: biases in the feed-forward and the attention projections.
        norm_mode: ``'normal'`` or ``'rmsnorm'``, for the two norms.
        norm_bias: a learned bias in the two norms.
        attention_head_size: per-head width if not ``H // N``.
        attention_cls: the attention class (a :class:`MultiHeadAttention` subclass with
            extra hooks, e.g. relative positions); ``attention_kwargs`` go to it.
        conditional_size: conditional LayerNorm input size (``forward(..., cond=...)``).

    ``forward(x [B, L, H], attention_mask, **kwargs)`` ->
    ``(x [B, L, H], probs or None, (k, v) or None)``; kwargs reach the attention hooks.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        intermediate_size: int,
        hidden_act: str | Callable = "gelu",
        dropout_rate: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pre_norm: bool = False,
        is_gated: bool = False,
        bias: bool = True,
        norm_mode: str = "normal",
        norm_bias: bool = True,
        attention_head_size: int | None = None,
        attention_cls: type[MultiHeadAttention] = MultiHeadAttention,
        attention_kwargs: dict[str, Any] | None = None,
        conditional_size: int | None = None,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.dropout_rate = dropout_rate
        self.attention = attention_cls(
            hidden_size,
            num_attention_heads,
            attention_head_size=attention_head_size,
            dropout_rate=attention_dropout,
            bias=bias,
            **(attention_kwargs or {}),
        )
        self.norm1 = LayerNorm(
            hidden_size, layer_norm_eps, conditional_size, bias=norm_bias, norm_mode=norm_mode
        )
        self.ffn = PositionWiseFeedForward(
            hidden_size, intermediate_size, hidden_act=hidden_act, is_gated=is_gated, bias=bias
        )
        self.norm2 = LayerNorm(
            hidden_size, layer_norm_eps, conditional_size, bias=norm_bias, norm_mode=norm_mode
        )

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_rate:
            return F.dropout(x, self.dropout_rate, True)
        return x

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        """Run the layer: ``x [B, L, H]`` -> ``(x [B, L, H], probs or None, (k, v) or None)``.

        ``attention_mask`` goes to the attention as it is; ``cond`` ``[B, C]`` or ``[B, L, C]``
        feeds the conditional norms; ``kwargs`` reach the attention's hooks (cache, positions).
        """
        if self.pre_norm:
            attn, probs, present = self.attention(self.norm1(x, cond), attention_mask, **kwargs)
            x = x + self._drop(attn)
            x = x + self._drop(self.ffn(self.norm2(x, cond)))
        else:
            attn, probs, present = self.attention(x, attention_mask, **kwargs)
            x = self.norm1(x + self._drop(attn), cond)
            x = self.norm2(x + self._drop(self.ffn(x)), cond)
        return x, probs, present
