"""The bookkeeping of random sampling over a batch of independent problems.

:class:`Samples` holds every unfinished sample as one row: its ids, which sample it is
(``slots``: problem ``slot // n``), the model inputs and decoding states that go with it.
A finished sample leaves the rows at once (:meth:`Samples.retire`). The sampling loop
itself is :meth:`b4t.generation.AutoRegressiveDecoder.random_sample`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from b4t.generation.states import select_states

__all__ = ["Samples"]


@dataclass
class Samples:
    """``n`` samples for each of ``problems`` problems, one row per unfinished sample.

    Attributes:
        output_ids: ``(rows, length)`` ids of the unfinished samples.
        slots: ``(rows,)`` which sample each row is (``problem * n + j``).
        inputs: the model inputs, ``(rows, ...)`` each, following the rows.
        states: the decoding states, following the rows (see :func:`select_states`).
        finished: per problem, its samples' slots in the order they finished.
        latest: each sample's ids as last seen (kept when it finishes or streams).
    """

    problems: int
    n: int
    output_ids: torch.Tensor
    slots: torch.Tensor
    inputs: list[torch.Tensor]
    states: Any
    finished: list[list[int]] = field(init=False)
    latest: dict[int, torch.Tensor] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.finished = [[] for _ in range(self.problems)]

    def select(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (long or bool) of the ids, slots, inputs and states."""
        self.output_ids, self.slots = self.output_ids[index], self.slots[index]
        self.inputs = [i[index] for i in self.inputs]
        rows = index.nonzero().flatten() if index.dtype == torch.bool else index
        self.states = select_states(self.states, rows)

    def remember(self) -> None:
        """Note every row's current ids (what a stream shows)."""
        self.latest.update(zip(self.slots.tolist(), self.output_ids))

    def _record(self, slots: torch.Tensor, output_ids: torch.Tensor) -> None:
        for slot, ids in zip(slots.tolist(), output_ids):
            self.finished[slot // self.n].append(slot)
            self.latest[slot] = ids

    def retire(self, done: torch.Tensor) -> None:
        """Rows ``done`` (a ``(rows,)`` bool mask) have finished: record them and drop them."""
        self._record(self.slots[done], self.output_ids[done])
        self.select(~done)

    def current(self) -> list[list[torch.Tensor]]:
        """Every sample's latest ids, ``n`` per problem."""
        n = self.n
        return [[self.latest[b * n + j] for j in range(n)] for b in range(self.problems)]

    def final(self) -> list[list[torch.Tensor]]:
        """Per problem: the finished samples in the order they finished, then the others."""
        self._record(self.slots, self.output_ids)  # the unfinished ones, cut at maxlen
        return [[self.latest[slot] for slot in self.finished[b]] for b in range(self.problems)]
