"""bert4torch 0.2.5's small tensor helpers, kept under their names.

0.2.5 wrote these as shims for old PyTorch versions; on the PyTorch b4t needs they are
the torch functions themselves, with 0.2.5's signatures.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["take_along_dim", "torch_div"]


def take_along_dim(input_tensor: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    """``torch.take_along_dim``: values of ``input_tensor`` at ``indices`` along ``dim``
    (``dim=None``: of the flattened tensor). ``indices`` has ``input_tensor``'s number of
    dims (any size along ``dim``), or is 1-d with ``dim=None``."""
    return torch.take_along_dim(input_tensor, indices, dim)


def torch_div(input: Tensor, other: Tensor | float, rounding_mode: str | None = None) -> Tensor:
    """``torch.div(input, other, rounding_mode=...)``: ``None`` true division, ``'trunc'`` /
    ``'floor'`` rounded (0.2.5 uses ``'floor'`` for row indices in beam search)."""
    return torch.div(input, other, rounding_mode=rounding_mode)
