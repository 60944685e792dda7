"""Linear-chain conditional random field (CRF) for sequence labelling.

A path ``y_1 .. y_L`` over ``num_tags`` tags scores

    s(y) = start[y_1] + sum_t emit[t, y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_L]

and has probability ``exp(s(y)) / Z`` with ``Z`` the sum over all ``num_tags ** L``
paths (computed by the forward algorithm). Padding is described by a mask whose
ones form a prefix of each row: sequence ``b`` has length ``mask[b].sum()``.

The call convention follows bert4torch (itself following pytorch-crf):
``crf(emissions, mask, tags)`` returns the negative log-likelihood (a loss),
``crf.decode(emissions, mask)`` returns the Viterbi paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["CRF"]

_REDUCTIONS = ("none", "sum", "mean", "token_mean")


class CRF(nn.Module):
    """Linear-chain CRF with learned start, end and transition scores.

    Args (bert4torch's order, then b4t's ``batch_first``):
        num_tags: number of tags ``K`` (> 0).
        init_transitions: optional initial ``(transitions (K, K), start (K,), end (K,))``
            (bert4torch's order), arrays or tensors; default uniform in [-0.1, 0.1].
        freeze: keep the scores fixed (registered as buffers, not parameters).
        batch_first: if True (default) inputs are ``(batch, seq_len, ...)``,
            else ``(seq_len, batch, ...)``; outputs follow the same layout.

    Unlike bert4torch 0.2.5, a mask with gaps (a 0 followed by a 1) is an error rather
    than a silently inconsistent score (``MIGRATION.md``).

    Attributes:
        start_transitions: ``(K,)`` score of starting in each tag.
        end_transitions: ``(K,)`` score of ending in each tag.
        transitions: ``(K, K)``; ``transitions[i, j]`` scores the move from tag i to tag j.
    """

    def __init__(
        self,
        num_tags: int,
        init_transitions: Sequence[Any] | None = None,
        freeze: bool = False,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags <= 0:
            raise ValueError(f"CRF num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        if init_transitions is None:
            values = [torch.empty(num_tags), torch.empty(num_tags), torch.empty(num_tags, num_tags)]
            for v in values:
                nn.init.uniform_(v, -0.1, 0.1)
        else:
            values = self._initial_values(init_transitions)
        for name, value in zip(("start_transitions", "end_transitions", "transitions"), values):
            if freeze:
                self.register_buffer(name, value)
            else:
                setattr(self, name, nn.Parameter(value))

    def _initial_values(self, init_transitions: Sequence[Any]) -> list[torch.Tensor]:
        """``(transitions, start, end)`` as bert4torch orders them -> ``[start, end, trans]``."""
        if len(init_transitions) != 3:
            raise ValueError(
                "CRF init_transitions must be (transitions, start_transitions, end_transitions), "
                f"got {len(init_transitions)} items"
            )
        k = self.num_tags
        out = []
        for name, value, shape in zip(
            ("transitions", "start_transitions", "end_transitions"),
            init_transitions,
            ((k, k), (k,), (k,)),
        ):
            tensor = torch.as_tensor(value, dtype=torch.float32).clone()
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"CRF init_transitions {name} must have shape {shape}, "
                    f"got {tuple(tensor.shape)}"
                )
            out.append(tensor)
        return [out[1], out[2], out[0]]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw all transition scores uniformly in [-0.1, 0.1]."""
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            p.uniform_(-0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, batch_first={self.batch_first}"

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor | None,
        tags: torch.Tensor,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Negative log-likelihood of ``tags`` (the training loss).

        Args:
            emissions: ``(batch, seq_len, K)`` float scores.
            mask: ``(batch, seq_len)`` with 1/True on real tokens (a prefix of each row,
                first column all on), or None for no padding.
            tags: ``(batch, seq_len)`` gold tag ids in ``[0, K)``; padded positions are ignored.
            reduction: ``'none'`` -> ``(batch,)``; ``'sum'``; ``'mean'`` over sequences;
                ``'token_mean'`` sum divided by the number of real tokens.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"CRF reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        emissions, mask, tags = self._prepare(emissions, mask, tags)
        nll = self._log_partition(emissions, mask) - self._path_score(emissions, tags, mask)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        return nll.sum() / mask.sum()

    def log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sequence log-likelihood ``log p(tags | emissions)``, shape ``(batch,)``."""
        emissions, mask, tags = self._prepare(emissions, mask, tags)
        return self._path_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def log_partition(
        self, emissions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log Z`` (log-sum-exp of all path scores) per sequence, shape ``(batch,)``."""
        emissions, mask, _ = self._prepare(emissions, mask, None)
        return self._log_partition(emissions, mask)

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unnormalised score ``s(tags)`` per sequence, shape ``(batch,)``."""
        emissions, mask, tags = self._prepare(emissions, mask, tags)
        return self._path_score(emissions, tags, mask)

    @torch.no_grad()
    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor | None = None,
        nbest: int | None = None,
        pad_tag: int | None = None,
    ) -> torch.Tensor:
        """Best tag paths by Viterbi (the ``nbest`` best with ``nbest > 1``).

        Args:
            emissions: ``(batch, seq_len, K)``.
            mask: ``(batch, seq_len)`` prefix mask, or None.
            nbest: how many paths per sequence, best first (None or 1: only the best).
                If a sequence has fewer than ``nbest`` paths the extra rows are arbitrary.
            pad_tag: the value written at padded positions (default 0).

        Returns:
            ``(batch, seq_len)`` long tensor, or ``(nbest, batch, seq_len)`` when
            ``nbest > 1`` (seq_len and batch swapped when not batch_first).
        """
        k = 1 if nbest is None else nbest
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"CRF decode nbest must be a positive int, got {nbest!r}")
        emissions, mask, _ = self._prepare(emissions, mask, None)
        paths = self._viterbi(emissions, mask, k, 0 if pad_tag is None else pad_tag)
        if not self.batch_first:
            paths = paths.transpose(1, 2)
        return paths[0] if nbest is None or nbest == 1 else paths

    # ------------------------------------------------------------------ internals
    def _prepare(
        self, emissions: torch.Tensor, mask: torch.Tensor | None, tags: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validate inputs and return batch-first ``emissions``, bool ``mask`` and ``tags``."""
        if not isinstance(emissions, torch.Tensor) or emissions.dim() != 3:
            shape = tuple(emissions.shape) if isinstance(emissions, torch.Tensor) else emissions
            raise ValueError(f"CRF emissions must be 3-D (batch, seq_len, num_tags), got {shape}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(
                f"CRF emissions last dimension must be num_tags={self.num_tags}, "
                f"got shape {tuple(emissions.shape)}"
            )
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            mask = None if mask is None else mask.transpose(0, 1)
            tags = None if tags is None else tags.transpose(0, 1)
        lead = tuple(emissions.shape[:2])
        if lead[1] == 0:
            raise ValueError("CRF emissions have seq_len 0; every sequence needs a token")
        if mask is None:
            mask = torch.ones(lead, dtype=torch.bool, device=emissions.device)
        else:
            if tuple(mask.shape) != lead:
                raise ValueError(
                    f"CRF mask shape {tuple(mask.shape)} does not match emissions (batch, seq_len)"
                    f" {lead}"
                )
            mask = mask.bool()
            if not bool(mask[:, 0].all()):
                raise ValueError("CRF mask must be on at the first timestep of every sequence")
            if lead[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise ValueError("CRF mask must be a prefix of ones per sequence (no gaps)")
        if tags is not None:
            if tuple(tags.shape) != lead:
                raise ValueError(
                    f"CRF tags shape {tuple(tags.shape)} does not match emissions (batch, seq_len)"
                    f" {lead}"
                )
            if tags.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
                raise TypeError(f"CRF tags must be an integer tensor, got {tags.dtype}")
            tags = tags.long()
            real = tags[mask]
            if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.num_tags):
                raise ValueError(
                    f"CRF tags must lie in [0, {self.num_tags}), got values "
                    f"{int(real.min())}..{int(real.max())}"
                )
            tags = tags.masked_fill(~mask, 0)
        return emissions, mask, tags

    def _path_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Score of the given paths: emissions ``(B, T, K)``, tags/mask ``(B, T)`` -> ``(B,)``."""
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        score = self.start_transitions[tags[:, 0]] + (emit * maskf).sum(1)
        if tags.size(1) > 1:
            trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            score = score + (trans * maskf[:, 1:]).sum(1)
        last = mask.long().sum(1) - 1  # (B,)
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)
        return score + self.end_transitions[last_tags]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward algorithm: emissions ``(B, T, K)``, mask ``(B, T)`` -> ``log Z`` ``(B,)``."""
        alpha = self.start_transitions + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            # (B, K_prev, 1) + (K_prev, K_next) + (B, 1, K_next) -> logsumexp over K_prev
            nxt = torch.logsumexp(
                alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1
            )
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    def _viterbi(
        self, emissions: torch.Tensor, mask: torch.Tensor, nbest: int, pad_tag: int
    ) -> torch.Tensor:
        """k-best Viterbi: emissions ``(B, T, K)``, mask ``(B, T)`` -> paths ``(nbest, B, T)``.

        A state is ``(tag, rank)``, flattened as ``tag * nbest + rank``: the rank-th best
        partial path ending in ``tag``. Masked steps keep their scores and point back to
        the same state, so the state at the last step is the state at each sequence end.
        """
        batch, seq_len, num_tags = emissions.shape
        device = emissions.device
        score = emissions.new_full((batch, num_tags, nbest), float("-inf"))
        score[:, :, 0] = self.start_transitions + emissions[:, 0]
        same_state = torch.arange(num_tags * nbest, device=device).view(1, num_tags, nbest)
        backptr = []  # backptr[t-1][b, j, r]: flat previous state of state (j, r) at time t
        for t in range(1, seq_len):
            # (B, K_prev, n, 1) + (1, K_prev, 1, K_next) + (B, 1, 1, K_next)
            cand = (
                score.unsqueeze(3)
                + self.transitions[None, :, None, :]
                + emissions[:, t, None, None, :]
            )
            top, arg = cand.reshape(batch, num_tags * nbest, num_tags).topk(nbest, dim=1)
            on = mask[:, t].view(batch, 1, 1)
            score = torch.where(on, top.transpose(1, 2), score)
            backptr.append(torch.where(on, arg.transpose(1, 2), same_state))
        final = (score + self.end_transitions[None, :, None]).reshape(batch, -1)
        state = final.topk(nbest, dim=1).indices  # (B, n)
        paths = torch.empty(batch, nbest, seq_len, dtype=torch.long, device=device)
        for t in range(seq_len - 1, -1, -1):
            paths[:, :, t] = torch.div(state, nbest, rounding_mode="floor")
            if t > 0:
                state = backptr[t - 1].reshape(batch, -1).gather(1, state)
        ends = mask.long().sum(1) - 1  # (B,)
        beyond = torch.arange(seq_len, device=device)[None, :] > ends[:, None]  # (B, T)
        paths = paths.masked_fill(beyond[:, None, :], pad_tag)
        return paths.transpose(0, 1)
