"""Grouped-query attention with half-split rotary positions (LLaMA and its kin).

``N`` query heads share ``N_kv`` key/value heads (``N % N_kv == 0``; ``N_kv == N`` is
plain multi-head attention, ``N_kv == 1`` multi-query). Queries and keys are rotated
with the *half-split* RoPE layout of LLaMA / GPT-NeoX (feature ``i`` pairs with
``i + D/2``), not the interleaved RoFormer one of :mod:`b4t.layers.rotary`.

The model computes the rotary tables once per forward with :func:`rope_cos_sin` and
hands them to every layer as ``rotary_cos_sin=(cos, sin)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers.attention import AttentionOutput, causal_bias, extend_cache, head_size
from b4t.layers.linear import Linear

__all__ = ["GroupedQueryAttention", "apply_rope_half", "rope_cos_sin", "rotate_half"]


def rope_cos_sin(
    positions: torch.Tensor, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-split RoPE tables for integer ``positions [B, L]`` -> cos, sin ``[B, L, dim]``.

    Angle of feature ``j`` at position ``p``: ``p * base ** (-2 (j mod dim/2) / dim)``,
    computed in float32 as transformers' LLaMA does.
    """
    if dim % 2:
        raise ValueError(f"rotary dim must be even, got {dim}")
    inv_freq = 1.0 / (
        base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim)
    )
    freqs = positions.float()[..., None] * inv_freq  # [B, L, dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis (halves, not pairs)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, N, L, D]`` by tables ``[B, L, D]``."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``num_key_value_heads`` shared key/value heads.

    Args:
        hidden_size: model width ``H``.
        num_attention_heads: query heads ``N``.
        attention_head_size: per-head width ``D`` (default ``H // N``).
        dropout_rate: dropout on the attention probabilities.
        bias: biases on the fused ``qkv`` projection; ``out_bias`` on ``o`` (default: same).
        num_key_value_heads: ``N_kv`` (default ``N``).
        is_causal: causal masking when no mask is given.

    Parameters: ``qkv`` (``[(N + 2 N_kv) D, H]``, rows q then k then v) and ``o``.

    ``forward(hidden_states [B, L, H], attention_mask [B|1, 1, L, K] additive or None,
    past_key_value=None, use_cache=False, output_attentions=False, rotary_cos_sin=None)``
    -> ``(out [B, L, H], probs [B, N, L, K] or None, (k, v) or None)``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        dropout_rate: float = 0.0,
        bias: bool = False,
        out_bias: bool | None = None,
        num_key_value_heads: int | None = None,
        is_causal: bool = True,
    ) -> None:
        super().__init__()
        kv_heads = num_key_value_heads or num_attention_heads
        if num_attention_heads % kv_heads:
            raise ValueError(
                f"num_attention_heads {num_attention_heads} is not a multiple of "
                f"num_key_value_heads {kv_heads}"
            )
        attention_head_size = head_size(hidden_size, num_attention_heads, attention_head_size)
        self.num_heads = num_attention_heads
        self.num_kv_heads = kv_heads
        self.head_size = attention_head_size
        self.q_size = num_attention_heads * attention_head_size
        self.kv_size = kv_heads * attention_head_size
        self.qkv = Linear(hidden_size, self.q_size + 2 * self.kv_size, bias=bias)
        self.o = Linear(self.q_size, hidden_size, bias=bias if out_bias is None else out_bias)
        self.dropout_rate = dropout_rate
        self.scale = attention_head_size**-0.5
        self.is_causal = is_causal

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_value: Any = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        rotary_cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> AttentionOutput:
        """``hidden_states [B, L, H]`` -> ``(out [B, L, H], probs [B, N, L, K] or None,
        (k, v) [B, N_kv, K, D] or None)``; ``rotary_cos_sin`` the ``[B, L, D]`` tables of
        :func:`rope_cos_sin`, ``past_key_value`` the cached ``(k, v)`` (``K`` = past +
        ``L``), ``attention_mask`` additive ``[B|1, 1, L, K]`` or None (causal)."""
        b, length, _ = hidden_states.shape
        qk, v = self.qkv(hidden_states).split([self.q_size + self.kv_size, self.kv_size], -1)
        heads = self.num_heads + self.num_kv_heads
        qk = qk.view(b, length, heads, self.head_size).transpose(1, 2)
        if rotary_cos_sin is not None:  # queries and keys rotate alike: one call for both
            qk = apply_rope_half(qk, *rotary_cos_sin)
        q, k = qk.split([self.num_heads, self.num_kv_heads], 1)
        v = v.view(b, length, self.num_kv_heads, self.head_size).transpose(1, 2)
        k, v = extend_cache(past_key_value, k, v)
        present = (k, v) if use_cache else None
        bias = attention_mask
        causal = self.is_causal and bias is None and length > 1
        if causal and k.shape[2] != length:
            bias, causal = causal_bias(length, k.shape[2], q.dtype, q.device), False
        if bias is not None and bias.dtype != q.dtype:
            bias = bias.to(q.dtype)
        dropout_p = self.dropout_rate if self.training else 0.0
        probs = None
        groups = self.num_heads // self.num_kv_heads
        if output_attentions:
            k_all = k.repeat_interleave(groups, dim=1) if groups > 1 else k
            v_all = v.repeat_interleave(groups, dim=1) if groups > 1 else v
            scores = torch.matmul(q, k_all.transpose(-1, -2)) * self.scale
            if bias is not None:
                scores = scores + bias
            elif causal:
                scores = scores + causal_bias(length, k.shape[2], scores.dtype, scores.device)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            dropped = F.dropout(probs, dropout_p, True) if dropout_p else probs
            context = torch.matmul(dropped, v_all)
        else:
            context = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=bias,
                dropout_p=dropout_p,
                is_causal=causal,
                scale=self.scale,
                enable_gqa=groups > 1,
            )
        context = context.transpose(1, 2).reshape(b, length, self.q_size)
        return self.o(context), probs, present
