"""The T5 block: RMS pre-norm self-attention (relative position bias, no score scaling),
optional cross-attention over the encoder output, and a plain or gated feed-forward.

``T5Block(...)(x, attention_bias, past_key_value=None, memory=None, memory_bias=None,
cross_kv=None)`` -> ``(x, cross_kv)``. The model computes the relative position bias
once (:class:`b4t.layers.T5RelativePositionBias`) and passes it, plus any padding or
causal mask, as one additive ``attention_bias``. ``cross_kv`` (the encoder output's
keys and values) is computed at the first decoding step and reused from the cache.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers.attention import MultiHeadAttention
from b4t.layers.feed_forward import PositionWiseFeedForward
from b4t.layers.linear import Linear
from b4t.layers.norms import LayerNorm

__all__ = ["CrossAttention", "DecoderBlock", "T5Block"]

KV = tuple[torch.Tensor, torch.Tensor]


def _rms(hidden_size: int, eps: float) -> LayerNorm:
    return LayerNorm(hidden_size, eps, bias=False, norm_mode="rmsnorm")


class CrossAttention(nn.Module):
    """Attention from decoder queries to a memory: ``q`` from ``x``, fused ``kv`` from memory.

    Args:
        hidden_size: width ``H`` of both inputs; ``num_attention_heads`` ``N``;
        attention_head_size: ``D`` (default ``H // N``); bias: on all projections;
        scale: score scale (T5: 1.0; default ``1 / sqrt(D)``); dropout_rate: on probabilities.

    ``forward(x [B, Q, H], memory [B, K, H] | None, bias [B|1, 1|N, Q|1, K] | None,
    kv=None)`` -> ``(out [B, Q, H], (k, v))``; pass ``kv`` to skip the memory projection.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        bias: bool = True,
        scale: float | None = None,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_attention_heads
        self.head_size = attention_head_size or hidden_size // num_attention_heads
        inner = self.num_heads * self.head_size
        self.q = Linear(hidden_size, inner, bias=bias)
        self.kv = Linear(hidden_size, 2 * inner, bias=bias)
        self.o = Linear(inner, hidden_size, bias=bias)
        self.scale = self.head_size**-0.5 if scale is None else scale
        self.dropout_rate = dropout_rate

    def memory_kv(self, memory: torch.Tensor) -> KV:
        """Keys and values ``[B, N, K, D]`` of the memory."""
        b, length, _ = memory.shape
        kv = self.kv(memory).view(b, length, 2, self.num_heads, self.head_size)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        bias: torch.Tensor | None = None,
        kv: KV | None = None,
    ) -> tuple[torch.Tensor, KV]:
        """``x [B, Q, H]`` over ``memory [B, K, H]`` (or its cached ``kv``) -> ``(out, (k, v))``."""
        b, length, _ = x.shape
        if kv is None:
            if memory is None:
                raise ValueError("cross-attention needs the encoder output or its cached k/v")
            kv = self.memory_kv(memory)
        q = self.q(x).view(b, length, self.num_heads, self.head_size).transpose(1, 2)
        if bias is not None and bias.dtype != q.dtype:
            bias = bias.to(q.dtype)
        context = F.scaled_dot_product_attention(
            q,
            kv[0],
            kv[1],
            attn_mask=bias,
            dropout_p=self.dropout_rate if self.training else 0.0,
            scale=self.scale,
        )
        context = context.transpose(1, 2).reshape(b, length, self.num_heads * self.head_size)
        return self.o(context), kv


class _ResidualCrossBlock(nn.Module):
    """The sublayers of :class:`T5Block` and :class:`DecoderBlock` in order: self-attention,
    cross-attention (where the block has one and a memory or its cached keys/values are
    given), feed-forward; each one's residual pre-norm (``pre_norm``: ``x + drop(f(norm(x)))``)
    or post-norm (``norm(x + drop(f(x)))``). Subclasses build ``norm1``, ``attention``,
    ``norm_cross``, ``cross`` (None: no cross-attention), ``norm2``, ``ffn``.

    ``forward(x [B, T, H], attention_bias, past_key_value=None, memory [B, S, H]=None,
    memory_bias=None, cross_kv=None)`` -> ``(x [B, T, H], cross_kv)``.
    """

    pre_norm: bool
    dropout_rate: float
    cross: CrossAttention | None

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout_rate, True) if self.training and self.dropout_rate else x

    def _input(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """What a sublayer reads: the normed ``x`` (pre-norm) or ``x`` itself."""
        return norm(x) if self.pre_norm else x

    def _add(self, x: torch.Tensor, out: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """The residual sum of ``x`` and a sublayer's ``out``, normed after (post-norm)."""
        x = x + self._drop(out)
        return x if self.pre_norm else norm(x)

    def forward(
        self,
        x: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        past_key_value: Any = None,
        memory: torch.Tensor | None = None,
        memory_bias: torch.Tensor | None = None,
        cross_kv: KV | None = None,
    ) -> tuple[torch.Tensor, KV | None]:
        """The sublayers in order (see the class docstring) -> ``(x [B, T, H], cross_kv)``."""
        attn = self.attention(
            self._input(x, self.norm1), attention_bias, past_key_value=past_key_value
        )[0]
        x = self._add(x, attn, self.norm1)
        if self.cross is not None and (memory is not None or cross_kv is not None):
            query = self._input(x, self.norm_cross)
            out, cross_kv = self.cross(query, memory, memory_bias, cross_kv)
            x = self._add(x, out, self.norm_cross)
        x = self._add(x, self.ffn(self._input(x, self.norm2)), self.norm2)
        return x, cross_kv


class T5Block(_ResidualCrossBlock):
    """One T5 layer (encoder, or decoder with ``is_decoder=True``).

    ``x += attn(rms1(x)); [x += cross(rms_cross(x), memory)]; x += ffn(rms2(x))``, every
    projection without bias, attention scores unscaled. Parameter names: ``norm1``,
    ``attention`` (``qkv``, ``o``), ``norm_cross``, ``cross`` (``q``, ``kv``, ``o``),
    ``norm2``, ``ffn`` (``intermediate``, ``gate`` when gated, ``output``).
    """

    pre_norm = True

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        intermediate_size: int,
        hidden_act: str = "relu",
        is_gated: bool = False,
        attention_head_size: int | None = None,
        layer_norm_eps: float = 1e-6,
        dropout_rate: float = 0.1,
        is_decoder: bool = False,
    ) -> None:
        super().__init__()
        self.dropout_rate = dropout_rate
        self.norm1 = _rms(hidden_size, layer_norm_eps)
        self.attention = MultiHeadAttention(
            hidden_size,
            num_attention_heads,
            attention_head_size=attention_head_size,
            dropout_rate=dropout_rate,
            bias=False,
            scale=1.0,
        )
        self.is_decoder = is_decoder
        self.norm_cross = _rms(hidden_size, layer_norm_eps) if is_decoder else None
        self.cross = (
            CrossAttention(
                hidden_size,
                num_attention_heads,
                attention_head_size,
                bias=False,
                scale=1.0,
                dropout_rate=dropout_rate,
            )
            if is_decoder
            else None
        )
        self.norm2 = _rms(hidden_size, layer_norm_eps)
        self.ffn = PositionWiseFeedForward(
            hidden_size, intermediate_size, hidden_act=hidden_act, is_gated=is_gated, bias=False
        )


class DecoderBlock(_ResidualCrossBlock):
    """A post-norm decoder layer with cross-attention (BART, the original Transformer).

    ``x = norm1(x + attn(x)); x = norm_cross(x + cross(x, memory)); x = norm2(x + ffn(x))``
    with biases everywhere; same call as :class:`T5Block`. Parameter names: ``attention``
    (``qkv``, ``o``), ``norm1``, ``cross`` (``q``, ``kv``, ``o``), ``norm_cross``, ``ffn``,
    ``norm2``.
    """

    pre_norm = False

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        intermediate_size: int,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-5,
        dropout_rate: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout_rate = dropout_rate
        self.attention = MultiHeadAttention(
            hidden_size, num_attention_heads, dropout_rate=attention_dropout, is_causal=True
        )
        self.norm1 = LayerNorm(hidden_size, layer_norm_eps)
        self.cross = CrossAttention(
            hidden_size, num_attention_heads, dropout_rate=attention_dropout
        )
        self.norm_cross = LayerNorm(hidden_size, layer_norm_eps)
        self.ffn = PositionWiseFeedForward(
            hidden_size,
            intermediate_size,
            dropout_rate=activation_dropout,
            hidden_act=hidden_act,
            is_dropout=activation_dropout > 0,
        )
        self.norm2 = LayerNorm(hidden_size, layer_norm_eps)
