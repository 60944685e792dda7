"""The bookkeeping of a beam search over a batch of independent problems.

:class:`Beams` holds every live beam as one row: its ids, its accumulated score, the
model inputs and decoding states that go with it. Rows are grouped by problem
(``groups``: ``(problem, rows)`` in row order); each step keeps every problem's best
``width`` candidates (:meth:`Beams.extend`) and a problem whose best beam has ended is
done (:meth:`Beams.retire_finished`). The search loop itself is
:meth:`b4t.generation.AutoRegressiveDecoder.beam_search`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from b4t.generation.states import select_states

__all__ = ["Beams", "select_beams"]


def select_beams(
    candidates: torch.Tensor, groups: list[tuple[int, int]], width: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Keep each problem's best ``width[problem]`` candidates.

    Args:
        candidates: ``(rows, vocab)`` accumulated scores, rows grouped by problem.
        groups: ``(problem, rows)`` for each problem, in row order.
        width: the beams each problem keeps.

    Returns:
        parent rows ``(new_rows,)``, next tokens ``(new_rows,)``, their
        scores ``(new_rows,)`` and the new ``(problem, rows)`` groups.
    """
    vocab = candidates.shape[1]
    sizes = {rows for _, rows in groups}
    widths = {width[problem] for problem, _ in groups}
    if len(sizes) == 1 and len(widths) == 1:  # every problem alike: one batched topk
        rows = sizes.pop()
        k = min(widths.pop(), rows * vocab)
        top_scores, top_index = candidates.reshape(len(groups), rows * vocab).topk(k, dim=1)
        base = torch.arange(len(groups), device=candidates.device).reshape(-1, 1) * rows
        parent = base + torch.div(top_index, vocab, rounding_mode="floor")
        return (
            parent.reshape(-1),
            (top_index % vocab).reshape(-1),
            top_scores.reshape(-1),
            [(problem, k) for problem, _ in groups],
        )
    parents, tokens, scores, new_groups = [], [], [], []
    row = 0
    for problem, rows in groups:
        block = candidates[row : row + rows].reshape(-1)
        k = min(width[problem], block.numel())
        top_scores, top_index = block.topk(k)
        parents.append(row + torch.div(top_index, vocab, rounding_mode="floor"))
        tokens.append(top_index % vocab)
        scores.append(top_scores)
        new_groups.append((problem, k))
        row += rows
    return torch.cat(parents), torch.cat(tokens), torch.cat(scores), new_groups


@dataclass
class Beams:
    """The live beams of ``len(results)`` problems, one row each, grouped by problem.

    Attributes:
        output_ids: ``(rows, length)`` ids of every beam.
        scores: ``(rows,)`` accumulated log-probabilities.
        groups: ``(problem, rows)`` of the problems still searching, in row order.
        width: the beams each problem keeps (shrinks as its beams end).
        results: each problem's finished sequence, ``None`` while it searches.
        inputs: the model inputs, ``(rows, ...)`` each, following the beams.
        states: the decoding states, following the beams (see :func:`select_states`).
    """

    output_ids: torch.Tensor
    scores: torch.Tensor
    groups: list[tuple[int, int]]
    width: list[int]
    results: list[torch.Tensor | None]
    inputs: list[torch.Tensor]
    states: Any

    @classmethod
    def start(
        cls,
        first_output_ids: torch.Tensor,
        problems: int,
        topk: int,
        inputs: list[torch.Tensor],
        states: Any,
    ) -> Beams:
        """One beam per problem holding ``first_output_ids`` ``(1, length)``."""
        return cls(
            output_ids=first_output_ids.repeat(problems, 1),
            scores=torch.zeros(problems, device=first_output_ids.device),
            groups=[(b, 1) for b in range(problems)],
            width=[int(topk)] * problems,
            results=[None] * problems,
            inputs=inputs,
            states=states,
        )

    def _select(self, index: torch.Tensor) -> None:
        """Keep the rows ``index`` of the inputs and states (the ids are the caller's)."""
        self.inputs = [i[index] for i in self.inputs]
        self.states = select_states(self.states, index)

    def extend(self, step_scores: torch.Tensor) -> None:
        """Grow every problem's beams by one token given ``step_scores`` ``(rows, vocab)``."""
        candidates = self.scores.reshape(-1, 1) + step_scores  # (rows, vocab)
        rows = self.output_ids.shape[0]
        parent, token, self.scores, groups = select_beams(candidates, self.groups, self.width)
        del candidates  # (rows, vocab): not alive during the next predict
        # one row per problem, one kept per problem: every row stays where it is (greedy)
        in_place = len(self.groups) == rows == parent.numel()
        self.groups = groups
        self.output_ids = torch.cat([self.output_ids[parent], token.reshape(-1, 1)], 1)
        if not in_place:
            self._select(parent)

    def retire_finished(self, end_id: int, min_ends: int) -> None:
        """A problem whose best beam ends with its ``min_ends``-th ``end_id`` is done (that
        beam is its result); other problems drop their ended beams and keep fewer."""
        output_ids = self.output_ids
        is_end = output_ids[:, -1] == end_id
        finished = (is_end & ((output_ids == end_id).sum(1) >= min_ends)).tolist()
        score_list = self.scores.tolist()
        keep: list[int] = []
        kept_groups: list[tuple[int, int]] = []
        row = 0
        for problem, rows in self.groups:
            best = max(range(row, row + rows), key=score_list.__getitem__)
            if finished[best]:
                self.results[problem] = output_ids[best]
            else:
                alive = [r for r in range(row, row + rows) if not finished[r]]
                keep.extend(alive)
                kept_groups.append((problem, len(alive)))
                self.width[problem] = len(alive)
            row += rows
        if len(keep) < output_ids.shape[0]:
            index = torch.tensor(keep, dtype=torch.long, device=output_ids.device)
            self.output_ids = output_ids[index]
            self.scores = self.scores[index]
            self._select(index)
            self.groups = kept_groups

    def best(self) -> list[torch.Tensor]:
        """Every problem's current best sequence (its result once it has one)."""
        current = list(self.results)
        score_list = self.scores.tolist()
        row = 0
        for problem, rows in self.groups:
            best = max(range(row, row + rows), key=score_list.__getitem__)
            current[problem] = self.output_ids[best]
            row += rows
        return [c for c in current if c is not None]

    def final(self) -> list[torch.Tensor]:
        """Every problem's result: problems still searching take their best beam."""
        row = 0
        for problem, rows in self.groups:
            best = row + int(self.scores[row : row + rows].argmax())
            self.results[problem] = self.output_ids[best]
            row += rows
        return [r for r in self.results if r is not None]
