"""Focal loss (Lin et al. 2017; bert4torch ``FocalLoss``).

    FL = -alpha_t * (1 - p_t)^gamma * log(p_t),   p_t = softmax(logits)[target]

With ``gamma = 0`` and no weights this is cross-entropy. The ``mean`` reduction
divides by the summed weights of the non-ignored targets, as
``torch.nn.functional.cross_entropy(weight=...)`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_class_targets, check_float, check_reduction


class FocalLoss(nn.Module):
    """Multi-class focal loss on logits [..., num_classes] and class ids [...].

    Args:
        gamma: focusing exponent (>= 0).
        weight: per-class weights alpha_c [num_classes] (bert4torch's ``weight``).
        alpha: shorthand for binary tasks: a float means weights ``[1 - alpha, alpha]``;
            a sequence is the per-class weights. Give ``weight`` or ``alpha``, not both.
        ignore_index: target id that contributes nothing.
        reduction: ``'mean'`` (weighted), ``'sum'`` or ``'none'``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        alpha: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        check_reduction(reduction)
        if weight is not None and alpha is not None:
            raise ValueError("give either weight (per-class) or alpha, not both")
        if isinstance(alpha, (int, float)):
            if not 0 <= alpha <= 1:
                raise ValueError(f"a scalar alpha must lie in [0, 1], got {alpha}")
            weight = [1.0 - float(alpha), float(alpha)]
        elif alpha is not None:
            weight = alpha
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        self.reduction = reduction
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32).flatten()
        self.register_buffer("weight", w, persistent=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for ``input`` [..., C] logits and ``target`` [...] ids; a scalar unless 'none'."""
        check_float("input", input)
        target = check_class_targets(input, target, self.ignore_index)
        num_classes = input.shape[-1]
        if self.weight is not None and self.weight.numel() != num_classes:
            raise ValueError(
                f"weight/alpha has {self.weight.numel()} entries but logits have "
                f"{num_classes} classes"
            )
        logp = F.log_softmax(input.float(), dim=-1).reshape(-1, num_classes)
        focal_logp = (-torch.expm1(logp)).pow(self.gamma) * logp if self.gamma else logp
        loss = F.nll_loss(
            focal_logp,
            target.reshape(-1),
            weight=None if self.weight is None else self.weight.to(logp.device),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
        if self.reduction == "none":
            loss = loss.reshape(target.shape)
        return loss.to(input.dtype)
