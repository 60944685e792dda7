"""Label-smoothing cross-entropy (Szegedy et al. 2016; bert4torch ``LabelSmoothingCrossEntropy``).

    L = (1 - eps) * (-log p_y) + eps * mean_c(-log p_c)

which is cross-entropy against the target ``(1 - eps) * onehot(y) + eps / C``,
i.e. ``F.cross_entropy(logits, y, label_smoothing=eps)``. Unlike bert4torch,
positions with ``ignore_index`` are left out of the smoothing term too (as torch does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_class_targets, check_float, check_reduction


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy with uniform label smoothing on logits [..., C] and ids [...].

    Args:
        eps: smoothing mass in [0, 1].
        reduction: ``'mean'`` (over non-ignored positions), ``'sum'`` or ``'none'``.
        ignore_index: target id that contributes nothing.
    """

    def __init__(self, eps: float = 0.1, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        if not 0 <= eps <= 1:
            raise ValueError(f"eps must lie in [0, 1], got {eps}")
        check_reduction(reduction)
        self.eps = float(eps)
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for ``output`` [..., C] logits and ``target`` [...] ids."""
        check_float("output", output)
        target = check_class_targets(output, target, self.ignore_index)
        num_classes = output.shape[-1]
        logp = F.log_softmax(output.float(), dim=-1).reshape(-1, num_classes)
        flat = target.reshape(-1)
        keep = flat != self.ignore_index
        nll = -logp.gather(-1, flat.clamp(0, num_classes - 1)[:, None]).squeeze(-1)
        smooth = -logp.mean(dim=-1)
        loss = ((1 - self.eps) * nll + self.eps * smooth) * keep
        if self.reduction == "mean":
            loss = loss.sum() / keep.sum()
        elif self.reduction == "sum":
            loss = loss.sum()
        else:
            loss = loss.reshape(target.shape)
        return loss.to(output.dtype)
