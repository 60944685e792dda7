"""Probability filters used by sampling: top-k, top-p (nucleus), repetition penalty.

All functions take a batch of distributions ``probas`` of shape
``(rows, vocab)`` and return a new tensor of the same shape whose rows sum to 1
(masked tokens get probability 0). Token order is never changed.
"""

from __future__ import annotations

import torch

__all__ = ["apply_repetition_penalty", "top_k_filter", "top_p_filter"]


def _renormalise(probas: torch.Tensor) -> torch.Tensor:
    return probas / probas.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(probas.dtype).tiny)


def top_k_filter(probas: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` most probable tokens of each row and renormalise.

    Args:
        probas: ``(rows, vocab)`` probabilities.
        k: how many tokens to keep, ``>= 1`` (clipped to ``vocab``).
    """
    if k < 1:
        raise ValueError(f"topk must be >= 1, got {k}")
    k = min(int(k), probas.shape[-1])
    # Keep by rank, so ties at the k-th value never keep more than k tokens.
    order = probas.argsort(dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(probas, dtype=torch.bool)
    keep.scatter_(-1, order[..., :k], True)
    return _renormalise(probas * keep)


def top_p_filter(probas: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most probable tokens whose mass reaches ``p``.

    The token that makes the cumulative mass reach ``p`` is kept (as in
    bert4keras), so at least one token always survives.

    Args:
        probas: ``(rows, vocab)`` probabilities.
        p: the mass to keep, in ``(0, 1]``.
    """
    if not 0 < p <= 1:
        raise ValueError(f"topp must be in (0, 1], got {p}")
    sorted_probas, order = probas.sort(dim=-1, descending=True, stable=True)
    cumulative = sorted_probas.cumsum(dim=-1)
    # Drop a token when the mass before it already reaches p.
    drop_sorted = (cumulative - sorted_probas) >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return _renormalise(probas.masked_fill(drop, 0.0))


def apply_repetition_penalty(
    log_probas: torch.Tensor, output_ids: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Lower the log-probability of tokens already present in ``output_ids``.

    A seen token's log-probability ``s <= 0`` becomes ``s * penalty`` (so a
    penalty above 1 makes repeats less likely, below 1 more likely), and each
    row is renormalised with ``log_softmax``.

    Args:
        log_probas: ``(rows, vocab)`` log-probabilities.
        output_ids: ``(rows, length)`` token ids generated so far.
        penalty: ``> 0``; ``1`` leaves the scores unchanged.

    Returns:
        ``(rows, vocab)`` renormalised log-probabilities.
    """
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    if penalty == 1 or output_ids.shape[1] == 0:
        return log_probas
    seen = torch.zeros_like(log_probas, dtype=torch.bool)
    seen.scatter_(1, output_ids.to(log_probas.device).long(), True)
    penalised = torch.where(seen, log_probas * penalty, log_probas)
    return torch.log_softmax(penalised, dim=-1)
