"""b4t's own KV cache: per-layer key/value buffers that grow in place.

A :class:`KVCache` belongs to one decoding run of one model. Each attention layer gets
its :class:`LayerKV` as ``past_key_value`` and calls ``update(k, v)``: the new keys and
values are written into a preallocated buffer (no ``torch.cat`` of the whole history per
step) and the whole ``[B, N, past + new, D]`` views come back.

Buffers grow by an eighth of their length (at least 16 positions) when full, so a run
holds at most about 12 % more than its keys and values, and copies each one a bounded
number of times; :meth:`KVCache.limit_length` (which the generation loops call with
prompt + ``maxlen``) keeps them from growing past what the run can need.

Beam search and sampling keep, repeat and drop rows; :meth:`KVCache.index_select`
returns a new cache holding the chosen rows, :meth:`KVCache.reorder` (what
:func:`b4t.generation.select_states` calls, as ``reorder_cache``) does the same in place
one layer at a time, so the old rows of only one layer are alive beside the new ones,
and :meth:`KVCache.select` prunes finished rows. The cache also keeps the padding mask
of the cached positions, so a call that gives only the new tokens' mask still masks the
prompt's padding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["KVCache", "LayerKV", "is_identity"]

_GROW_MIN = 16  # the fewest extra positions a buffer gets when it is (re)allocated


def _capacity(needed: int) -> int:
    """Positions to allocate for ``needed`` ones: an eighth more, at least 16 more."""
    return needed + max(_GROW_MIN, needed // 8)


def is_identity(indices: torch.Tensor, rows: int) -> bool:
    """Whether selecting rows ``indices`` (1-D) of ``rows`` rows keeps them all in place."""
    return indices.numel() == rows and torch.equal(indices.cpu(), torch.arange(rows))


class LayerKV:
    """Keys and values of one attention layer, ``[B, N, length, D]`` each.

    ``update(k, v)`` appends ``[B, N, new, D]`` tensors and returns the whole keys and
    values; ``kv[0]`` / ``kv[1]`` are the cached keys / values (so code that asks
    ``past_key_value[0].shape[2]`` for the cached length works as with a ``(k, v)`` pair).
    """

    __slots__ = ("_k", "_v", "length", "max_length")

    def __init__(self, max_length: int | None = None) -> None:
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.length = 0
        self.max_length = max_length  # the run's total, when known: never allocate past it

    def _capacity(self, needed: int) -> int:
        capacity = _capacity(needed)
        if self.max_length is not None and needed <= self.max_length:
            capacity = min(capacity, self.max_length)
        return capacity

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new keys/values ``[B, N, new, D]``; return all ``[B, N, length, D]``."""
        new = k.shape[2]
        if self._k is None or self._v is None:
            shape = (*k.shape[:2], self._capacity(new), k.shape[3])
            self._k, self._v = k.new_empty(shape), v.new_empty((*shape[:3], v.shape[3]))
        else:
            if k.shape[0] != self._k.shape[0] or k.shape[1] != self._k.shape[1]:
                raise ValueError(
                    f"KV cache holds {self._k.shape[0]} rows x {self._k.shape[1]} heads but "
                    f"the new keys have {k.shape[0]} rows x {k.shape[1]} heads "
                    "(a cache from another batch or model?)"
                )
            if self.length + new > self._k.shape[2]:
                capacity = self._capacity(self.length + new)
                self._k = self._grow(self._k, capacity)
                self._v = self._grow(self._v, capacity)
        end = self.length + new
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self._k[:, :, :end], self._v[:, :, :end]

    def _grow(self, buf: torch.Tensor, capacity: int) -> torch.Tensor:
        out = buf.new_empty((*buf.shape[:2], capacity, buf.shape[3]))
        out[:, :, : self.length] = buf[:, :, : self.length]
        return out

    @property
    def capacity(self) -> int:
        """Positions the buffers hold before they must grow (0 while empty)."""
        return 0 if self._k is None else int(self._k.shape[2])

    def __getitem__(self, index: int) -> torch.Tensor:
        buf = (self._k, self._v)[index]
        if buf is None:
            raise IndexError("the layer cache is empty")
        return buf[:, :, : self.length]

    def __len__(self) -> int:
        return 2

    def index_select(self, indices: torch.Tensor) -> LayerKV:
        """A new layer cache holding rows ``indices`` (rows may repeat)."""
        out = LayerKV(self.max_length)
        out._k, out._v, out.length = self._k, self._v, self.length
        out.reorder_(indices)
        return out

    def reorder_(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` in place (each old buffer is freed as soon as it is copied)."""
        if self._k is not None and self._v is not None:
            idx = indices.to(self._k.device)
            self._k = self._k.index_select(0, idx)
            self._v = self._v.index_select(0, idx)


class KVCache:
    """The KV cache of a decoder: one :class:`LayerKV` per layer plus the padding mask.

    Args:
        num_layers: attention layers of the model (one layer cache each).

    Attributes:
        layers: the per-layer caches, in layer order.
        mask: ``[B, length]`` bool, True for the real (non-padding) cached tokens, or None
            before the first step.
        cross: encoder-decoder models only: per layer, the cross-attention ``(k, v)`` of
            the encoder output ``[B, N, S, D]`` (computed once, selected with the rows).
    """

    def __init__(self, num_layers: int) -> None:
        self.layers = [LayerKV() for _ in range(num_layers)]
        self.mask: torch.Tensor | None = None
        # encoder-decoder models: per layer, the cross-attention keys/values of the memory
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None

    @property
    def seq_len(self) -> int:
        """Cached positions."""
        return self.layers[0].length if self.layers else 0

    @property
    def batch_size(self) -> int | None:
        """Rows held, or None while empty."""
        return None if self.mask is None else int(self.mask.shape[0])

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerKV]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> LayerKV:
        return self.layers[index]

    def check(self, batch_size: int, num_layers: int) -> None:
        """Raise ValueError if this cache cannot serve a batch of ``batch_size`` rows of a
        model with ``num_layers`` layers."""
        if len(self.layers) != num_layers:
            raise ValueError(
                f"KV cache has {len(self.layers)} layers but the model has {num_layers} "
                "(a cache from another model?)"
            )
        if self.batch_size is not None and self.batch_size != batch_size:
            raise ValueError(
                f"KV cache holds {self.batch_size} rows but the input has {batch_size} "
                "(a cache from another batch? select its rows with cache.select(indices))"
            )

    def _rows(self, indices: torch.Tensor) -> torch.Tensor | None:
        """``indices`` as a long tensor, checked; None for the identity selection."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        rows = self.batch_size
        if rows is not None and is_identity(indices, rows):
            return None
        if indices.numel() and rows is not None and int(indices.max()) >= rows:
            raise IndexError(f"row {int(indices.max())} selected from a cache of {rows} rows")
        return indices

    def _selected_mask_and_cross(
        self, indices: torch.Tensor
    ) -> tuple[torch.Tensor | None, list[tuple[torch.Tensor, torch.Tensor] | None] | None]:
        mask = self.mask
        if mask is not None:
            mask = mask.index_select(0, indices.to(mask.device))
        cross = None
        if self.cross is not None:
            cross = [
                None
                if kv is None
                else (
                    kv[0].index_select(0, indices.to(kv[0].device)),
                    kv[1].index_select(0, indices.to(kv[1].device)),
                )
                for kv in self.cross
            ]
        return mask, cross

    def index_select(self, indices: torch.Tensor) -> KVCache:
        """A new cache holding rows ``indices`` in that order (beams: parents; rows may
        repeat); this cache is left as it was. The identity selection returns ``self``."""
        rows = self._rows(indices)
        if rows is None:
            return self
        out = KVCache(0)
        out.layers = [layer.index_select(rows) for layer in self.layers]
        out.mask, out.cross = self._selected_mask_and_cross(rows)
        return out

    def reorder(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` in place (beam search reordering), one layer at a time:
        the peak is this cache plus one layer's copy, not two caches."""
        rows = self._rows(indices)
        if rows is None:
            return
        for layer in self.layers:
            layer.reorder_(rows)
        self.mask, self.cross = self._selected_mask_and_cross(rows)

    def select(self, indices: torch.Tensor) -> None:
        """Keep only rows ``indices`` in place (drop finished rows); same as :meth:`reorder`."""
        self.reorder(indices)

    def reorder_cache(self, indices: torch.Tensor) -> None:
        """transformers' name for :meth:`reorder`."""
        self.reorder(indices)

    def limit_length(self, total: int) -> None:
        """Say that this run will hold at most ``total`` positions (prompt plus the tokens
        still to be fed), so no buffer grows past it: the decoding loops call it after the
        first step. A longer run still works; its buffers grow as usual past ``total``."""
        for layer in self.layers:
            layer.max_length = int(total)

    def __repr__(self) -> str:
        return f"KVCache(layers={len(self.layers)}, rows={self.batch_size}, length={self.seq_len})"
