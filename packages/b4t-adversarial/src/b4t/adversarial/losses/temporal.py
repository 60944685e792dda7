"""Temporal ensembling (Laine & Aila 2017; bert4torch ``TemporalEnsemblingLoss``).

For batch index ``b`` (the same batches every epoch), with ensemble ``Z_b``::

    L      = CE(z_sup, y) + w(epoch) * [ mse(z_unsup, T_unsup) + mse(z_sup, T_sup) ]
    mse    = sum((softmax(a) - softmax(b))^2) / numel(a)
    w(e)   = 0 at e = 0, max_val * r at e >= epochs,
             else max_val * r * exp(ramp_up_mult * (1 - e/epochs)^2)
    Z_b   <- alpha * Z_b + (1 - alpha) * z        (after the loss)
    T      = Z_b / (1 - alpha^epoch)              (startup-bias correction; Z_b holds
                                                `epoch` updates when epoch `epoch` starts)

``r`` is the supervised share of the rows. As the paper (and unlike bert4torch,
which feeds the corrected value back into ``Z``), the raw ensemble is kept and
only the target is corrected. Batches with ``bti >= max_batch_num`` get plain CE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_class_targets, check_float

SAME_BATCH_CHECKS = 10  # bert4torch checks the labels of the first 10 batches


class TemporalEnsemblingLoss(nn.Module):
    """Temporal ensembling loss; returns ``(total, sup, weighted_unsup)`` for tracked batches."""

    def __init__(
        self,
        epochs: int,
        max_val: float = 10.0,
        ramp_up_mult: float = -5.0,
        alpha: float = 0.5,
        max_batch_num: int | None = 100,
        hist_device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
        if epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {epochs}")
        self.max_epochs = epochs
        self.max_val = max_val
        self.ramp_up_mult = ramp_up_mult
        self.alpha = alpha
        self.max_batch_num = max_batch_num
        self.hist_device = torch.device(hist_device)
        self.hist_sup: dict[int, torch.Tensor] = {}
        self.hist_unsup: dict[int, torch.Tensor] = {}
        self.hist_input_y: dict[int, torch.Tensor] = {}
        self._epoch = 0  # the epoch of the current forward (temporal_loss's target correction)

    def weight_schedule(self, epoch: int, sup_ratio: float) -> float:
        """The unsupervised weight ``w(epoch)``."""
        max_val = self.max_val * sup_ratio
        if epoch == 0:
            return 0.0
        if epoch >= self.max_epochs:
            return max_val
        return max_val * math.exp(self.ramp_up_mult * (1.0 - epoch / self.max_epochs) ** 2)

    def same_batch_check(
        self,
        y_pred_sup: torch.Tensor,
        y_pred_unsup: torch.Tensor,
        y_true_sup: torch.Tensor,
        bti: int,
    ) -> None:
        """As bert4torch: the labels of the first ``SAME_BATCH_CHECKS`` batches must repeat
        every epoch (the ensemble is kept per batch index, so the data must not be shuffled);
        a ``ValueError`` naming the batch when they do not. The predictions are not used."""
        self._same_batch_check(y_true_sup, bti)

    def _same_batch_check(self, y_true_sup: torch.Tensor, bti: int) -> None:
        if bti >= SAME_BATCH_CHECKS:
            return
        seen = self.hist_input_y.get(bti)
        labels = y_true_sup.detach().to(self.hist_device)
        if seen is None:
            self.hist_input_y[bti] = labels
        elif not torch.equal(seen, labels):
            raise ValueError(
                f"batch {bti}: y_true_sup differs from the earlier epoch's; temporal "
                "ensembling needs the same batches in the same order every epoch "
                "(use a train_dataloader with shuffle=False)"
            )

    def _target(self, hist: torch.Tensor, epoch: int, like: torch.Tensor) -> torch.Tensor:
        return hist.to(like) / (1.0 - self.alpha**epoch) if epoch > 0 else hist.to(like)

    def init_hist(self, bti: int, y_pred_sup: torch.Tensor, y_pred_unsup: torch.Tensor) -> None:
        """Start batch ``bti``'s ensembles at zeros shaped like the predictions [S, C] / [U, C]
        (on ``hist_device``); a ``ValueError`` when a kept ensemble has another shape."""
        for hist, z, name in (
            (self.hist_sup, y_pred_sup, "y_pred_sup"),
            (self.hist_unsup, y_pred_unsup, "y_pred_unsup"),
        ):
            if bti not in hist:
                hist[bti] = torch.zeros(z.shape, dtype=torch.float32, device=self.hist_device)
            elif hist[bti].shape != z.shape:
                raise ValueError(
                    f"batch {bti}: {name} shape {tuple(z.shape)} differs from the earlier epoch's "
                    f"{tuple(hist[bti].shape)}; temporal ensembling needs the same batches "
                    "every epoch"
                )

    def update(self, hist: torch.Tensor, y_pred: torch.Tensor, epoch: int) -> torch.Tensor:
        """The ensemble after this epoch's prediction: ``alpha * hist + (1 - alpha) * y_pred``
        on ``hist_device``. ``epoch`` is bert4torch's argument: b4t keeps the raw ensemble
        and corrects only the target (see MIGRATION.md), so it is not used here."""
        a = self.alpha
        return (a * hist.to(y_pred) + (1 - a) * y_pred.detach()).to(self.hist_device)

    def temporal_loss(
        self,
        y_pred_sup: torch.Tensor,
        y_pred_unsup: torch.Tensor,
        y_true_sup: torch.Tensor,
        bti: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sup_loss, unsup_loss)`` for batch ``bti`` (its ensembles must exist, see
        :meth:`init_hist`): cross-entropy on the supervised rows, and the two softmax MSEs
        against the bias-corrected ensembles of the current epoch (the last ``forward``'s)."""
        zs, zu = y_pred_sup.float(), y_pred_unsup.float()
        sup_loss = F.cross_entropy(zs, y_true_sup)
        epoch = self._epoch
        unsup_loss = self._mse(zu, self._target(self.hist_unsup[bti], epoch, zu)) + self._mse(
            zs, self._target(self.hist_sup[bti], epoch, zs)
        )
        return sup_loss, unsup_loss

    @staticmethod
    def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sum((F.softmax(a, dim=-1) - F.softmax(b, dim=-1)) ** 2) / a.numel()

    def forward(
        self,
        y_pred_sup: torch.Tensor,
        y_pred_unsup: torch.Tensor,
        y_true_sup: torch.Tensor,
        epoch: int,
        bti: int,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``y_pred_sup`` [S, C], ``y_pred_unsup`` [U, C], ``y_true_sup`` [S]; ``bti``: batch id."""
        check_float("y_pred_sup", y_pred_sup, min_dim=2)
        check_float("y_pred_unsup", y_pred_unsup, min_dim=2)
        y_true_sup = check_class_targets(y_pred_sup, y_true_sup, name="y_true_sup")
        self.same_batch_check(y_pred_sup, y_pred_unsup, y_true_sup, bti)
        if self.max_batch_num is not None and bti >= self.max_batch_num:
            return F.cross_entropy(y_pred_sup.float(), y_true_sup).to(y_pred_sup.dtype)
        self.init_hist(bti, y_pred_sup, y_pred_unsup)
        self._epoch = epoch
        zs, zu = y_pred_sup.float(), y_pred_unsup.float()
        sup_ratio = len(zs) / (len(zs) + len(zu))
        w = self.weight_schedule(epoch, sup_ratio)
        sup_loss, unsup_loss = self.temporal_loss(zs, zu, y_true_sup, bti)
        self.hist_unsup[bti] = self.update(self.hist_unsup[bti], zu, epoch)
        self.hist_sup[bti] = self.update(self.hist_sup[bti], zs, epoch)
        dtype = y_pred_sup.dtype
        return (sup_loss + w * unsup_loss).to(dtype), sup_loss.to(dtype), (w * unsup_loss).to(dtype)
