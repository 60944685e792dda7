"""Prefix reuse: seed-style decoding steps that feed the whole sequence run one token.

bert4torch's ``AutoRegressiveDecoder`` scripts re-read the whole sequence every step::

    token_ids = torch.cat([inputs[0], output_ids], 1)
    probas = model.predict([token_ids, segment_ids])[:, -1]

Inside a :class:`PrefixStore` block (``b4t.generation``'s decoder opens one around each
``predict`` call of a search; ``with reuse_prefixes(): ...`` does it for any other loop),
a causal model (``application='lm'`` / ``'unilm'`` encoders, the decoder LMs, the
seq2seq decoders) remembers its last call: the inputs, its KV cache and its outputs. A
call whose rows each extend a row of the last call (the same tokens, segments and other
inputs, one or more positions longer; rows may be reordered, repeated or dropped, as beam
search and sampling do) runs only the new positions over the cache. The earlier positions'
outputs cannot change (no earlier position sees a later one), so the returned outputs are
the earlier ones, rows selected, with the new positions appended: the same shapes and,
within float rounding, the same values as a full forward pass. That premise is proved on
every call: a ``unilm`` call whose new positions an earlier one sees (a segment-0 token
appended) runs in full. Any other call runs in full and starts a new entry.

Only calls in eval mode without gradients reuse anything; the store lives as long as the
block (a search), so no cache outlives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from b4t.models.kv_cache import KVCache, is_identity

__all__ = [
    "PREFIX_STAGES",
    "PrefixStore",
    "Premise",
    "active_store",
    "extend_outputs",
    "merge_head_outputs",
    "reuse_or_run",
    "reuse_prefixes",
    "select_and_extend",
    "select_rows",
    "unilm_premise",
]

_ACTIVE: ContextVar[PrefixStore | None] = ContextVar("b4t_models_prefix_store", default=None)

# marks the growable output buffers select_and_extend allocates (a tensor attribute)
_OWN_BUFFER = "_b4t_prefix_buffer"

# run(cache, past): the model's forward over positions past.. with ``cache`` (None: the
# plain forward, no reuse)
Runner = Callable[[KVCache | None, int], Any]
# merge(old outputs, new outputs [positions past..], parents, capacity) -> full outputs;
# parents: the old row of each new row, None when the rows stayed in place; capacity: the
# positions the run may reach (buffer size), or None
Merger = Callable[[Any, Any, "torch.Tensor | None", "int | None"], Any]
# premise(past) -> whether no position before ``past`` attends to a position from
# ``past`` on in this call's inputs (the mask's part of reuse's premise), checked per call
Premise = Callable[[int], bool]

PREFIX_STAGES = (
    "parse_inputs",
    "apply_embeddings",
    "apply_main_layers",
    "apply_final_layers",
    "layer_kwargs",
    "run_from",
)
"""The methods of :class:`~b4t.models.transformer.Transformer` that prefix reuse runs:
a subclass overriding one states its ``prefix_reuse`` (else it does not reuse)."""


@dataclass
class _Entry:
    """What one model's last call left: inputs, cache, outputs."""

    seq: list[torch.Tensor | None]  # (rows, length, ...) inputs aligned with the tokens
    fixed: list[torch.Tensor | None]  # other inputs (encoder output, condition), (rows, ...)
    cache: KVCache
    outputs: Any
    length: int
    total: int | None  # the positions this run may reach (from the store's max_steps)

    @property
    def rows(self) -> int:
        """Rows of the call (token ids come first in ``seq``)."""
        return int(next(s for s in self.seq if s is not None).shape[0])


class PrefixStore:
    """One decoding run's prefix entries, one per model; active inside ``with store:``.

    The same store may be entered many times (once per step); nesting is allowed.

    Args:
        max_steps: how many calls the run makes at most, each one token longer than the
            last (a decoder's ``maxlen``): caches and output buffers are then sized once
            for ``first length + max_steps - 1`` positions instead of growing.
    """

    def __init__(self, max_steps: int | None = None) -> None:
        self.max_steps = max_steps
        self.entries: dict[int, tuple[nn.Module, _Entry]] = {}
        self._tokens: list[Token[PrefixStore | None]] = []

    def __enter__(self) -> PrefixStore:
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._tokens.pop())

    def get(self, module: nn.Module) -> _Entry | None:
        held = self.entries.get(id(module))
        return held[1] if held is not None and held[0] is module else None

    def put(self, module: nn.Module, entry: _Entry) -> None:
        self.entries[id(module)] = (module, entry)

    def clear(self) -> None:
        """Drop every entry (their caches and outputs)."""
        self.entries.clear()


def active_store() -> PrefixStore | None:
    """The store of the innermost active ``with store:`` block, or None."""
    return _ACTIVE.get()


@contextmanager
def reuse_prefixes() -> Iterator[PrefixStore]:
    """``with reuse_prefixes(): ...``: a fresh store, active for the block, dropped after."""
    store = PrefixStore()
    try:
        with store:
            yield store
    finally:
        store.clear()


def _rows_match(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``(new_rows, old_rows)`` bool: row i of ``new`` equals row j of ``old`` everywhere."""
    a = new.reshape(new.shape[0], 1, -1)
    b = old.reshape(1, old.shape[0], -1)
    if a.shape[2] == 0:
        return torch.ones(a.shape[0], b.shape[1], dtype=torch.bool, device=new.device)
    return (a == b).all(-1)


def _find_parents(
    entry: _Entry, seq: Sequence[torch.Tensor | None], fixed: Sequence[torch.Tensor | None]
) -> torch.Tensor | None:
    """``(rows,)`` the old row each new row extends, or None when some row extends none."""
    past = entry.length
    length = next(s for s in seq if s is not None).shape[1]
    if length <= past or len(seq) != len(entry.seq) or len(fixed) != len(entry.fixed):
        return None
    match: torch.Tensor | None = None
    for new, old in zip(seq, entry.seq, strict=True):
        if (new is None) != (old is None):
            return None
        if new is None or old is None:
            continue
        if new.shape[1] != length or new.shape[2:] != old.shape[2:] or new.device != old.device:
            return None
        eq = _rows_match(new[:, :past], old)
        match = eq if match is None else match & eq
    if match is None:
        return None
    parents: list[int] = []
    for i, candidates in enumerate(match.tolist()):
        found = None
        for j, ok in enumerate(candidates):
            if ok and _fixed_equal(fixed, entry.fixed, i, j):
                found = j
                break
        if found is None:
            return None
        parents.append(found)
    return torch.tensor(parents, dtype=torch.long, device=match.device)


def _fixed_equal(
    new: Sequence[torch.Tensor | None], old: Sequence[torch.Tensor | None], i: int, j: int
) -> bool:
    """Whether row ``i`` of every new fixed input equals row ``j`` of the old one."""
    for a, b in zip(new, old, strict=True):
        if (a is None) != (b is None):
            return False
        if a is None or b is None:
            continue
        if a.shape[1:] != b.shape[1:] or not torch.equal(a[i], b[j]):
            return False
    return True


def select_rows(tensor: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
    """``tensor[parents]`` along dim 0 (``tensor`` itself when ``parents`` is None)."""
    return tensor if parents is None else tensor.index_select(0, parents.to(tensor.device))


def select_and_extend(
    old: torch.Tensor,
    new: torch.Tensor,
    parents: torch.Tensor | None,
    capacity: int | None = None,
) -> torch.Tensor:
    """``old[parents]`` ``(rows, past, ...)`` followed by ``new`` ``(rows, n, ...)`` on dim 1
    (``parents`` None: the rows stayed in place).

    The result is a view ``buffer[:, :past + n]`` of a buffer with room to grow (to
    ``capacity`` positions when given and large enough, else an eighth more): when the
    rows stay in place and ``old`` is such a view with room left, ``new`` is written
    after it and nothing else is copied (a decoding step then costs its new positions,
    not the whole ``(rows, length, vocab)`` history). Positions a returned view covers
    are never written again, so earlier results stay as they were.
    """
    past, n = old.shape[1], new.shape[1]
    rows = new.shape[0]
    base = old._base
    if (
        parents is None
        and base is not None
        and getattr(base, _OWN_BUFFER, False)  # only buffers made here are written into
        and base.is_contiguous()
        and base.shape[0] == rows
        and base.shape[2:] == old.shape[2:]
        and base.shape[1] >= past + n
        and old.storage_offset() == base.storage_offset()
        and old.stride() == base.stride()
        and base.dtype == new.dtype
    ):
        base[:, past : past + n] = new
        return base[:, : past + n]
    if capacity is None or capacity < past + n:
        capacity = past + n + max(16, (past + n) // 8)
    buf = new.new_empty((rows, capacity, *new.shape[2:]))
    setattr(buf, _OWN_BUFFER, True)
    if parents is None:
        buf[:, :past] = old
    else:
        for row, parent in enumerate(parents.tolist()):  # no (rows, past, ...) temporary
            buf[row, :past] = old[parent]
    buf[:, past : past + n] = new
    return buf[:, : past + n]


def extend_outputs(
    old: Any, new: Any, parents: torch.Tensor | None, capacity: int | None = None
) -> Any:
    """The :data:`Merger` of outputs that all run along positions: a tensor or a list of
    tensors, each :func:`select_and_extend`-ed."""
    if isinstance(new, list | tuple):
        return [select_and_extend(o, n, parents, capacity) for o, n in zip(old, new, strict=True)]
    return select_and_extend(old, new, parents, capacity)


def merge_head_outputs(
    old: Any,
    new: Any,
    parents: torch.Tensor | None,
    capacity: int | None,
    along_positions: Sequence[bool],
) -> Any:
    """The :data:`Merger` of an encoder's outputs ``[hidden, *heads]``: the hidden states
    (or the list of every layer's) extended, then each head's output extended when it
    runs along the positions (``along_positions``: MLM scores) or its old rows selected
    (pooled, NSP: from the first position, which never sees a later one). With no heads
    the output is the hidden states alone."""
    if not along_positions:
        return extend_outputs(old, new, parents, capacity)
    merged = [extend_outputs(old[0], new[0], parents, capacity)]
    for k, is_seq in enumerate(along_positions, start=1):
        if is_seq:
            merged.append(select_and_extend(old[k], new[k], parents, capacity))
        else:
            merged.append(select_rows(old[k], parents))
    return merged


def unilm_premise(segment_ids: torch.Tensor | None) -> Premise:
    """The premise of an ``application='unilm'`` call: query ``i`` sees key ``j`` iff
    ``cumsum(s)[j] <= cumsum(s)[i]`` (:func:`b4t.layers.masks.unilm_mask`), so no position
    before ``past`` sees one from ``past`` on iff ``cumsum(s)`` grows at ``past`` in
    every row (the first new token is a target token)."""

    def premise(past: int) -> bool:
        if segment_ids is None or past < 1:
            return False  # one bidirectional segment: every position sees the new ones
        c = torch.cumsum(segment_ids.long(), dim=1)
        return bool((c[:, past:] > c[:, past - 1 : past]).all())

    return premise


def reuse_or_run(
    module: nn.Module,
    seq: Sequence[torch.Tensor | None],
    fixed: Sequence[torch.Tensor | None],
    run: Runner,
    merge: Merger,
    num_layers: int,
    premise: Premise | None = None,
) -> Any:
    """Run ``module``'s forward, over the new positions only where a prefix is reusable.

    Args:
        module: the model (its entry in the store is keyed by it).
        seq: inputs aligned with the tokens, ``(rows, length, ...)`` (token ids first;
            None for an input not given).
        fixed: the other inputs, ``(rows, ...)``, equal row for row to be reusable.
        run: ``run(cache, past)`` the forward over positions ``past..`` with ``cache``
            (``run(None, 0)``: the plain forward).
        merge: ``merge(old_outputs, new_outputs, parents, capacity)`` the full outputs.
        num_layers: attention layers (cache size).
        premise: ``premise(past)``: whether, in this call's inputs, no position before
            ``past`` sees a later one (None: always, a causal mask). Checked on every
            call that would reuse; where it fails the call runs in full (a ``unilm``
            step that appends a segment-0 token changes every earlier source position).
    """
    store = active_store()
    if store is None or module.training or torch.is_grad_enabled():
        return run(None, 0)
    entry = store.get(module)
    parents = _find_parents(entry, seq, fixed) if entry is not None else None
    if parents is not None and premise is not None and not premise(entry.length):
        parents = None
    length = next(s for s in seq if s is not None).shape[1]
    if entry is None or parents is None:
        if entry is not None:
            store.entries.pop(id(module), None)  # free the stale cache before the new one
        cache = KVCache(num_layers)
        total = length + store.max_steps - 1 if store.max_steps else None
        if total is not None:
            cache.limit_length(total)
        outputs = run(cache, 0)
    else:
        cache = entry.cache
        if is_identity(parents, entry.rows):
            parents = None  # rows in place: nothing to select, in the cache or the outputs
        else:
            cache.reorder(parents)
        new_outputs = run(cache, entry.length)
        total = entry.total
        outputs = merge(entry.outputs, new_outputs, parents, total)
    store.put(module, _Entry(list(seq), list(fixed), cache, outputs, length, total))
    return outputs
