"""Transformer-XL's adaptive input embedding (bert4torch's ``AdaptiveEmbedding``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveEmbedding"]


class AdaptiveEmbedding(nn.Module):
    """Token embeddings whose width shrinks for rarer vocabulary bands (Baevski & Auli 2018).

    The vocabulary is cut at ``cutoffs`` into bands ``[0, c1), [c1, c2), ..., [ck,
    vocab_size)``; band ``i`` has embeddings of width ``embedding_size // div_val**i``,
    each projected to ``hidden_size`` by its own matrix. With ``div_val=1`` there is one
    table of width ``embedding_size`` (projected only if it differs from ``hidden_size``).
    The result is scaled by ``sqrt(hidden_size)``.

    Args (bert4torch's order):
        vocab_size, embedding_size, hidden_size: sizes.
        cutoffs: increasing band boundaries, each below ``vocab_size``.
        div_val: width divisor per band.
        sample_softmax: > 0 makes the single table sparse (bert4torch's flag).
        **kwargs: ignored, as in bert4torch.

    Parameters are named as bert4torch saves them: ``emb_layers.{i}.weight``
    ``(band_size, width_i)`` and ``emb_projs.{i}`` ``(hidden_size, width_i)``.

    ``forward(token_ids [...] long)`` -> ``[..., hidden_size]``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        cutoffs: Sequence[int],
        div_val: int = 1,
        sample_softmax: bool | int = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        bounds = [0, *cutoffs, vocab_size]
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(
                f"AdaptiveEmbedding cutoffs must increase strictly below vocab_size={vocab_size}, "
                f"got {list(cutoffs)}"
            )
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.div_val = div_val
        self.cutoffs = [*cutoffs, vocab_size]
        self.cutoff_ends = bounds
        self.emb_scale = hidden_size**0.5
        self.emb_layers = nn.ModuleList()
        self.emb_projs = nn.ParameterList()
        if div_val == 1:
            self.emb_layers.append(
                nn.Embedding(vocab_size, embedding_size, sparse=bool(sample_softmax))
            )
            if hidden_size != embedding_size:
                self.emb_projs.append(self._projection(embedding_size))
        else:
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                width = embedding_size // div_val**i
                if width < 1:
                    raise ValueError(
                        f"AdaptiveEmbedding band {i} has width {embedding_size} // {div_val}**{i}"
                        " = 0; use fewer cutoffs or a smaller div_val"
                    )
                self.emb_layers.append(nn.Embedding(hi - lo, width))
                self.emb_projs.append(self._projection(width))

    def _projection(self, width: int) -> nn.Parameter:
        weight = torch.empty(self.hidden_size, width)
        nn.init.normal_(weight, std=0.02)
        return nn.Parameter(weight)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Embed ``token_ids [...]`` (long, in ``[0, vocab_size)``) -> ``[..., hidden_size]``."""
        if token_ids.numel():
            low, high = int(token_ids.min()), int(token_ids.max())
            if low < 0 or high >= self.vocab_size:
                bad = high if high >= self.vocab_size else low
                raise ValueError(
                    f"token id {bad} is outside the vocabulary (size {self.vocab_size})"
                )
        if self.div_val == 1:
            out = self.emb_layers[0](token_ids)
            if len(self.emb_projs):
                out = F.linear(out, self.emb_projs[0])
            return out * self.emb_scale
        flat = token_ids.reshape(-1)
        weight = self.emb_projs[0]
        out = torch.zeros(flat.numel(), self.hidden_size, dtype=weight.dtype, device=weight.device)
        for i, (lo, hi) in enumerate(itertools.pairwise(self.cutoff_ends)):
            rows = ((flat >= lo) & (flat < hi)).nonzero().squeeze(1)
            if rows.numel():
                emb = self.emb_layers[i](flat[rows] - lo)
                out[rows] = F.linear(emb, self.emb_projs[i])
        return out.view(*token_ids.shape, self.hidden_size) * self.emb_scale
