"""Attention masks: padding, the ``lm`` causal mask and the ``unilm`` seq2seq mask.

Boolean masks use ``True`` for "may attend". :func:`to_additive_mask` turns one into
the float bias that :class:`b4t.layers.MultiHeadAttention` adds to the scores.
"""

from __future__ import annotations

import torch

__all__ = ["attention_mask", "causal_mask", "padding_mask", "to_additive_mask", "unilm_mask"]


def padding_mask(token_ids: torch.Tensor, pad_token_id: int = 0) -> torch.Tensor:
    """``[B, L]`` token ids -> ``[B, L]`` bool, True where the token is not padding."""
    return token_ids.ne(pad_token_id)


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[L, L]`` bool lower-triangular mask: query ``i`` sees keys ``j <= i``."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def unilm_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """UniLM seq2seq mask from segment ids ``[B, L]`` -> ``[B, L, L]`` bool.

    Segment-0 tokens (the source) see each other in both directions; segment-1
    tokens (the target) see the whole source and the target up to themselves.
    Query ``i`` sees key ``j`` iff ``cumsum(s)[j] <= cumsum(s)[i]``.
    """
    idx = torch.cumsum(segment_ids.long(), dim=1)
    return idx.unsqueeze(1) <= idx.unsqueeze(2)


def to_additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask (True = keep) -> float bias with 0 kept and the dtype's minimum masked."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill_(~mask, torch.finfo(dtype).min)


def attention_mask(
    keep: torch.Tensor | None,
    application: str = "encoder",
    segment_ids: torch.Tensor | None = None,
    length: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """The additive attention bias for one application, ``[B, 1, Q, K]`` or ``[B, 1, 1, K]``.

    Args:
        keep: ``[B, L]`` bool padding mask (True = real token) or None (no padding).
        application: ``'encoder'`` (padding only), ``'lm'`` (causal) or ``'unilm'``.
        segment_ids: ``[B, L]``, required for ``'unilm'``.
        length: sequence length, required when ``keep`` is None and a mask is built.

    Returns None for an encoder without padding (SDPA then needs no mask at all).
    """
    if application == "encoder":
        if keep is None:
            return None
        return to_additive_mask(keep[:, None, None, :], dtype)
    if application == "lm":
        if length is None:
            if keep is None:
                raise ValueError("attention_mask: give keep or length for application='lm'")
            length = keep.shape[1]
        device = keep.device if keep is not None else None
        mask = causal_mask(length, device)[None, None]
    elif application == "unilm":
        if segment_ids is None:
            raise ValueError("application='unilm' needs segment_ids to build its mask")
        mask = unilm_mask(segment_ids)[:, None]
    else:
        raise ValueError(f"unknown application {application!r}; use 'encoder', 'lm' or 'unilm'")
    if keep is not None:
        mask = mask & keep[:, None, None, :]
    return to_additive_mask(mask, dtype)
