"""Relative position encodings: NEZHA functional, T5 buckets, DeBERTa-v2 log buckets.

Sign conventions follow each original model:

* NEZHA and T5 use ``key_pos - query_pos`` (``j - i``).
* DeBERTa uses ``query_pos - key_pos`` (``i - j``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from b4t.layers.attention import MultiHeadAttention

__all__ = [
    "NezhaAttention",
    "NezhaRelativePositions",
    "RelativePositionsEncoding",
    "RelativePositionsEncodingDebertaV2",
    "T5RelativePositionBias",
    "deberta_log_bucket_position",
    "deberta_relative_position",
    "nezha_relative_table",
    "relative_distance",
    "t5_relative_position_bucket",
]


def relative_distance(q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """``(q_len, k_len)`` long tensor with ``[i, j] = j - i`` (key minus query)."""
    q = torch.arange(q_len, device=device)
    k = torch.arange(k_len, device=device)
    return k[None, :] - q[:, None]


# --------------------------------------------------------------------------- NEZHA


def nezha_relative_table(
    num_relative: int, depth: int, device: torch.device | None = None
) -> Tensor:
    """Sinusoid table of NEZHA's functional relative positions, shape ``(num_relative, depth)``.

    Row ``r`` holds ``sin(r * w_k)`` at even features ``2k`` and ``cos(r * w_k)`` at
    odd features ``2k+1``, with ``w_k = 10000 ** (-2k / depth)``. Rows are indexed by
    the clipped distance shifted to be non-negative, as in NEZHA's reference code.
    """
    if depth % 2 != 0:
        raise ValueError(f"NEZHA relative position depth must be even, got {depth}")
    rows = torch.arange(num_relative, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(
        torch.arange(0, depth, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / depth)
    )
    table = torch.empty(num_relative, depth, device=device)
    table[:, 0::2] = torch.sin(rows * freq)
    table[:, 1::2] = torch.cos(rows * freq)
    return table


class NezhaRelativePositions(nn.Module):
    """NEZHA functional (fixed, parameter-free) relative position encodings.

    ``forward(q_len, k_len)`` returns ``(q_len, k_len, depth)``: entry ``[i, j]`` is
    row ``clip(j - i, -m, m) + m`` of :func:`nezha_relative_table` with
    ``m = max_relative_position``. NEZHA adds ``q_i . R[i, j]`` to the attention
    logits and ``sum_j p_ij R[i, j]`` to the attention output.
    """

    def __init__(self, depth: int, max_relative_position: int = 64) -> None:
        super().__init__()
        if max_relative_position < 1:
            raise ValueError(f"max_relative_position must be >= 1, got {max_relative_position}")
        self.depth = depth
        self.max_relative_position = max_relative_position
        self._cache: dict[tuple[int, int, int, torch.device, torch.dtype], Tensor] = {}

    def forward(
        self,
        q_len: int,
        k_len: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        offset: int = 0,
    ) -> Tensor:
        """``(q_len, k_len, depth)``; query ``i`` sits at position ``offset + i``."""
        key = (q_len, k_len, offset, torch.device(device or "cpu"), dtype)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            m = self.max_relative_position
            index = (relative_distance(q_len, k_len, device) - offset).clamp(-m, m) + m
            table = nezha_relative_table(2 * m + 1, self.depth, device)
            self._cache[key] = table[index].to(dtype)
        return self._cache[key]


def _drop_seed_buffer(name: str):
    """A load-state-dict pre-hook dropping bert4torch's saved copy of a recomputed table."""

    def hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        state_dict.pop(prefix + name, None)

    return hook


class RelativePositionsEncoding(NezhaRelativePositions):
    """bert4torch's NEZHA relative positions: ``RelativePositionsEncoding(qlen, klen,
    embedding_size, max_relative_position=127)``, ``forward(qlen, klen)`` ->
    ``(qlen, klen, embedding_size)``.

    The same table as :class:`NezhaRelativePositions`, limited to ``qlen x klen``.
    bert4torch materialised the whole table as a buffer (``position_embeddings``, 64 MiB
    per layer for 512 positions and head size 64); here it is computed for the lengths
    asked (the full one is the ``position_embeddings`` property) and a saved copy in a
    bert4torch state dict is dropped on load.
    """

    def __init__(
        self, qlen: int, klen: int, embedding_size: int, max_relative_position: int = 127
    ) -> None:
        super().__init__(embedding_size, max_relative_position)
        self.qlen, self.klen = qlen, klen
        self.register_load_state_dict_pre_hook(_drop_seed_buffer("position_embeddings"))

    @property
    def position_embeddings(self) -> Tensor:
        """The full ``(qlen, klen, embedding_size)`` table bert4torch kept as a buffer."""
        return super().forward(self.qlen, self.klen)

    def forward(
        self,
        qlen: int,
        klen: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        offset: int = 0,
    ) -> Tensor:
        if qlen + offset > self.qlen or klen > self.klen:
            raise ValueError(
                f"RelativePositionsEncoding was built for ({self.qlen}, {self.klen}) "
                f"positions, asked for ({qlen + offset}, {klen})"
            )
        return super().forward(qlen, klen, device, dtype, offset)


class NezhaAttention(MultiHeadAttention):
    """Multi-head attention with NEZHA's functional relative positions (eager path).

    Scores: ``(q_i . k_j + q_i . R[i, j]) / sqrt(D)``; context:
    ``sum_j p_ij (v_j + R[i, j])``, with ``R`` from :class:`RelativePositionsEncoding`
    of depth ``D`` (shared by all heads, :class:`NezhaRelativePositions`).

    Args (beyond :class:`MultiHeadAttention`):
        max_relative_position: the clipping distance (64 in NEZHA checkpoints).
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int | None = None,
        max_relative_position: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(hidden_size, num_attention_heads, attention_head_size, **kwargs)
        self.relative_positions = NezhaRelativePositions(self.head_size, max_relative_position)

    def needs_eager(self, **kwargs: Any) -> bool:
        return True

    def _table(self, x: Tensor, q_len: int, k_len: int) -> Tensor:
        # with a KV cache the queries are the last q_len of the k_len positions
        return self.relative_positions(q_len, k_len, x.device, x.dtype, k_len - q_len)

    def attention_scores(self, q: Tensor, k: Tensor, **kwargs: Any) -> Tensor:
        r = self._table(q, q.shape[-2], k.shape[-2])  # (Q, K, D)
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores + torch.einsum("bnqd,qkd->bnqk", q, r)
        return scores * self.scale

    def attention_context(self, probs: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
        r = self._table(v, probs.shape[-2], probs.shape[-1])
        return torch.matmul(probs, v) + torch.einsum("bnqk,qkd->bnqd", probs, r)


# --------------------------------------------------------------------------- T5


def t5_relative_position_bucket(
    relative_position: Tensor,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> Tensor:
    """Map ``key - query`` distances to T5 buckets.

    Half the buckets (all of them when causal) cover distances exactly up to
    ``num_buckets // 2`` (of that half), the rest grow logarithmically up to
    ``max_distance``; farther distances share the last bucket. Bidirectional
    mode gives positive distances (keys after the query) the upper half.
    Causal mode maps keys after the query to bucket 0.

    Args:
        relative_position: long tensor of ``j - i``, any shape.

    Returns:
        long tensor of bucket ids in ``[0, num_buckets)``, same shape.
    """
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    exact = num_buckets // 2
    scaled = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (scaled * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class T5RelativePositionBias(nn.Module):
    """Learned per-head bias from T5 buckets: ``forward(q_len, k_len) -> (1, heads, q, k)``.

    The parameter is ``relative_attention_bias.weight`` of shape ``(num_buckets, heads)``,
    named as in T5 checkpoints.
    """

    def __init__(
        self,
        num_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, q_len: int, k_len: int, offset: int = 0) -> Tensor:
        """The bias for ``q_len`` queries and ``k_len`` keys -> ``[1, heads, q_len, k_len]``.

        ``offset`` is the position of the first query (cached decoding: the past length).
        """
        device = self.relative_attention_bias.weight.device
        rel = relative_distance(q_len, k_len, device) - offset
        buckets = t5_relative_position_bucket(
            rel, self.bidirectional, self.num_buckets, self.max_distance
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)


# --------------------------------------------------------------------------- DeBERTa-v2


def deberta_log_bucket_position(
    relative_pos: Tensor, bucket_size: int, max_position: int
) -> Tensor:
    """DeBERTa-v2 log buckets: exact inside ``(-bucket_size/2, bucket_size/2)``, log beyond.

    A distance ``d`` with ``|d| >= mid = bucket_size // 2`` becomes
    ``sign(d) * (mid + ceil(log(|d| / mid) / log((max_position - 1) / mid) * (mid - 1)))``.
    Returns a long tensor of the same shape as ``relative_pos``.
    """
    mid = bucket_size // 2
    distance = relative_pos.abs()
    # clamp keeps the log finite inside the exact window, where it is not used;
    # float32 ops in this order reproduce the reference bucket ids exactly
    ratio = distance.clamp(min=mid).to(torch.float32) / mid
    denom = torch.log(torch.tensor((max_position - 1) / mid, dtype=torch.float32))
    log_pos = torch.ceil(torch.log(ratio) / denom * (mid - 1)) + mid
    far = (torch.sign(relative_pos) * log_pos).long()
    return torch.where(distance <= mid, relative_pos, far)


def deberta_relative_position(
    q_len: int,
    k_len: int,
    bucket_size: int = -1,
    max_position: int = -1,
    device: torch.device | None = None,
) -> Tensor:
    """``(q_len, k_len)`` long tensor of ``i - j`` (query minus key), log-bucketed when
    both ``bucket_size`` and ``max_position`` are positive."""
    rel = -relative_distance(q_len, k_len, device)
    if bucket_size > 0 and max_position > 0:
        rel = deberta_log_bucket_position(rel, bucket_size, max_position)
    return rel


class RelativePositionsEncodingDebertaV2(nn.Module):
    """bert4torch's DeBERTa-v2 relative positions: ``RelativePositionsEncodingDebertaV2(qlen,
    klen, position_buckets, max_position)``, ``forward(qlen, klen)`` -> ``(1, qlen, klen)``
    long tensor of ``i - j``, log-bucketed (:func:`deberta_log_bucket_position`) when
    ``position_buckets`` and ``max_position`` are both positive.

    The ids are kept as the buffer ``relative_position`` of shape ``(1, qlen, klen)``, as
    bert4torch saves it.
    """

    def __init__(self, qlen: int, klen: int, position_buckets: int, max_position: int) -> None:
        super().__init__()
        buckets = position_buckets if position_buckets is not None else -1
        rel = deberta_relative_position(qlen, klen, buckets, max_position or -1)
        self.register_buffer("relative_position", rel.unsqueeze(0))

    @staticmethod
    def make_log_bucket_position(
        relative_pos: Tensor, bucket_size: int, max_position: int
    ) -> Tensor:
        """bert4torch's name for :func:`deberta_log_bucket_position`; float32 ids, as
        bert4torch returns them (its constructor casts them to long)."""
        return deberta_log_bucket_position(relative_pos, bucket_size, max_position).float()

    def forward(self, qlen: int, klen: int) -> Tensor:
        """The (bucketed) distances ``i - j``, ``qlen`` x ``klen`` -> ``[1, qlen, klen]`` long."""
        return self.relative_position[:, :qlen, :klen]
