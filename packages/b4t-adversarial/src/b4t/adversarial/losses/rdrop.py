"""R-Drop (Liang et al. 2021; bert4torch ``RDropLoss``).

Two forward passes with different dropout give logits ``z1``, ``z2``::

    L = CE(z, y) + alpha / 4 * mean( KL(p2 || p1) + KL(p1 || p2) )

the mean over every batch x class element of the pointwise KL (as bert4torch).
With two arguments ``(logits, y)`` the batch holds each sample twice: rows
``0,1 / 2,3 / ...`` (``rank='adjacent'``) or the two halves (``rank='updown'``);
``y`` then covers all rows. With three, ``(z1, z2, y)`` and CE is their average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_class_targets, check_float, check_same_shape


class RDropLoss(nn.Module):
    """R-Drop: cross-entropy plus symmetric KL between two dropout passes."""

    def __init__(self, alpha: float = 4, rank: str = "adjacent") -> None:
        super().__init__()
        if rank not in ("adjacent", "updown"):
            raise ValueError(f"rank must be 'adjacent' or 'updown', got {rank!r}")
        self.alpha = alpha
        self.rank = rank

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        """``(logits [2B, C], y [2B])`` or ``(z1 [B, C], z2 [B, C], y [B])``; scalar loss."""
        if len(args) == 2:
            y_pred, y_true = args
            check_float("y_pred", y_pred, min_dim=2)
            y_true = check_class_targets(y_pred, y_true, name="y_true")
            if y_pred.shape[0] % 2:
                raise ValueError(
                    f"batch of {y_pred.shape[0]} rows cannot hold pairs (must be even)"
                )
            loss_sup = F.cross_entropy(y_pred.float(), y_true)
            if self.rank == "adjacent":
                z1, z2 = y_pred[1::2], y_pred[::2]
            else:
                half = y_pred.shape[0] // 2
                z1, z2 = y_pred[:half], y_pred[half:]
        elif len(args) == 3:
            z1, z2, y_true = args
            check_float("y_pred1", z1, min_dim=2)
            check_float("y_pred2", z2, min_dim=2)
            check_same_shape("y_pred1", z1, "y_pred2", z2)
            y_true = check_class_targets(z1, y_true, name="y_true")
            loss_sup = (
                F.cross_entropy(z1.float(), y_true) + F.cross_entropy(z2.float(), y_true)
            ) / 2
        else:
            raise TypeError(
                "RDropLoss takes (y_pred, y_true) or (y_pred1, y_pred2, y_true), "
                f"got {len(args)} arguments"
            )
        logp1, logp2 = F.log_softmax(z1.float(), -1), F.log_softmax(z2.float(), -1)
        kl12 = F.kl_div(logp1, logp2.exp(), reduction="none")
        kl21 = F.kl_div(logp2, logp1.exp(), reduction="none")
        loss = loss_sup + torch.mean(kl12 + kl21) / 4 * self.alpha
        return loss.to(z1.dtype)
