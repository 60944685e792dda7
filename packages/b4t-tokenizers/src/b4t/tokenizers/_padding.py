"""``sequence_padding``: pad ragged lists, numpy arrays or torch tensors to one shape."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


_MODES = {"post": "post", "right": "post", "pre": "pre", "left": "pre"}


def sequence_padding(
    inputs: Sequence[Any],
    length: int | Sequence[int] | None = None,
    value: Any = 0,
    seq_dims: int = 1,
    mode: str = "post",
) -> Any:
    """Pad (or cut) the first ``seq_dims`` axes of every input to ``length`` and stack them.

    Args:
        inputs: ``n`` lists / numpy arrays of shape ``(l_1, ..., l_seq_dims, *rest)``,
            or torch tensors (only when torch is already imported; this function
            never imports it).
        length: the target size per padded axis; an int for ``seq_dims=1``;
            ``None`` takes the largest size of each axis.
        value: the fill value.
        seq_dims: how many leading axes are padded.
        mode: ``'post'``/``'right'`` pads after the data, ``'pre'``/``'left'``
            before it. Cutting always keeps the first ``length`` items.

    Returns:
        An array (numpy, or torch for tensor inputs) of shape ``(n, *length, *rest)``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be 'post'/'right' or 'pre'/'left', got {mode!r}")
    if seq_dims < 1:
        raise ValueError(f"seq_dims must be >= 1, got {seq_dims}")
    if len(inputs) == 0:
        raise ValueError("sequence_padding needs at least one input")
    pre = _MODES[mode] == "pre"
    torch = sys.modules.get("torch")
    is_torch = torch is not None and isinstance(inputs[0], torch.Tensor)
    if is_torch:
        arrays = list(inputs)
    else:
        import numpy as np

        arrays = [np.asarray(x) for x in inputs]
    shapes = [tuple(a.shape) for a in arrays]
    if any(len(s) < seq_dims for s in shapes):
        raise ValueError(f"every input needs at least seq_dims={seq_dims} axes, got {shapes}")
    rest = shapes[0][seq_dims:]
    for s in shapes:
        if s[seq_dims:] != rest:
            raise ValueError(f"inputs differ beyond the padded axes: {s} vs {shapes[0]}")
    target = _target_lengths(shapes, length, seq_dims)
    out = _filled((len(arrays), *target, *rest), value, arrays, torch if is_torch else None)
    for i, a in enumerate(arrays):
        src = tuple(slice(0, min(a.shape[d], target[d])) for d in range(seq_dims))
        piece = a[src]
        if pre:
            dst = tuple(slice(target[d] - piece.shape[d], target[d]) for d in range(seq_dims))
        else:
            dst = tuple(slice(0, piece.shape[d]) for d in range(seq_dims))
        out[(i, *dst)] = piece
    return out


def _target_lengths(
    shapes: list[tuple[int, ...]], length: int | Sequence[int] | None, seq_dims: int
) -> list[int]:
    """The padded size of each of the first ``seq_dims`` axes (``None``: the largest)."""
    if length is None:
        return [max(s[d] for s in shapes) for d in range(seq_dims)]
    if isinstance(length, int):
        return [length] * seq_dims
    target = list(length)
    if len(target) != seq_dims:
        raise ValueError(f"length has {len(target)} entries for seq_dims={seq_dims}")
    return target


def _filled(shape: tuple[int, ...], value: Any, arrays: list[Any], torch: Any) -> Any:
    """An array of ``shape`` filled with ``value``: a tensor like ``arrays[0]`` when
    ``torch`` is given, else numpy in the type all ``arrays`` fit."""
    if torch is not None:
        return torch.full(shape, value, dtype=arrays[0].dtype, device=arrays[0].device)
    import numpy as np

    return np.full(shape, value, dtype=np.result_type(*[a.dtype for a in arrays]))
