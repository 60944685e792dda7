"""Dequantizing GGUF tensors: raw ggml bytes -> float32 torch tensors, one function per format.

Each block format stores ``block_size`` values in ``block_bytes`` bytes; a row of a
quantized ``[out, in]`` matrix is ``in / block_size`` consecutive blocks (the layout of
ggml's ``block_q4_0`` etc.):

* ``Q4_0``: 32 values in 18 bytes: an fp16 scale ``d``, then 16 bytes of 4-bit codes;
  byte ``j`` holds value ``j`` in its low nibble and value ``j + 16`` in its high
  nibble; ``x = (code - 8) * d``.
* ``Q4_1``: 32 values in 20 bytes: fp16 scale ``d``, fp16 minimum ``m``, 16 bytes of
  codes laid out as in Q4_0; ``x = code * d + m``.
* ``Q8_0``: 32 values in 34 bytes: fp16 scale ``d``, then 32 int8 codes; ``x = code * d``.
* ``F32`` / ``F16`` / ``BF16``: plain little-endian floats (one value per "block").

This module is the one place that knows the formats (a later packed-weight path will
keep the blocks and add matmul kernels next to these functions). The K-quants
(``Q4_K``, ``Q6_K``, ...) and the other ggml types raise :class:`UnsupportedQuantization`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "FORMATS",
    "QuantFormat",
    "UnsupportedQuantization",
    "dequantize",
    "dequantize_bf16",
    "dequantize_f16",
    "dequantize_f32",
    "dequantize_q4_0",
    "dequantize_q4_1",
    "dequantize_q8_0",
]


class UnsupportedQuantization(NotImplementedError):
    """A GGUF tensor type b4t cannot dequantize yet (K-quants, i-quants, ...)."""


def _fp16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 field at byte ``start`` of each block, as float32: ``[n_blocks, 1]``."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _nibbles(codes: torch.Tensor) -> torch.Tensor:
    """``[n_blocks, 16]`` packed bytes -> ``[n_blocks, 32]`` 4-bit codes (low nibbles
    are values 0..15, high nibbles values 16..31)."""
    return torch.cat([codes & 0x0F, codes >> 4], dim=1)


def dequantize_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    """``[n_blocks, 18]`` uint8 -> ``[n_blocks, 32]`` float32: ``(code - 8) * d``."""
    d = _fp16(blocks, 0)
    codes = _nibbles(blocks[:, 2:18]).to(torch.int8) - 8
    return codes.float() * d


def dequantize_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    """``[n_blocks, 20]`` uint8 -> ``[n_blocks, 32]`` float32: ``code * d + m``."""
    d = _fp16(blocks, 0)
    m = _fp16(blocks, 2)
    codes = _nibbles(blocks[:, 4:20])
    return codes.float() * d + m


def dequantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    """``[n_blocks, 34]`` uint8 -> ``[n_blocks, 32]`` float32: ``code * d``."""
    d = _fp16(blocks, 0)
    codes = blocks[:, 2:34].contiguous().view(torch.int8)
    return codes.float() * d


def dequantize_f32(blocks: torch.Tensor) -> torch.Tensor:
    """``[n, 4]`` uint8 -> ``[n, 1]`` float32 (a view of the same bytes: no copy)."""
    return blocks.view(torch.float32)


def dequantize_f16(blocks: torch.Tensor) -> torch.Tensor:
    """``[n, 2]`` uint8 -> ``[n, 1]`` float32."""
    return blocks.view(torch.float16).float()


def dequantize_bf16(blocks: torch.Tensor) -> torch.Tensor:
    """``[n, 2]`` uint8 -> ``[n, 1]`` float32."""
    return blocks.view(torch.bfloat16).float()


@dataclass(frozen=True)
class QuantFormat:
    """One GGUF tensor type: values per block, bytes per block, the block decoder."""

    name: str
    block_size: int
    block_bytes: int
    decode: Callable[[torch.Tensor], torch.Tensor]


FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in (
        QuantFormat("F32", 1, 4, dequantize_f32),
        QuantFormat("F16", 1, 2, dequantize_f16),
        QuantFormat("BF16", 1, 2, dequantize_bf16),
        QuantFormat("Q4_0", 32, 18, dequantize_q4_0),
        QuantFormat("Q4_1", 32, 20, dequantize_q4_1),
        QuantFormat("Q8_0", 32, 34, dequantize_q8_0),
    )
}


def dequantize(
    raw: torch.Tensor, type_name: str, shape: Sequence[int], name: str = ""
) -> torch.Tensor:
    """Decode one tensor's bytes.

    Args:
        raw: the tensor's bytes as a uint8 tensor (any shape; read in order).
        type_name: the ggml type name (``'Q4_1'``, ``'F32'``, ... as in
            ``gguf.GGMLQuantizationType``).
        shape: the logical shape, torch order (``[out, in]`` for a matrix; GGUF lists
            ``ne`` innermost first, i.e. reversed).
        name: the tensor's name, for error messages.

    Returns a float32 tensor of ``shape``.
    """
    fmt = FORMATS.get(type_name)
    label = f"tensor {name!r}" if name else "a tensor"
    if fmt is None:
        kind = "K-quant " if type_name.endswith("_K") else ""
        raise UnsupportedQuantization(
            f"{label} is stored as {kind}{type_name}, which b4t cannot dequantize yet "
            f"(supported: {', '.join(FORMATS)}); re-quantize the model to one of those "
            "(e.g. llama.cpp's llama-quantize ... Q8_0)"
        )
    count = 1
    for size in shape:
        count *= int(size)
    if count % fmt.block_size:
        raise ValueError(
            f"{label}: {count} values of shape {tuple(shape)} are not whole {type_name} "
            f"blocks of {fmt.block_size}"
        )
    n_blocks = count // fmt.block_size
    flat = raw.reshape(-1)
    if flat.dtype != torch.uint8 or flat.numel() != n_blocks * fmt.block_bytes:
        raise ValueError(
            f"{label}: {type_name} of shape {tuple(shape)} needs {n_blocks * fmt.block_bytes} "
            f"bytes, got {flat.numel()} ({flat.dtype})"
        )
    return fmt.decode(flat.view(n_blocks, fmt.block_bytes)).reshape(tuple(shape))
