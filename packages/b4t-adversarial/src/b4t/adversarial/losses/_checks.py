"""Input checks shared by the losses: errors that name the argument and the problem."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_float(name: str, tensor: object, min_dim: int = 1) -> torch.Tensor:
    """``tensor`` must be a floating tensor with at least ``min_dim`` axes."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (logits), got dtype {tensor.dtype}")
    if tensor.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dims, got shape {tuple(tensor.shape)}"
        )
    return tensor


def check_class_targets(
    logits: torch.Tensor, target: object, ignore_index: int | None = None, name: str = "target"
) -> torch.Tensor:
    """Integer class ids ``target`` [...] for ``logits`` [..., num_classes].

    Raises on a non-integer dtype, a shape that is not ``logits.shape[:-1]`` and
    ids outside ``[0, num_classes)`` (``ignore_index`` excepted).
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class ids, got {type(target).__name__}")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"{name} must hold integer class ids, got dtype {target.dtype}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"{name} shape {tuple(target.shape)} must equal logits shape without the class "
            f"axis {tuple(logits.shape[:-1])} (logits {tuple(logits.shape)})"
        )
    num_classes = logits.shape[-1]
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        bad = valid[(valid < 0) | (valid >= num_classes)][0]
        raise ValueError(
            f"{name} holds class id {int(bad)} outside [0, {num_classes}) "
            f"(logits have {num_classes} classes"
            + ("" if ignore_index is None else f", ignore_index={ignore_index}")
            + ")"
        )
    return target.long()


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} shape {tuple(a.shape)} and {name_b} shape {tuple(b.shape)} must match"
        )


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
