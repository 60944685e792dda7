"""Multi-label categorical cross-entropy (Su Jianlin, bert4keras; bert4torch).

Dense form, scores ``s`` [..., C] and 0/1 targets ``y`` [..., C]::

    L = log(1 + sum_{i in neg} e^{s_i}) + log(1 + sum_{j in pos} e^{-s_j})

Sparse form, ``y`` [..., P] holds the positive class ids. With ``all = log(1 + sum_i e^{s_i})``
and ``a = log sum_{j in pos} e^{s_j}`` the negative part is
``all + log(1 - e^{a - all})`` (clipped to ``[epsilon, 1]`` inside the log).
With ``mask_zero`` the id 0 pads ``y`` and class 0 is never a positive or negative.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.adversarial.losses._checks import check_float, check_reduction, reduce

_BIG = 1e12


class MultilabelCategoricalCrossentropy(nn.Module):
    """Dense multi-label CE; returns the mean over ``[...]`` (``reduction`` may change it)."""

    def __init__(self, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)  # bert4torch passes its keywords on to nn.Module
        check_reduction(reduction)
        self.reduction = reduction

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """``y_pred`` [..., C] scores, ``y_true`` [..., C] of 0/1."""
        check_float("y_pred", y_pred)
        if not isinstance(y_true, torch.Tensor) or y_true.shape != y_pred.shape:
            raise ValueError(
                f"y_true shape {tuple(getattr(y_true, 'shape', ()))} must equal "
                f"y_pred shape {tuple(y_pred.shape)} (0/1 per class)"
            )
        if y_true.numel() and bool(((y_true != 0) & (y_true != 1)).any()):
            raise ValueError("y_true must hold only 0 and 1")
        s = y_pred.float()
        t = y_true.to(s.dtype)
        s = (1 - 2 * t) * s
        s_pos = s - (1 - t) * _BIG
        s_neg = s - t * _BIG
        zeros = torch.zeros_like(s[..., :1])
        pos = torch.logsumexp(torch.cat([s_pos, zeros], dim=-1), dim=-1)
        neg = torch.logsumexp(torch.cat([s_neg, zeros], dim=-1), dim=-1)
        return reduce(pos + neg, self.reduction).to(y_pred.dtype)


class SparseMultilabelCategoricalCrossentropy(nn.Module):
    """Sparse multi-label CE; per-row losses [...] by default (bert4torch returns them unreduced).

    Args:
        mask_zero: id 0 in ``y_true`` is padding (class 0 is reserved).
        epsilon: floor of ``1 - e^{a - all}`` inside the log.
        reduction: ``'none'`` (default, as bert4torch), ``'mean'`` or ``'sum'``.
    """

    def __init__(
        self, mask_zero: bool = False, epsilon: float = 1e-7, reduction: str = "none", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)  # bert4torch passes its keywords on to nn.Module
        check_reduction(reduction)
        self.mask_zero = mask_zero
        self.epsilon = epsilon
        self.reduction = reduction

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """``y_pred`` [..., C] scores, ``y_true`` [..., P] positive class ids."""
        check_float("y_pred", y_pred)
        if not isinstance(y_true, torch.Tensor) or y_true.is_floating_point():
            raise TypeError("y_true must be an integer tensor of positive class ids")
        if y_true.shape[:-1] != y_pred.shape[:-1]:
            raise ValueError(
                f"y_true shape {tuple(y_true.shape)} and y_pred shape {tuple(y_pred.shape)} "
                "must agree on every axis but the last"
            )
        num_classes = y_pred.shape[-1]
        if y_true.numel() and (int(y_true.min()) < 0 or int(y_true.max()) >= num_classes):
            raise ValueError(f"y_true holds class ids outside [0, {num_classes})")
        y_true = y_true.long()
        s = y_pred.float()
        zeros = torch.zeros_like(s[..., :1])
        s = torch.cat([s, zeros], dim=-1)
        if self.mask_zero:
            infs = zeros + float("inf")
            s = torch.cat([infs, s[..., 1:]], dim=-1)
        pos_scores = torch.gather(s, -1, y_true)
        pos_loss = torch.logsumexp(torch.cat([-pos_scores, zeros], dim=-1), dim=-1)
        if self.mask_zero:
            s = torch.cat([-infs, s[..., 1:]], dim=-1)
            pos_scores = torch.gather(s, -1, y_true)
        all_loss = torch.logsumexp(s, dim=-1)
        aux = torch.logsumexp(pos_scores, dim=-1) - all_loss
        aux = torch.clamp(1 - torch.exp(aux), self.epsilon, 1)
        neg_loss = all_loss + torch.log(aux)
        return reduce(pos_loss + neg_loss, self.reduction).to(y_pred.dtype)
