"""DeBERTa(-v2/v3) disentangled self-attention: content-to-position and position-to-content.

With ``delta(i, j) = i - j`` (log-bucketed, see
:func:`b4t.layers.relative_positions.deberta_relative_position`), span ``S`` and
relative embeddings ``P`` of shape ``(2S, H)``, the score of query ``i`` on key ``j`` is

    (q_i . k_j  +  q_i . Pk[c(delta)]  +  k_j . Pq[c(-delta)]) / sqrt(D * f)

where ``c(x) = clip(x + S, 0, 2S - 1)``, ``Pk``/``Pq`` are ``P`` through the key/query
position projections (or the content ones with ``share_att_key``) and ``f`` is one plus
the number of position terms used (``c2p``, ``p2c``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from b4t.layers.attention import MultiHeadAttention

__all__ = ["DisentangledSelfAttention"]


class DisentangledSelfAttention(MultiHeadAttention):
    """Multi-head attention with DeBERTa's relative terms (always the eager path).

    Args (beyond :class:`MultiHeadAttention`):
        pos_att_type: the position terms, a subset of ``("c2p", "p2c")``.
        share_att_key: project relative embeddings with the content q/k projections.
        position_span: ``S``, half the rows of the relative embedding table
            (``position_buckets`` if positive, else ``max_relative_positions``).

    ``forward(..., rel_embeddings=P [2S, H], relative_pos=delta [Q, K])``; without
    ``rel_embeddings`` it is plain scaled attention with the DeBERTa scale.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        dropout_rate: float = 0.0,
        bias: bool = True,
        pos_att_type: Sequence[str] = ("c2p", "p2c"),
        share_att_key: bool = False,
        position_span: int = 512,
        **kwargs: Any,
    ) -> None:
        unknown = set(pos_att_type) - {"c2p", "p2c"}
        if unknown:
            raise ValueError(f"pos_att_type may hold 'c2p' and 'p2c' only, got {sorted(unknown)}")
        head = attention_head_size or hidden_size // num_attention_heads
        scale_factor = 1 + len(set(pos_att_type))
        super().__init__(
            hidden_size,
            num_attention_heads,
            attention_head_size=attention_head_size,
            dropout_rate=dropout_rate,
            bias=bias,
            scale=1.0 / math.sqrt(head * scale_factor),
            **kwargs,
        )
        self.pos_att_type = tuple(sorted(set(pos_att_type)))
        self.share_att_key = share_att_key
        self.position_span = position_span
        if not share_att_key:
            if "c2p" in self.pos_att_type:
                self.pos_key_proj = nn.Linear(hidden_size, self.inner_size, bias=True)
            if "p2c" in self.pos_att_type:
                self.pos_query_proj = nn.Linear(hidden_size, self.inner_size, bias=True)

    def needs_eager(self, **kwargs: Any) -> bool:
        return True

    def _project_positions(self, rel_embeddings: Tensor, which: str) -> Tensor:
        """``(2S, H)`` -> ``(N, 2S, D)`` through the key (``'k'``) or query (``'q'``) projection."""
        if self.share_att_key:
            part = 1 if which == "k" else 0
            w = self.qkv.weight[part * self.inner_size : (part + 1) * self.inner_size]
            b = None
            if self.qkv.bias is not None:
                b = self.qkv.bias[part * self.inner_size : (part + 1) * self.inner_size]
            out = F.linear(rel_embeddings, w, b)
        else:
            proj = self.pos_key_proj if which == "k" else self.pos_query_proj
            out = proj(rel_embeddings)
        return out.view(-1, self.num_heads, self.head_size).transpose(0, 1)

    def attention_scores(
        self,
        q: Tensor,
        k: Tensor,
        rel_embeddings: Tensor | None = None,
        relative_pos: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Scores ``[B, N, Q, K]``: content term plus the c2p / p2c position terms."""
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if rel_embeddings is None or not self.pos_att_type:
            return scores
        if relative_pos is None:
            raise ValueError("DisentangledSelfAttention got rel_embeddings without relative_pos")
        q_len, k_len = q.shape[-2], k.shape[-2]
        if relative_pos.shape != (q_len, k_len):
            raise ValueError(
                f"relative_pos has shape {tuple(relative_pos.shape)}, expected ({q_len}, {k_len})"
            )
        span = self.position_span
        rel_embeddings = rel_embeddings[: 2 * span]
        batch_heads = (q.shape[0], self.num_heads)
        if "c2p" in self.pos_att_type:
            pos_key = self._project_positions(rel_embeddings, "k")  # (N, 2S, D)
            c2p = torch.matmul(q, pos_key.transpose(-1, -2))  # (B, N, Q, 2S)
            index = (relative_pos + span).clamp(0, 2 * span - 1)
            c2p = torch.gather(c2p, -1, index.expand(*batch_heads, q_len, k_len))
            scores = scores + c2p * self.scale
        if "p2c" in self.pos_att_type:
            if q_len != k_len:
                raise ValueError(f"p2c needs as many queries as keys, got {q_len} and {k_len}")
            pos_query = self._project_positions(rel_embeddings, "q")  # (N, 2S, D)
            p2c = torch.matmul(k, pos_query.transpose(-1, -2))  # (B, N, K, 2S)
            index = (span - relative_pos).clamp(0, 2 * span - 1)
            p2c = torch.gather(p2c, -1, index.expand(*batch_heads, k_len, q_len))
            scores = scores + p2c.transpose(-1, -2) * self.scale
        return scores
