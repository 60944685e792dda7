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
float32). To always use ``F.linear``: ``with few_rows_path(False): ...`` for a block of
code (a context variable: other threads and tasks keep theirs), ``layer.few_rows_path =
False`` for one :class:`Linear`, or ``linear(x, w, b, few_rows=False)`` for one call. The
module-global ``FEW_ROWS_PATH`` of 0.3.0 is deprecated: reading it warns, and setting it
to False still switches the path off everywhere, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCKS",
    "MAX_ROWS",
    "MAX_ROWS_WIDE",
    "MIN_WEIGHT",
    "WIDE",
    "Linear",
    "few_rows_path",
    "linear",
]

_FEW_ROWS: ContextVar[bool] = ContextVar("b4t_few_rows_path", default=True)
_LEGACY_NAME = "FEW_ROWS_PATH"

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


@contextmanager
def few_rows_path(enabled: bool = True) -> Iterator[None]:
    """``with few_rows_path(False): ...``: :func:`linear` calls in the block (of this thread
    or task) use ``F.linear`` only (``True``: the batched-matmul path where it applies, the
    default). A per-call ``few_rows=`` or a layer's ``few_rows_path`` wins over it."""
    token = _FEW_ROWS.set(bool(enabled))
    try:
        yield
    finally:
        _FEW_ROWS.reset(token)


def __getattr__(name: str) -> Any:
    """``FEW_ROWS_PATH`` (deprecated): the current :func:`few_rows_path` setting."""
    if name == _LEGACY_NAME:
        warnings.warn(
            "b4t.layers.linear.FEW_ROWS_PATH is deprecated: use "
            "b4t.layers.linear.few_rows_path(False) (a context manager), a Linear's "
            "few_rows_path attribute or linear(..., few_rows=False)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _FEW_ROWS.get()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _enabled(few_rows: bool | None) -> bool:
    """The setting for one call: ``few_rows``, else the context's; a ``FEW_ROWS_PATH =
    False`` assigned to this module (deprecated) switches the path off."""
    if globals().get(_LEGACY_NAME, True) is False:
        warnings.warn(
            "b4t.layers.linear.FEW_ROWS_PATH = False is deprecated: use "
            "b4t.layers.linear.few_rows_path(False) (a context manager) instead",
            DeprecationWarning,
            stacklevel=4,
        )
        return False
    return _FEW_ROWS.get() if few_rows is None else few_rows


def _takes_few_rows_path(x: torch.Tensor, weight: torch.Tensor, few_rows: bool | None) -> bool:
    if x.device.type != "cpu" or weight.dim() != 2 or x.dim() == 0 or not _enabled(few_rows):
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


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    few_rows: bool | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``[..., in]`` x ``[out, in]`` -> ``[..., out]``,
    with the batched-matmul path for a few rows on CPU at inference (see the module doc).
    ``few_rows=False`` keeps this call on ``F.linear`` (None: :func:`few_rows_path`'s
    setting)."""
    if _takes_few_rows_path(x, weight, few_rows):
        return _few_rows_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose forward is :func:`linear`.

    ``few_rows_path``: this layer's setting for the batched-matmul path (None, the
    default: :func:`few_rows_path`'s; False: always ``F.linear``).
    """

    few_rows_path: bool | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """:func:`linear` with this layer's ``few_rows_path``: ``[..., in]`` -> ``[..., out]``."""
        return linear(input, self.weight, self.bias, self.few_rows_path)
