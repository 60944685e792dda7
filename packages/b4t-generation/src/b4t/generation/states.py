"""Selecting rows of decoding states (a KV cache or anything batch-first).

During beam search every step keeps some rows (beams) and drops or repeats
others; sampling drops finished rows. The states a ``predict`` returns must
follow the same rows, so the decoder calls :func:`select_states` with the
indices of the rows to keep, in their new order.

Supported states:

- ``None`` (nothing to select);
- a ``torch.Tensor`` whose dim 0 is the row (batch) dim, e.g. a key cache of
  shape ``(rows, heads, seq, head_dim)``;
- any nesting of ``tuple``, ``list`` and ``dict`` holding the above (the
  usual ``((k, v), (k, v), ...)`` past key/values);
- an object with ``reorder_cache(indices)`` that reorders it in place (b4t's
  ``KVCache``, transformers' ``Cache``), or with an ``index_select(indices)`` method
  returning the selected object. When both exist the in-place one is used: the decoder
  owns the states it passes around, and reordering a cache layer by layer keeps one
  layer's copy alive beside it instead of a second cache.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["select_states"]


def select_states(states: Any, indices: torch.Tensor) -> Any:
    """Return ``states`` with dim 0 of every tensor indexed by ``indices`` (an object with
    ``reorder_cache`` is reordered in place and returned).

    Args:
        states: ``None``, a tensor ``(rows, ...)``, a nested tuple/list/dict of
            those, or an object with ``reorder_cache`` (in place) or ``index_select``.
        indices: ``(new_rows,)`` long tensor of row numbers (may repeat rows).

    Returns:
        The same structure with ``new_rows`` rows everywhere.
    """
    if states is None:
        return None
    if isinstance(states, torch.Tensor):
        if states.dim() == 0:
            raise ValueError("cannot select rows of a 0-dim tensor in the decoding states")
        return states.index_select(0, indices.to(states.device))
    if isinstance(states, tuple):
        selected = [select_states(s, indices) for s in states]
        if hasattr(states, "_fields"):  # a namedtuple keeps its type
            return type(states)(*selected)
        return tuple(selected)
    if isinstance(states, list):
        return [select_states(s, indices) for s in states]
    if isinstance(states, dict):
        return {key: select_states(value, indices) for key, value in states.items()}
    if hasattr(states, "reorder_cache"):
        states.reorder_cache(indices)
        return states
    if hasattr(states, "index_select"):
        return states.index_select(indices)
    raise TypeError(
        f"cannot select rows of decoding states of type {type(states).__name__}: use tensors, "
        "tuples, lists or dicts of tensors, or give the object an index_select(indices) method"
    )
