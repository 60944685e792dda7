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

import torch
from torch import nn

__all__ = ["CRF"]

_REDUCTIONS = ("none", "sum", "mean", "token_mean")


class CRF(nn.Module):
    """Linear-chain CRF with learned start, end and transition scores.

    Args:
        num_tags: number of tags ``K`` (> 0).
        batch_first: if True (default) inputs are ``(batch, seq_len, ...)``,
            else ``(seq_len, batch, ...)``; outputs follow the same layout.

    Parameters:
        start_transitions: ``(K,)`` score of starting in each tag.
        end_transitions: ``(K,)`` score of ending in each tag.
        transitions: ``(K, K)``; ``transitions[i, j]`` scores the move from tag i to tag j.
    """

    def __init__(self, num_tags: int, batch_first: bool = True) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags <= 0:
            raise ValueError(f"CRF num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise all transition scores uniformly in [-0.1, 0.1]."""
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

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
        self, emissions: torch.Tensor, mask: torch.Tensor | None = None, pad_tag: int = 0
    ) -> torch.Tensor:
        """Best tag path per sequence by Viterbi.

        Args:
            emissions: ``(batch, seq_len, K)``.
            mask: ``(batch, seq_len)`` prefix mask, or None.
            pad_tag: the value written at padded positions.

        Returns:
            ``(batch, seq_len)`` long tensor (``(seq_len, batch)`` if not batch_first).
        """
        emissions, mask, _ = self._prepare(emissions, mask, None)
        paths = self._viterbi(emissions, mask, pad_tag)
        return paths if self.batch_first else paths.transpose(0, 1)

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

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor, pad_tag: int) -> torch.Tensor:
        """Viterbi: emissions ``(B, T, K)``, mask ``(B, T)`` -> best paths ``(B, T)``."""
        batch, seq_len, _ = emissions.shape
        best = self.start_transitions + emissions[:, 0]  # (B, K)
        backptr = []  # backptr[t-1][b, j]: best previous tag when tag j is at time t
        for t in range(1, seq_len):
            cand = best.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1)
            nxt, arg = cand.max(dim=1)  # (B, K)
            best = torch.where(mask[:, t].unsqueeze(1), nxt, best)
            backptr.append(arg)
        last_tag = (best + self.end_transitions).argmax(dim=1)  # (B,)
        ends = mask.long().sum(1) - 1  # (B,)
        paths = torch.full((batch, seq_len), pad_tag, dtype=torch.long, device=emissions.device)
        cur = last_tag
        for t in range(seq_len - 1, -1, -1):
            if t < seq_len - 1:
                from_next = backptr[t].gather(1, cur.unsqueeze(1)).squeeze(1)
                cur = torch.where(t >= ends, last_tag, from_next)
            paths[:, t] = torch.where(t <= ends, cur, paths[:, t])
        return paths
