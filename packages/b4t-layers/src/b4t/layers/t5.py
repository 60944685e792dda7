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


class T5Block(nn.Module):
    """One T5 layer (encoder, or decoder with ``is_decoder=True``).

    ``x += attn(rms1(x)); [x += cross(rms_cross(x), memory)]; x += ffn(rms2(x))``, every
    projection without bias, attention scores unscaled. Parameter names: ``norm1``,
    ``attention`` (``qkv``, ``o``), ``norm_cross``, ``cross`` (``q``, ``kv``, ``o``),
    ``norm2``, ``ffn`` (``intermediate``, ``gate`` when gated, ``output``).
    """

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
        if is_decoder:
            self.norm_cross = _rms(hidden_size, layer_norm_eps)
            self.cross = CrossAttention(
                hidden_size,
                num_attention_heads,
                attention_head_size,
                bias=False,
                scale=1.0,
                dropout_rate=dropout_rate,
            )
        self.norm2 = _rms(hidden_size, layer_norm_eps)
        self.ffn = PositionWiseFeedForward(
            hidden_size, intermediate_size, hidden_act=hidden_act, is_gated=is_gated, bias=False
        )

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout_rate, True) if self.training and self.dropout_rate else x

    def forward(
        self,
        x: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        past_key_value: Any = None,
        memory: torch.Tensor | None = None,
        memory_bias: torch.Tensor | None = None,
        cross_kv: KV | None = None,
    ) -> tuple[torch.Tensor, KV | None]:
        attn = self.attention(self.norm1(x), attention_bias, past_key_value=past_key_value)[0]
        x = x + self._drop(attn)
        if self.is_decoder and (memory is not None or cross_kv is not None):
            out, cross_kv = self.cross(self.norm_cross(x), memory, memory_bias, cross_kv)
            x = x + self._drop(out)
        x = x + self._drop(self.ffn(self.norm2(x)))
        return x, cross_kv


class DecoderBlock(nn.Module):
    """A post-norm decoder layer with cross-attention (BART, the original Transformer).

    ``x = norm1(x + attn(x)); x = norm_cross(x + cross(x, memory)); x = norm2(x + ffn(x))``
    with biases everywhere; same call as :class:`T5Block`. Parameter names: ``attention``
    (``qkv``, ``o``), ``norm1``, ``cross`` (``q``, ``kv``, ``o``), ``norm_cross``, ``ffn``,
    ``norm2``.
    """

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

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout_rate, True) if self.training and self.dropout_rate else x

    def forward(
        self,
        x: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        past_key_value: Any = None,
        memory: torch.Tensor | None = None,
        memory_bias: torch.Tensor | None = None,
        cross_kv: KV | None = None,
    ) -> tuple[torch.Tensor, KV | None]:
        attn = self.attention(x, attention_bias, past_key_value=past_key_value)[0]
        x = self.norm1(x + self._drop(attn))
        if memory is not None or cross_kv is not None:
            out, cross_kv = self.cross(x, memory, memory_bias, cross_kv)
            x = self.norm_cross(x + self._drop(out))
        x = self.norm2(x + self._drop(self.ffn(x)))
        return x, cross_kv
