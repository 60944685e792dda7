"""Rotary position embedding (RoPE) as in RoFormer.

Pairs of features ``(x[2i], x[2i+1])`` are rotated by the angle
``pos * base ** (-2i / dim)``: for a query at position ``m`` and a key at
position ``n`` the dot product then depends on ``m - n`` only. The layout is
the interleaved one of RoFormer, bert4torch and transformers' RoFormer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from b4t.layers.attention import MultiHeadAttention, cached_length

__all__ = [
    "RoPEPositionEncoding",
    "RotaryAttention",
    "apply_rotary",
    "rotary_cos_sin",
    "rotate_half_interleaved",
]


def rotary_cos_sin(
    positions: Tensor,
    dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Cos and sin tables for the rotation, repeated per pair.

    Args:
        positions: integer positions, any shape ``(...)``.
        dim: feature size to rotate; must be even.
        base: the frequency base (10000 in RoFormer).
        dtype: dtype of the returned tables (angles are computed in float64).

    Returns:
        ``(cos, sin)``, each of shape ``(..., dim)`` where features ``2i`` and
        ``2i+1`` share the angle ``pos * base ** (-2i / dim)``.
    """
    if dim % 2 != 0:
        raise ValueError(f"rotary dim must be even, got {dim}")
    inv_freq = base ** (
        -torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
    )
    angles = positions.to(torch.float64)[..., None] * inv_freq  # (..., dim/2)
    angles = angles.repeat_interleave(2, dim=-1)  # (..., dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half_interleaved(x: Tensor) -> Tensor:
    """Map ``[x0, x1, x2, x3, ...]`` to ``[-x1, x0, -x3, x2, ...]`` on the last axis."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (``(..., seq, dim)``) by tables ``cos``/``sin`` broadcastable to it."""
    return x * cos + rotate_half_interleaved(x) * sin


def _drop_seed_tables(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load-state-dict pre-hook: drop bert4torch's saved ``cos_position``/``sin_position``."""
    for name in ("cos_position", "sin_position"):
        state_dict.pop(prefix + name, None)


class RoPEPositionEncoding(nn.Module):
    """Rotary position embedding for query/key tensors.

    The tables hold no parameters and are not saved with the state dict; they
    are cached per (length, device, dtype), so a model built on the meta
    device needs no re-initialisation.

    Args:
        max_position: positions beyond this are an error, as with a learned table;
            ``None`` allows any length.
        embedding_size: per-head feature size to rotate (even).
        base: the frequency base.

    bert4torch saved its tables as buffers (``cos_position``, ``sin_position``); a state
    dict holding them loads here, the saved copies dropped (they are recomputed).
    """

    def __init__(
        self, max_position: int | None, embedding_size: int, base: float = 10000.0
    ) -> None:
        super().__init__()
        if embedding_size % 2 != 0:
            raise ValueError(f"rotary embedding_size must be even, got {embedding_size}")
        self.embedding_size = embedding_size
        self.max_position = max_position
        self.base = base
        self._cache: dict[tuple[int, torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        self.register_load_state_dict_pre_hook(_drop_seed_tables)

    def cos_sin(
        self, seq_len: int, device: torch.device, dtype: torch.dtype, offset: int = 0
    ) -> tuple[Tensor, Tensor]:
        """Tables ``(seq_len, embedding_size)`` for positions ``offset .. offset + seq_len - 1``."""
        end = offset + seq_len
        if self.max_position is not None and end > self.max_position:
            raise ValueError(
                f"sequence reaches position {end} but the rotary table allows "
                f"max_position={self.max_position}"
            )
        key = (end, device, dtype)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            positions = torch.arange(end, device=device)
            self._cache[key] = rotary_cos_sin(positions, self.embedding_size, self.base, dtype)
        cos, sin = self._cache[key]
        return cos[offset:], sin[offset:]

    def forward(
        self,
        qw: Tensor | None = None,
        seq_dim: int = -2,
        position_ids: Tensor | None = None,
        offset: int = 0,
        *,
        x: Tensor | None = None,
    ) -> Tensor:
        """Rotate ``qw`` of shape ``(batch, heads, seq, dim)`` (or ``(..., seq, dim)``).

        bert4torch's ``forward(qw, seq_dim=-2)``, plus b4t's keywords.

        Args:
            qw: queries or keys; the last axis is the rotated one (``x=`` is b4t 0.1's
                keyword for it).
            seq_dim: the sequence axis; it must be the one before the last (bert4torch's
                default and only working value). A tensor here is b4t 0.1's second
                argument, ``position_ids``.
            position_ids: optional ``(batch, seq)`` or ``(seq,)`` positions; when
                given they replace ``offset + arange(seq)``.
            offset: first position (for cached decoding).
        """
        if (qw is None) == (x is None):
            raise TypeError("RoPEPositionEncoding takes the tensor once: qw (or x=)")
        x = qw if x is None else x
        if isinstance(seq_dim, Tensor):  # b4t 0.1's order: (x, position_ids, ...)
            if position_ids is not None:
                raise TypeError("position_ids given twice (positionally and by keyword)")
            seq_dim, position_ids = -2, seq_dim
        if seq_dim not in (-2, x.dim() - 2):
            raise ValueError(
                f"RoPEPositionEncoding rotates along the axis before the last (seq_dim=-2), "
                f"got seq_dim={seq_dim} for shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.embedding_size:
            raise ValueError(
                f"rotary expects last dim {self.embedding_size}, got shape {tuple(x.shape)}"
            )
        if position_ids is not None:
            cos, sin = rotary_cos_sin(position_ids, self.embedding_size, self.base, x.dtype)
            if position_ids.dim() == 2 and x.dim() == 4:
                cos, sin = cos[:, None], sin[:, None]  # (batch, 1, seq, dim)
            return apply_rotary(x, cos, sin)
        cos, sin = self.cos_sin(x.shape[-2], x.device, x.dtype, offset)
        return apply_rotary(x, cos, sin)


class RotaryAttention(MultiHeadAttention):
    """Multi-head attention whose queries and keys are rotated per head (RoFormer).

    Args (beyond :class:`MultiHeadAttention`):
        max_position: rotary length limit (None: unlimited).
        rotary_base: the frequency base.

    Works on both the SDPA and the eager path; with a KV cache, new queries and keys
    are rotated from the cached length on (``forward(..., position_ids=...)`` overrides).
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        max_position: int | None = None,
        rotary_base: float = 10000.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(hidden_size, num_attention_heads, attention_head_size, **kwargs)
        self.rotary = RoPEPositionEncoding(max_position, self.head_size, rotary_base)

    def transform_qk(
        self,
        q: Tensor,
        k: Tensor,
        past_key_value: tuple[Tensor, Tensor] | None = None,
        position_ids: Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        offset = cached_length(past_key_value)
        return (
            self.rotary(q, position_ids=position_ids, offset=offset),
            self.rotary(k, position_ids=position_ids, offset=offset),
        )
