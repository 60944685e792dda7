"""A linear layer with a faster CPU path for a decoding step (a few rows).

Decoding a token multiplies each weight matrix by a handful of rows, so the step is
bound by reading the weights. On CPU, ``F.linear`` on one to four rows (a GEMV-shaped
GEMM) reads them at about a third of the memory bandwidth on the machine we measure on
(``benchmarks/bench_generation.py``, MKL on AMD EPYC, torch 2.13); the same product
written as a batched matmul over eight blocks of output features reads them close to the
bandwidth. For an LM head (many more output than input features) the batched form is
also faster up to a few dozen rows (a batch of beams). :func:`linear` takes that path
when it applies and ``F.linear`` otherwise:

* CPU tensors, inference only (autograd off, or nothing requires grad),
* at most :data:`MAX_ROWS` rows (``x.numel() // in_features``), or at most
  :data:`MAX_ROWS_WIDE` when ``out_features >= WIDE * in_features``,
* a 2-D contiguous weight of at least :data:`MIN_WEIGHT` elements (smaller ones stay in
  the CPU caches, where ``F.linear``'s single call is quicker) and :data:`BLOCKS` rows.

Each output is still one dot product of a weight row with the input row, in the input's
dtype, so results equal ``F.linear``'s up to summation order (about 1e-7 relative in
float32). Set ``b4t.layers.linear.FEW_ROWS_PATH = False`` to always use ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCKS",
    "FEW_ROWS_PATH",
    "MAX_ROWS",
    "MAX_ROWS_WIDE",
    "MIN_WEIGHT",
    "WIDE",
    "Linear",
    "linear",
]

FEW_ROWS_PATH = True
"""Use the batched-matmul path for a few rows on CPU (switch off to compare or debug)."""

MAX_ROWS = 4
"""The most rows (tokens x batch) that take the batched-matmul path."""

MAX_ROWS_WIDE = 32
"""The most rows that take the path when the layer is wide (an LM head)."""

WIDE = 8
"""A layer with ``out_features >= WIDE * in_features`` counts as wide."""

MIN_WEIGHT = 1 << 18
"""The fewest weight elements (1 MiB in float32; T5-small's 512 x 512) that take the path."""

BLOCKS = 8
"""Output features are split into this many blocks, one matmul of the batch each."""


def _takes_few_rows_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if not FEW_ROWS_PATH or x.device.type != "cpu" or weight.dim() != 2 or x.dim() == 0:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    out_features, in_features = weight.shape
    most_rows = MAX_ROWS_WIDE if out_features >= WIDE * in_features else MAX_ROWS
    return (
        0 < x.numel() <= most_rows * in_features
        and x.shape[-1] == in_features
        and out_features >= BLOCKS
        and weight.numel() >= MIN_WEIGHT
        and weight.is_contiguous()
        and x.dtype == weight.dtype
    )


def _few_rows_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x @ weight.T + bias`` as ``BLOCKS`` matmuls: ``[..., in]`` -> ``[..., out]``."""
    out_features, in_features = weight.shape
    rows = x.reshape(-1, in_features)  # [R, in]
    count = rows.shape[0]
    block = out_features // BLOCKS
    covered = block * BLOCKS
    blocks = weight[:covered].view(BLOCKS, block, in_features)  # [BLOCKS, block, in]
    columns = rows.t().expand(BLOCKS, in_features, count)  # [BLOCKS, in, R]
    out = torch.bmm(blocks, columns)  # [BLOCKS, block, R]
    # [R, covered], row-major: the reshape alone is a transposed view for R > 1, which
    # softmax and friends would copy later, beside their own output
    out = out.permute(2, 0, 1).reshape(count, covered).contiguous()
    if covered < out_features:  # the last out_features % BLOCKS rows
        out = torch.cat([out, F.linear(rows, weight[covered:])], dim=1)
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], out_features)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``[..., in]`` x ``[out, in]`` -> ``[..., out]``,
    with the batched-matmul path for a few rows on CPU at inference (see the module doc)."""
    if _takes_few_rows_path(x, weight):
        return _few_rows_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose forward is :func:`linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)
