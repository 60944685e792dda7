"""UDA: unsupervised data augmentation loss with training-signal annealing (Xie et al. 2020).

The batch is ``[sup (S rows); unsup original (U rows); unsup augmented (U rows)]``::

    L = CE(z_sup[keep], y_sup[keep]) + KL_batchmean( sg(p_orig) || p_aug )

TSA keeps only supervised rows whose true-class probability is below
``eta_t * (end_p - start_p) + start_p``, with progress ``t = global_step / total_steps``:
linear ``eta = t``, exp ``eta = e^{5 (t - 1)}``, log ``eta = 1 - e^{-5 t}`` (bert4torch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial.losses._checks import check_class_targets, check_float

SCHEDULES = {"linear": "linear", "exp": "exp", "log": "log"}
SCHEDULES.update({f"{k}_schedule": v for k, v in list(SCHEDULES.items())})


def tsa_threshold(
    schedule: str, global_step: int, total_steps: int, start: float = 0.0, end: float = 1.0
) -> float:
    """TSA threshold at ``global_step`` of ``total_steps``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"tsa_schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    progress = global_step / total_steps
    kind = SCHEDULES[schedule]
    if kind == "linear":
        eta = progress
    elif kind == "exp":
        eta = math.exp((progress - 1) * 5)
    else:
        eta = 1 - math.exp(-progress * 5)
    return eta * (end - start) + start


class UDALoss(nn.Module):
    """UDA loss; returns ``(total, sup, unsup)`` if ``return_all_loss`` else ``total``.

    Args:
        tsa_schedule: ``None`` (no TSA), ``'linear'``, ``'exp'`` or ``'log'``
            (bert4torch's ``'linear_schedule'`` etc. also accepted).
        total_steps: bert4torch's second argument; used only when ``forward`` is given
            ``total_steps=None``.
        start_p: the TSA threshold where the schedule ``eta_t`` is 0.
        end_p: the TSA threshold where ``eta_t`` is 1 (the last step).
        return_all_loss: also return the two parts.
    """

    def __init__(
        self,
        tsa_schedule: str | None = None,
        total_steps: int | None = None,
        start_p: float = 0,
        end_p: float = 1,
        return_all_loss: bool = True,
    ) -> None:
        super().__init__()
        if tsa_schedule is not None and tsa_schedule not in SCHEDULES:
            raise ValueError(
                f"tsa_schedule must be None or one of {sorted(SCHEDULES)}, got {tsa_schedule!r}"
            )
        self.tsa_schedule = tsa_schedule
        self.total_steps = total_steps
        self.start = start_p
        self.end = end_p
        self.return_all_loss = return_all_loss

    @staticmethod
    def get_tsa_threshold(
        schedule: str, global_step: int, num_train_steps: int, start: float, end: float
    ) -> float:
        """bert4torch's name for :func:`tsa_threshold` (same arguments, same value)."""
        return tsa_threshold(schedule, global_step, num_train_steps, start, end)

    def forward(
        self,
        y_pred: torch.Tensor,
        y_true_sup: torch.Tensor,
        global_step: int,
        total_steps: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``y_pred`` [S + 2U, C] logits, ``y_true_sup`` [S] ids."""
        check_float("y_pred", y_pred, min_dim=2)
        sup_size = int(y_true_sup.shape[0]) if isinstance(y_true_sup, torch.Tensor) else -1
        rest = y_pred.shape[0] - sup_size
        if sup_size < 0 or rest < 0 or rest % 2:
            raise ValueError(
                f"y_pred has {y_pred.shape[0]} rows; it must be {sup_size} supervised rows "
                "plus an even number of unsupervised rows (original, then augmented)"
            )
        unsup_size = rest // 2
        z_sup = y_pred[:sup_size].float()
        y_true_sup = check_class_targets(z_sup, y_true_sup, name="y_true_sup")
        if self.tsa_schedule is None:
            loss_sup = F.cross_entropy(z_sup, y_true_sup)
        else:
            steps = self.total_steps if total_steps is None else total_steps
            if steps is None:
                raise ValueError("TSA needs total_steps (in forward or in UDALoss(...))")
            threshold = self.get_tsa_threshold(
                self.tsa_schedule, global_step, steps, self.start, self.end
            )
            true_prob = F.softmax(z_sup, dim=-1).gather(1, y_true_sup[:, None]).squeeze(1)
            keep = true_prob < threshold
            loss_sup = (
                F.cross_entropy(z_sup[keep], y_true_sup[keep])
                if bool(keep.any())
                else z_sup.sum() * 0
            )
        z_orig = y_pred[sup_size : sup_size + unsup_size].float().detach()
        z_aug = y_pred[sup_size + unsup_size :].float()
        if unsup_size:
            loss_unsup = F.kl_div(
                F.log_softmax(z_aug, -1), F.softmax(z_orig, -1), reduction="batchmean"
            )
        else:
            loss_unsup = z_sup.sum() * 0
        total = (loss_sup + loss_unsup).to(y_pred.dtype)
        if self.return_all_loss:
            return total, loss_sup.to(y_pred.dtype), loss_unsup.to(y_pred.dtype)
        return total
