"""torch's CPU int4 layout (``_convert_weight_to_int4pack_for_cpu``): packing into it
(:func:`int4pack_parts`), reading codes back (:func:`int4pack_codes`) and reading rows
straight out of it.

The layout is private to torch, so nothing here assumes it: :func:`block_positions`
measures where each code of a 128-row matrix lands (the hexadecimal-digit trick of
:func:`int4pack_codes`) and accepts the layout only when it is
*row-block local*: rows ``64 b .. 64 b + 63`` fill the nibbles ``64 b K .. 64 (b + 1) K``
of the packed buffer, each block laid out alike. Then the codes of any rows are a
gather (:func:`gather_rows`), which lets a tied embedding table read its rows from the
LM head's packed codes instead of keeping a second copy; where the check fails (another
torch, a row count that is not whole blocks) the callers keep their canonical codes.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ROW_BLOCK",
    "block_positions",
    "gather_all_rows",
    "gather_rows",
    "int4pack_codes",
    "int4pack_join",
    "int4pack_parts",
    "int4pack_rows_or_codes",
]

ROW_BLOCK = 64
"""Rows per block of the layout :func:`block_positions` accepts."""

_POSITIONS: dict[int, torch.Tensor | None] = {}


def block_positions(in_features: int) -> torch.Tensor | None:
    """``[ROW_BLOCK, in_features]`` int64: the nibble (within its block) holding code
    ``(r, k)`` of a block's row ``r``; None when this torch's layout is not row-block
    local for this width (or has no int4 CPU packing)."""
    if in_features in _POSITIONS:
        return _POSITIONS[in_features]
    from b4t.layers.quantized import kernel_available

    positions = None
    if kernel_available("int4pack") and in_features % 2 == 0:
        rows = 2 * ROW_BLOCK
        zeros = torch.zeros(rows, in_features, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(zeros, 2)
        int4pack_codes(packed, rows, in_features)  # measures (and caches) the permutation
        order = _INT4PACK_PERMUTATIONS[(rows, in_features)]  # packed nibble -> flat index
        where = torch.empty_like(order)
        where[order] = torch.arange(order.numel())
        where = where.reshape(rows, in_features)
        first = where[:ROW_BLOCK]
        span = ROW_BLOCK * in_features
        if int(first.max()) < span and torch.equal(where[ROW_BLOCK:], first + span):
            positions = first.contiguous()
    _POSITIONS[in_features] = positions
    return positions


def gather_rows(
    packed: torch.Tensor, rows: torch.Tensor, out_features: int, in_features: int
) -> torch.Tensor | None:
    """The uint8 codes ``[len(rows), in_features]`` of output rows ``rows`` (int64) of a
    matrix packed by torch's CPU int4 packing; None when the layout is not row-block local
    (see :func:`block_positions`) or ``out_features`` is not whole blocks."""
    positions = block_positions(in_features)
    if positions is None or out_features % ROW_BLOCK:
        return None
    nibble = (rows // ROW_BLOCK).unsqueeze(1) * (ROW_BLOCK * in_features)
    nibble = nibble + positions.index_select(0, rows % ROW_BLOCK)
    data = packed.reshape(-1).index_select(0, (nibble >> 1).reshape(-1)).reshape(nibble.shape)
    shift = ((nibble & 1) * 4).to(torch.uint8)
    return (data >> shift) & 0x0F


def gather_all_rows(
    packed: torch.Tensor, out_features: int, in_features: int, chunk: int = 4096
) -> torch.Tensor | None:
    """Every row's codes ``[out, in]`` uint8 through :func:`gather_rows`, ``chunk`` rows at
    a time (bounded scratch memory); None where :func:`gather_rows` cannot read them."""
    parts = []
    for start in range(0, out_features, chunk):
        rows = torch.arange(start, min(start + chunk, out_features))
        part = gather_rows(packed, rows, out_features, in_features)
        if part is None:
            return None
        parts.append(part)
    return torch.cat(parts)


_INT4PACK_PERMUTATIONS: dict[tuple[int, int], torch.Tensor] = {}


def int4pack_rows_or_codes(packed: torch.Tensor, out_features: int, in_features: int):
    """``[out, in]`` codes of torch's int4 layout: a row gather where the layout is
    row-block local (fast, bounded memory: :mod:`b4t.layers.int4pack_rows`), else the
    measured full permutation."""
    codes = gather_all_rows(packed, out_features, in_features)
    return int4pack_codes(packed, out_features, in_features) if codes is None else codes


def int4pack_codes(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Undo ``_convert_weight_to_int4pack_for_cpu``: torch's packed layout -> ``[out, in]``
    uint8 codes. The layout is private to torch (it changed between versions), so the
    permutation is measured, not assumed: pack the hexadecimal digits of each position's
    flat index and read them back from the nibbles."""
    from b4t.layers.quantized import unpack_int4

    key = (out_features, in_features)
    order = _INT4PACK_PERMUTATIONS.get(key)
    if order is None:
        count = out_features * in_features
        index = torch.arange(count, dtype=torch.int64)
        order = torch.zeros(count, dtype=torch.int64)
        for digit in range(max(1, math.ceil(math.log(count, 16)))):
            hexdigit = ((index >> (4 * digit)) & 0xF).to(torch.int32).reshape(key)
            nib = unpack_int4(torch.ops.aten._convert_weight_to_int4pack_for_cpu(hexdigit, 2))
            order |= nib.reshape(-1).to(torch.int64) << (4 * digit)
        if count <= 1 << 22:  # 32 MiB of indices at most; larger ones are redone
            _INT4PACK_PERMUTATIONS[key] = order
    codes = torch.empty(out_features * in_features, dtype=torch.uint8)
    codes[order] = unpack_int4(packed).reshape(-1)
    return codes.reshape(out_features, in_features)


def int4pack_parts(
    codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor | None, bits: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """torch's int4 layout for canonical codes: a list of (packed codes, bfloat16
    ``[groups, out, 2]`` scale and zero) whose products add up to the layer's (one part for
    4 bits, two for 8 bits; see the module doc)."""

    def part(nibbles: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(nibbles.to(torch.int32), 2)
        scale_zero = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
        return packed, scale_zero

    scales = scales.float()
    if bits == 4:
        zero = mins.float() + 8 * scales if mins is not None else torch.zeros_like(scales)
        return [part(codes, scales, zero)]
    wide = codes.to(torch.int16)
    return [
        part((wide >> 4) + 8, 16 * scales, torch.zeros_like(scales)),
        part(wide & 0x0F, scales, 8 * scales),
    ]


def int4pack_join(parts: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of :func:`int4pack_parts` on codes read back: one part's uint8 codes as
    they are (4 bits); for 8 bits, ``hi`` and ``lo`` joined into int8 ``16 * (hi - 8) + lo``."""
    if len(parts) == 1:
        return parts[0]
    hi, lo = parts
    return ((hi.to(torch.int16) - 8) * 16 + lo.to(torch.int16)).to(torch.int8)
