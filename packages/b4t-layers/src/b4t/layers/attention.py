"""Multi-head self-attention on ``F.scaled_dot_product_attention`` with an eager path.

The fast path fuses Q, K and V into one Linear and calls SDPA with the additive mask
(plus any additive ``position_bias``, e.g. T5 buckets or ALiBi). The eager path computes
the scores explicitly; it runs when attention weights are asked for or when a subclass
says it needs it (``needs_eager``).

Extension hooks (override in a subclass, no edit here needed):

* ``transform_qk(q, k, **kwargs)`` - rotate or otherwise change q/k (rotary);
  applied on both paths before the KV cache is extended.
* ``needs_eager(**kwargs)`` - return True to force the eager path.
* ``attention_scores(q, k, **kwargs)`` - the raw ``[B, H, Q, K]`` scores before the mask
  (NEZHA / DeBERTa relative terms add to ``q @ k^T`` here).
* ``attention_context(probs, v, **kwargs)`` - ``[B, H, Q, D]`` from the probabilities
  (NEZHA's relative value term).

Every keyword passed to ``forward`` beyond the named ones reaches these hooks, so a
model computes its relative-position tables once and hands them to all layers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers.linear import Linear

__all__ = [
    "AttentionOutput",
    "MultiHeadAttention",
    "cached_length",
    "causal_bias",
    "extend_cache",
    "head_size",
]

# (context [B, L, H], attention probabilities [B, heads, Q, K] or None, (k, v) cache or None)
AttentionOutput = tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]


def cached_length(past_key_value: Any) -> int:
    """Positions a layer cache holds: its ``length`` (a layer cache object, which may be
    empty) or the keys' dim 2 of a ``(k, v)`` pair ``[B, N, past, D]``; 0 for None."""
    if past_key_value is None:
        return 0
    length = getattr(past_key_value, "length", None)
    return int(length) if length is not None else int(past_key_value[0].shape[2])


def extend_cache(
    past_key_value: Any, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values ``[B, N, past + new, D]``: the new ones appended to the cache.

    ``past_key_value`` is None (no cache), a ``(k, v)`` pair of ``[B, N, past, D]``
    tensors (concatenated), or a layer cache with ``update(k, v)`` that stores the new
    entries itself and returns the whole keys and values (b4t.models' ``KVCache``).
    """
    if past_key_value is None:
        return k, v
    if hasattr(past_key_value, "update"):
        return past_key_value.update(k, v)
    return (
        torch.cat([past_key_value[0], k], dim=2),
        torch.cat([past_key_value[1], v], dim=2),
    )


def causal_bias(
    q_len: int, k_len: int, dtype: torch.dtype, device: torch.device | str | None = None
) -> torch.Tensor:
    """Additive ``[Q, K]`` causal bias aligned bottom-right: query ``i`` is position
    ``k_len - q_len + i`` and sees keys up to it (the last ``q_len`` keys are the queries)."""
    keep = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
    return torch.zeros(q_len, k_len, dtype=dtype, device=device).masked_fill_(
        ~keep, torch.finfo(dtype).min
    )


def head_size(hidden_size: int, num_attention_heads: int, attention_head_size: int | None) -> int:
    """The per-head width ``D``: ``attention_head_size`` when given, else ``hidden_size //
    num_attention_heads`` (a ``ValueError`` when that does not divide)."""
    if attention_head_size is not None:
        return attention_head_size
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size {hidden_size} is not a multiple of "
            f"num_attention_heads {num_attention_heads}"
        )
    return hidden_size // num_attention_heads


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused ``qkv`` projection and an ``o`` output projection.

    Args:
        hidden_size: model width ``H``.
        num_attention_heads: heads ``N``.
        attention_head_size: per-head width ``D`` (default ``H // N``).
        dropout_rate: dropout on the attention probabilities.
        bias: biases on ``qkv``; ``out_bias`` on ``o``.
        scale: score scale, default ``1 / sqrt(D)`` (T5 uses 1.0).
        is_causal: apply a causal mask inside SDPA when no mask is given (with a KV
            cache the new queries see every cached key and each other causally).

    ``forward(hidden_states [B, L, H], attention_mask [B|1, 1, Q|1, K] additive float or
    None)`` -> ``(context [B, L, H], probs or None, (k, v) or None)``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        dropout_rate: float = 0.0,
        bias: bool = True,
        out_bias: bool | None = None,
        scale: float | None = None,
        is_causal: bool = False,
    ) -> None:
        super().__init__()
        attention_head_size = head_size(hidden_size, num_attention_heads, attention_head_size)
        self.num_heads = num_attention_heads
        self.head_size = attention_head_size
        self.inner_size = num_attention_heads * attention_head_size
        self.qkv = Linear(hidden_size, 3 * self.inner_size, bias=bias)
        self.o = Linear(self.inner_size, hidden_size, bias=bias if out_bias is None else out_bias)
        self.dropout_rate = dropout_rate
        self.scale = 1.0 / math.sqrt(attention_head_size) if scale is None else scale
        self.is_causal = is_causal

    # ---- hooks -------------------------------------------------------------------------
    def transform_qk(
        self, q: torch.Tensor, k: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook: change q ``[B, N, Q, D]`` and k ``[B, N, K, D]`` (default: unchanged)."""
        return q, k

    def needs_eager(self, **kwargs: Any) -> bool:
        """Hook: True forces the explicit-score path (default: only SDPA)."""
        return False

    def attention_scores(self, q: torch.Tensor, k: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Hook: raw scaled scores ``[B, N, Q, K]`` before mask and softmax."""
        return torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def attention_context(
        self, probs: torch.Tensor, v: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        """Hook: ``[B, N, Q, D]`` from probabilities ``[B, N, Q, K]`` and v ``[B, N, K, D]``."""
        return torch.matmul(probs, v)

    # ---- forward -----------------------------------------------------------------------
    def split_heads(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, L, H]`` -> q, k, v each ``[B, N, L, D]`` from one fused projection."""
        b, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(b, length, 3, self.num_heads, self.head_size)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> AttentionOutput:
        """``hidden_states [B, L, H]`` -> ``(out [B, L, H], probs [B, N, L, K] or None,
        (k, v) [B, N, K, D] or None)``; ``attention_mask`` additive ``[B|1, 1|N, L, K]``,
        ``position_bias`` added to the scores, ``past_key_value`` the cached ``(k, v)``
        of earlier positions (``K`` = past + ``L``); other keywords go to
        :meth:`transform_qk`."""
        b, length, _ = hidden_states.shape
        q, k, v = self.split_heads(hidden_states)
        q, k = self.transform_qk(q, k, past_key_value=past_key_value, **kwargs)
        k, v = extend_cache(past_key_value, k, v)
        present = (k, v) if use_cache else None
        bias = attention_mask
        if position_bias is not None:
            bias = position_bias if bias is None else bias + position_bias
        causal = self.is_causal and bias is None and length > 1
        if causal and k.shape[2] != length:  # new queries after a cache: bottom-right causal
            bias = causal_bias(length, k.shape[2], q.dtype, q.device)
            causal = False
        dropout_p = self.dropout_rate if self.training else 0.0
        probs: torch.Tensor | None = None
        if output_attentions or self.needs_eager(**kwargs):
            scores = self.attention_scores(q, k, **kwargs)
            if bias is not None:
                scores = scores + bias
            elif causal:
                scores = scores + causal_bias(length, k.shape[2], scores.dtype, scores.device)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            dropped = F.dropout(probs, dropout_p, True) if dropout_p else probs
            context = self.attention_context(dropped, v, **kwargs)
        else:
            if bias is not None and bias.dtype != q.dtype:
                bias = bias.to(q.dtype)
            context = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=bias,
                dropout_p=dropout_p,
                is_causal=causal,
                scale=self.scale,
            )
        context = context.transpose(1, 2).reshape(b, length, self.inner_size)
        return self.o(context), (probs if output_attentions else None), present
