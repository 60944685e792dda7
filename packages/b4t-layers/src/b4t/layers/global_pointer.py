"""GlobalPointer and EfficientGlobalPointer span scorers (Su Jianlin, kexue.fm 8373 / 8877).

Each head scores every span ``(start=m, end=n)`` of a sequence at once:

    GlobalPointer:          s_h(m, n) = <R_m q_{h,m}, R_n k_{h,n}> / sqrt(d)
    EfficientGlobalPointer: s_h(m, n) = <R_m q_m, R_n k_n> / sqrt(d) + b_{h,m} + e_{h,n}

(bert4torch 0.2.5's EfficientGlobalPointer adds the start/end biases unhalved, unlike
bert4keras; b4t does the same so that its trained weights give its numbers.)

``R_p`` is the rotary position rotation (RoPE) and ``d`` the head size. Spans that
touch padding, and spans with ``end < start`` when ``tril_mask`` is on, get a large
negative score so that a multi-label loss and ``logits > 0`` decoding ignore them.
Parameter names and argument order follow bert4torch (``dense``; ``p_dense``/``q_dense``;
``position_embedding``), so its state dicts load unchanged: the rotary tables it saved as
buffers (``position_embedding.cos_position`` / ``sin_position``) are recomputed here and
the saved copies are dropped on load.

One deliberate difference (``MIGRATION.md``): bert4torch 0.2.5's GlobalPointer rotates
q and k along the heads axis instead of the sequence axis (its ``(B, N, heads, D)``
tensors reach a rotary layer that assumes ``(..., seq, D)``), so its scores do not
depend on relative offsets; b4t rotates by token position as the method intends.
"""

from __future__ import annotations

import torch
from torch import nn

from b4t.layers.rotary import RoPEPositionEncoding, apply_rotary

__all__ = ["EfficientGlobalPointer", "GlobalPointer"]


def _large_negative(dtype: torch.dtype) -> float:
    """A finite 'minus infinity' for ``dtype``: -1e12, or the dtype's minimum if smaller."""
    return max(-1e12, torch.finfo(dtype).min)


def _rope_along_seq(rope: RoPEPositionEncoding, x: torch.Tensor, max_len: int) -> torch.Tensor:
    """Rotate ``x`` of shape ``(B, N, D)`` or ``(B, N, H, D)`` by each token's position ``n``."""
    seq_len = x.size(1)
    if seq_len > max_len:
        raise ValueError(
            f"sequence length {seq_len} exceeds the RoPE table max_len={max_len}; "
            "build the layer with a larger max_len"
        )
    cos, sin = rope.cos_sin(seq_len, x.device, x.dtype)  # (N, D)
    if x.dim() == 4:
        cos, sin = cos[:, None], sin[:, None]  # (N, 1, D): one angle for every head
    return apply_rotary(x, cos, sin)


def _check_inputs(layer: nn.Module, inputs: torch.Tensor, mask: torch.Tensor | None) -> None:
    name = type(layer).__name__
    if inputs.dim() != 3 or inputs.size(-1) != layer.hidden_size:
        raise ValueError(
            f"{name} expects inputs of shape (batch, seq_len, hidden_size={layer.hidden_size}), "
            f"got {tuple(inputs.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(inputs.shape[:2]):
        raise ValueError(
            f"{name} mask shape {tuple(mask.shape)} does not match inputs (batch, seq_len) "
            f"{tuple(inputs.shape[:2])}"
        )


def _apply_masks(logits: torch.Tensor, mask: torch.Tensor | None, tril: bool) -> torch.Tensor:
    """Fill padded rows/columns and (optionally) ``end < start`` cells of ``(B, H, N, N)``."""
    neg = _large_negative(logits.dtype)
    if mask is not None:
        keep = mask.bool()
        pair = keep[:, None, :, None] & keep[:, None, None, :]  # (B, 1, N, N)
        logits = logits.masked_fill(~pair, neg)
    if tril:
        n = logits.size(-1)
        below = torch.ones(n, n, dtype=torch.bool, device=logits.device).tril(-1)
        logits = logits.masked_fill(below, neg)
    return logits


def _check_sizes(name: str, hidden_size: int, heads: int, head_size: int, max_len: int) -> None:
    for key, value in (("hidden_size", hidden_size), ("heads", heads), ("head_size", head_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} {key} must be a positive int, got {value!r}")
    if head_size % 2:
        raise ValueError(f"{name} head_size must be even for RoPE, got {head_size}")
    if max_len <= 0:
        raise ValueError(f"{name} max_len must be positive, got {max_len}")


class GlobalPointer(nn.Module):
    """Span scores per entity type with separate q/k projections per head.

    Args:
        hidden_size: size of the encoder output.
        heads: number of span types (entity types or relations).
        head_size: q/k size per head (even).
        RoPE: rotate q and k by position so scores depend on relative offsets.
        max_len: longest sequence the RoPE table covers.
        use_bias: bias in the projection.
        tril_mask: mask spans with end < start.

    Shapes:
        inputs ``(batch, seq_len, hidden_size)``, mask ``(batch, seq_len)`` (1 = real token)
        -> logits ``(batch, heads, seq_len, seq_len)``, ``logits[b, h, m, n]`` scoring span m..n.
    """

    def __init__(
        self,
        hidden_size: int,
        heads: int,
        head_size: int,
        RoPE: bool = True,  # bert4torch's keyword name
        max_len: int = 512,
        use_bias: bool = True,
        tril_mask: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(type(self).__name__, hidden_size, heads, head_size, max_len)
        self.hidden_size = hidden_size
        self.heads = heads
        self.head_size = head_size
        self.RoPE = RoPE
        self.tril_mask = tril_mask
        self.dense = nn.Linear(hidden_size, heads * head_size * 2, bias=use_bias)
        self.max_len = max_len
        self.position_embedding = RoPEPositionEncoding(max_len, head_size) if RoPE else None

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Score every span: ``inputs [B, N, hidden_size]``, ``mask [B, N]`` (1 = real token)
        -> logits ``[B, heads, N, N]``; spans over padding (and with ``tril_mask`` those
        ending before they start) get a large negative score.
        """
        _check_inputs(self, inputs, mask)
        b, n, _ = inputs.shape
        proj = self.dense(inputs).view(b, n, self.heads, 2 * self.head_size)
        q, k = proj[..., : self.head_size], proj[..., self.head_size :]  # (B, N, H, D)
        if self.position_embedding is not None:
            q = _rope_along_seq(self.position_embedding, q, self.max_len)
            k = _rope_along_seq(self.position_embedding, k, self.max_len)
        logits = torch.einsum("bmhd,bnhd->bhmn", q, k) / self.head_size**0.5
        return _apply_masks(logits, mask, self.tril_mask)


class EfficientGlobalPointer(nn.Module):
    """GlobalPointer with one shared q/k projection and a per-head start/end bias.

    ``p_dense`` maps hidden -> ``2 * head_size`` (q, k shared by all heads); ``q_dense``
    maps that ``2 * head_size`` vector -> ``2 * heads`` scores: per head ``2h`` is the bias
    of the span start (row m) and ``2h + 1`` that of the span end (column n), added as they
    are (bert4torch 0.2.5; bert4keras halves them).

    Shapes as :class:`GlobalPointer`: ``(B, N, hidden)`` -> ``(B, heads, N, N)``.
    """

    def __init__(
        self,
        hidden_size: int,
        heads: int,
        head_size: int,
        RoPE: bool = True,  # bert4torch's keyword name
        max_len: int = 512,
        use_bias: bool = True,
        tril_mask: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(type(self).__name__, hidden_size, heads, head_size, max_len)
        self.hidden_size = hidden_size
        self.heads = heads
        self.head_size = head_size
        self.RoPE = RoPE
        self.tril_mask = tril_mask
        self.p_dense = nn.Linear(hidden_size, head_size * 2, bias=use_bias)
        self.q_dense = nn.Linear(head_size * 2, heads * 2, bias=use_bias)
        self.max_len = max_len
        self.position_embedding = RoPEPositionEncoding(max_len, head_size) if RoPE else None

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Score every span: ``inputs [B, N, hidden_size]``, ``mask [B, N]`` (1 = real token)
        -> logits ``[B, heads, N, N]``; spans over padding (and with ``tril_mask`` those
        ending before they start) get a large negative score.
        """
        _check_inputs(self, inputs, mask)
        b, n, _ = inputs.shape
        proj = self.p_dense(inputs)  # (B, N, 2D)
        q, k = proj[..., : self.head_size], proj[..., self.head_size :]  # (B, N, D)
        if self.position_embedding is not None:
            q = _rope_along_seq(self.position_embedding, q, self.max_len)
            k = _rope_along_seq(self.position_embedding, k, self.max_len)
        logits = torch.einsum("bmd,bnd->bmn", q, k) / self.head_size**0.5  # (B, N, N)
        bias = self.q_dense(proj).view(b, n, self.heads, 2).permute(0, 2, 1, 3)  # (B, H, N, 2)
        logits = logits[:, None] + bias[..., 0, None] + bias[..., 1][:, :, None, :]
        return _apply_masks(logits, mask, self.tril_mask)
