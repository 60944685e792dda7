"""Contrastive loss on pair distances (Hadsell et al. 2006; bert4torch / sentence-transformers).

    L = 0.5 * [ y * d^2 + (1 - y) * max(0, margin - d)^2 ]

``online=True`` keeps only hard pairs: negatives closer than the farthest
positive and positives farther than the closest negative, and sums
``d_pos^2 + max(0, margin - d_neg)^2`` over them (no 0.5 factor, as bert4torch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_float


class ContrastiveLoss(nn.Module):
    """Contrastive loss on ``distances`` [N] and pair ``labels`` [N] (1 similar, 0 not).

    Args:
        margin: distance beyond which a dissimilar pair costs nothing.
        size_average: mean (True) or sum (False) in the offline form.
        online: hard-pair mining within the batch.
    """

    def __init__(self, margin: float = 0.5, size_average: bool = True, online: bool = False):
        super().__init__()
        self.margin = margin
        self.size_average = size_average
        self.online = online

    def forward(
        self, distances: torch.Tensor, labels: torch.Tensor, pos_id: int = 1, neg_id: int = 0
    ) -> torch.Tensor:
        """Scalar loss."""
        check_float("distances", distances)
        if not isinstance(labels, torch.Tensor) or labels.shape != distances.shape:
            raise ValueError(
                f"labels shape {tuple(getattr(labels, 'shape', ()))} must equal "
                f"distances shape {tuple(distances.shape)}"
            )
        if labels.numel() and bool(((labels != pos_id) & (labels != neg_id)).any()):
            raise ValueError(f"labels must hold only pos_id={pos_id} and neg_id={neg_id}")
        d = distances.float()
        if not self.online:
            y = (labels == pos_id).float()
            losses = 0.5 * (y * d.pow(2) + (1 - y) * F.relu(self.margin - d).pow(2))
            out = losses.mean() if self.size_average else losses.sum()
            return out.to(distances.dtype)
        negs = d[labels == neg_id]
        poss = d[labels == pos_id]
        neg_bar = poss.max() if len(poss) > 1 else negs.mean()
        pos_bar = negs.min() if len(negs) > 1 else poss.mean()
        negative_pairs = negs[negs < neg_bar]
        positive_pairs = poss[poss > pos_bar]
        loss = positive_pairs.pow(2).sum() + F.relu(self.margin - negative_pairs).pow(2).sum()
        return loss.to(distances.dtype)
