"""Transformer-XL / XLNet relative attention (bert4torch's ``XlnetLayer`` and friends).

* :class:`XlnetPositionsEncoding`: the sinusoid table of relative distances, sines in
  the first half of each row and cosines in the second (not interleaved).
* :func:`rel_shift_xl` / :func:`rel_shift_xlnet`: turn scores against the position table
  into scores against key positions (the two papers' index tricks).
* :class:`RelativeMultiHeadAttention`: content + position (+ segment) attention with the
  learned biases ``r_w_bias``, ``r_r_bias`` (and ``r_s_bias``), on an optional memory.
* :class:`XlnetLayer`: attention and feed-forward, post-norm (XLNet, Transformer-XL's
  default) or pre-norm.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers.feed_forward import PositionWiseFeedForward
from b4t.layers.linear import Linear
from b4t.layers.norms import LayerNorm

__all__ = [
    "RelativeMultiHeadAttention",
    "XlnetLayer",
    "XlnetPositionsEncoding",
    "rel_shift_xl",
    "rel_shift_xlnet",
]


class XlnetPositionsEncoding(nn.Module):
    """Sinusoid embeddings of (relative) positions, ``[sin | cos]`` halves.

    Row for position ``p``: ``[sin(p * f_0), ..., sin(p * f_{E/2-1}), cos(p * f_0), ...]``
    with ``f_k = 10000 ** (-2k / E)``. The frequencies are computed in ``forward`` (no
    buffer, so a model built on the ``meta`` device needs nothing restored).

    ``forward(pos_seq [R])`` (any numeric dtype) -> ``[R, E]`` float32.
    """

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        if embedding_size % 2:
            raise ValueError(f"XlnetPositionsEncoding needs an even size, got {embedding_size}")
        self.embedding_size = embedding_size

    def forward(self, pos_seq: torch.Tensor) -> torch.Tensor:
        """Embed the distances ``pos_seq [R]`` -> ``[R, embedding_size]`` float32."""
        steps = torch.arange(0, self.embedding_size, 2, device=pos_seq.device, dtype=torch.float)
        inv_freq = 1.0 / (10000 ** (steps / self.embedding_size))
        angles = pos_seq.float()[:, None] * inv_freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def rel_shift_xl(scores: torch.Tensor) -> torch.Tensor:
    """Transformer-XL's shift: ``[B, N, Q, R=K]`` scores against the table ``K-1 .. 0`` ->
    scores against keys, ``out[..., i, j] = scores[..., i, j + Q - 1 - i]`` wherever that
    index exists (the cells a causal mask keeps; the others hold wrapped values)."""
    b, n, q, k = scores.shape
    padded = torch.cat([scores.new_zeros(b, n, q, 1), scores], dim=-1)
    return padded.view(b, n, k + 1, q)[:, :, 1:].reshape(b, n, q, k)


def rel_shift_xlnet(scores: torch.Tensor, klen: int) -> torch.Tensor:
    """XLNet's shift: ``[B, N, Q, R]`` scores against the table ``K .. -Q+1`` (``R = K + Q``)
    -> ``[B, N, Q, K]``, ``out[..., i, j] = scores[..., i, j + Q - i]`` (distance
    ``(K - Q) + i - j``, the query's position minus the key's)."""
    b, n, q, r = scores.shape
    shifted = scores.reshape(b, n, r, q)[:, :, 1:].reshape(b, n, q, r - 1)
    return shifted[..., :klen]


class RelativeMultiHeadAttention(nn.Module):
    """Relative-position attention of Transformer-XL / XLNet (no projection biases).

    ``score[i, j] = ((q_i + r_w_bias) . k_j + shift((q_i + r_r_bias) . r)[i, j]
    + (q_i + r_s_bias) . seg_embed[s_ij]) / sqrt(d)``, with ``r`` the projected position
    table and ``s_ij`` 1 where query ``i`` and key ``j`` are in different segments.

    Args:
        hidden_size: model width ``H``.
        num_attention_heads: number of heads ``N`` (``d = H / N``).
        attention_probs_dropout_prob: dropout on the attention weights.
        segment_vocab_size: > 0 adds XLNet's segment term (``seg_embed``, ``r_s_bias``).
        own_biases: hold ``r_w_bias`` / ``r_r_bias`` / ``r_s_bias`` here (XLNet's
            ``untie_r``); otherwise the model passes shared ones to ``forward``.
        rel_shift: ``'xlnet'`` (table of ``K + Q`` rows) or ``'transformer_xl'`` (``K``).

    Parameters: ``q``, ``k``, ``v``, ``r``, ``o`` (``nn.Linear`` ``[H, H]``, no bias),
    ``r_w_bias``, ``r_r_bias``, ``r_s_bias`` ``[N, d]``, ``seg_embed`` ``[S, N, d]``.

    ``forward(context [B, K, H], pos_emb [R, H], keep [B|1, 1, Q, K] bool | None,
    seg_mat [B, Q, K] long | None, qlen, r_w_bias, r_r_bias, r_s_bias)`` -> ``[B, Q, H]``;
    the queries are the last ``qlen`` (default ``K``) rows of ``q(context)``, the memory
    the first ``K - Q``; ``keep`` False hides a key. ``keys_values``, ``attend`` and
    ``output`` are the three steps, for the two-stream layer.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_probs_dropout_prob: float = 0.0,
        segment_vocab_size: int = 0,
        own_biases: bool = True,
        rel_shift: str = "xlnet",
    ) -> None:
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                f"{num_attention_heads}"
            )
        if rel_shift not in ("xlnet", "transformer_xl"):
            raise ValueError(f"rel_shift must be 'xlnet' or 'transformer_xl', got {rel_shift!r}")
        self.num_heads = num_attention_heads
        self.head_size = hidden_size // num_attention_heads
        self.rel_shift = rel_shift
        self.segment_vocab_size = segment_vocab_size
        for name in ("q", "k", "v", "r", "o"):
            setattr(self, name, Linear(hidden_size, hidden_size, bias=False))
        shape = (num_attention_heads, self.head_size)
        self.r_w_bias = nn.Parameter(torch.zeros(shape)) if own_biases else None
        self.r_r_bias = nn.Parameter(torch.zeros(shape)) if own_biases else None
        has_seg = segment_vocab_size > 0
        self.r_s_bias = nn.Parameter(torch.zeros(shape)) if own_biases and has_seg else None
        self.seg_embed = nn.Parameter(torch.zeros(segment_vocab_size, *shape)) if has_seg else None
        self.dropout = nn.Dropout(attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_size).transpose(1, 2)

    def forward(
        self,
        context: torch.Tensor,
        pos_emb: torch.Tensor,
        keep: torch.Tensor | None = None,
        seg_mat: torch.Tensor | None = None,
        qlen: int | None = None,
        r_w_bias: torch.Tensor | None = None,
        r_r_bias: torch.Tensor | None = None,
        r_s_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend the last ``qlen`` rows of ``context [B, K, H]`` to all ``K`` -> ``[B, Q, H]``.

        ``pos_emb [R, H]`` embeds the distances, ``keep [B|1, 1, Q, K]`` (False hides a key),
        ``seg_mat [B, Q, K]`` marks keys of the other segment; the three biases ``[N, d]`` are
        the model's shared ones when the layer holds none (``own_biases=False``).
        """
        klen = context.shape[1]
        qlen = klen if qlen is None else qlen
        q = self._heads(self.q(context[:, klen - qlen :]))  # [B, N, Q, d]
        k, v, r = self.keys_values(context, pos_emb)
        out = self.attend(q, k, v, r, keep, seg_mat, r_w_bias, r_r_bias, r_s_bias)
        return self.output(out)

    def keys_values(
        self, context: torch.Tensor, pos_emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys, values ``[B, N, K, d]`` of ``context`` and the projected table ``[R, N, d]``."""
        k = self._heads(self.k(context))
        v = self._heads(self.v(context))
        r = self.r(pos_emb.to(context.dtype)).view(-1, self.num_heads, self.head_size)
        return k, v, r

    def output(self, heads: torch.Tensor) -> torch.Tensor:
        """``[B, N, Q, d]`` per-head results -> ``o`` projection ``[B, Q, H]``."""
        b, _, q, _ = heads.shape
        return self.o(heads.transpose(1, 2).reshape(b, q, -1))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        r: torch.Tensor,
        keep: torch.Tensor | None = None,
        seg_mat: torch.Tensor | None = None,
        r_w_bias: torch.Tensor | None = None,
        r_r_bias: torch.Tensor | None = None,
        r_s_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Queries ``[B, N, Q, d]`` (query ``i`` at the ``i``-th of the last ``Q`` key
        positions) over keys / values ``[B, N, K, d]`` -> ``[B, N, Q, d]``."""
        r_w_bias = self.r_w_bias if r_w_bias is None else r_w_bias
        r_r_bias = self.r_r_bias if r_r_bias is None else r_r_bias
        r_s_bias = self.r_s_bias if r_s_bias is None else r_s_bias
        if r_w_bias is None or r_r_bias is None:
            raise ValueError(
                "RelativeMultiHeadAttention without own biases needs r_w_bias, r_r_bias"
            )
        klen = k.shape[2]
        content = torch.einsum("bnid,bnjd->bnij", q + r_w_bias[:, None], k)
        position = torch.einsum("bnid,jnd->bnij", q + r_r_bias[:, None], r)
        if self.rel_shift == "xlnet":
            position = rel_shift_xlnet(position, klen)
        else:
            position = rel_shift_xl(position)
        scores = content + position
        if self.seg_embed is not None and seg_mat is not None:
            if r_s_bias is None:
                raise ValueError("the segment term needs r_s_bias (shared or per layer)")
            per_seg = torch.einsum("bnid,snd->bnis", q + r_s_bias[:, None], self.seg_embed)
            one_hot = F.one_hot(seg_mat, self.segment_vocab_size).to(per_seg.dtype)
            scores = scores + torch.einsum("bijs,bnis->bnij", one_hot, per_seg)
        scores = scores / math.sqrt(self.head_size)
        if keep is not None:
            scores = scores.float().masked_fill(~keep, -1e30)
        probs = self.dropout(torch.softmax(scores, dim=-1).to(v.dtype))
        return torch.matmul(probs, v)


class XlnetLayer(nn.Module):
    """One Transformer-XL / XLNet block (bert4torch's ``XlnetLayer``).

    Post-norm (default): ``h = norm1(x + attn([mem; x]))``, ``out = norm2(h + ffn(h))``.
    Pre-norm (``pre_lnorm``): ``h = x + attn(norm1([mem; x]))``,
    ``out = h + ffn(norm2(h))``.

    Args (bert4torch's order): hidden_size, num_attention_heads, dropout_rate,
        attention_probs_dropout_prob, intermediate_size, hidden_act; then keywords
        ``pre_lnorm``, ``layer_norm_eps``, ``segment_vocab_size``, ``own_biases``,
        ``rel_shift`` (see :class:`RelativeMultiHeadAttention`).

    Submodules (0.2.5's names): ``multiHeadAttention`` (its parameters ``q``, ``k``,
    ``v``, ``r``, ``o``, ``r_w_bias``, ``r_r_bias``, ``r_s_bias``, ``seg_embed`` as 0.2.5's),
    ``layerNorm1``, ``feedForward`` (``intermediate``, ``output``; 0.2.5's
    ``intermediateDense`` / ``outputDense`` load), ``layerNorm2``.

    ``forward(hidden_states [B, Q, H], segment_ids [B, Q, K] | None, pos_emb [R, H],
    attention_mask [B|1, 1, Q, K] | None, mems_i [B, M, H] | None)`` -> ``[B, Q, H]``
    (``K = M + Q``), 0.2.5's order: ``segment_ids`` is the 0/1 "other segment" matrix,
    ``attention_mask`` is 1 (or True) where a key is visible.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        dropout_rate: float,
        attention_probs_dropout_prob: float,
        intermediate_size: int,
        hidden_act: str = "gelu",
        pre_lnorm: bool = False,
        layer_norm_eps: float = 1e-12,
        segment_vocab_size: int = 0,
        own_biases: bool = True,
        rel_shift: str = "xlnet",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.pre_lnorm = pre_lnorm
        self.multiHeadAttention = RelativeMultiHeadAttention(
            hidden_size,
            num_attention_heads,
            attention_probs_dropout_prob,
            segment_vocab_size=segment_vocab_size,
            own_biases=own_biases,
            rel_shift=rel_shift,
        )
        self.layerNorm1 = LayerNorm(hidden_size, eps=layer_norm_eps)
        self.feedForward = PositionWiseFeedForward(
            hidden_size, intermediate_size, dropout_rate, hidden_act, is_dropout=True
        )
        self.layerNorm2 = LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout_rate)
        self.dropout2 = nn.Dropout(dropout_rate)

    def forward(
        self,
        hidden_states: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        pos_emb: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mems_i: torch.Tensor | None = None,
        conditional_emb: torch.Tensor | None = None,
        **shared_biases: torch.Tensor | None,
    ) -> torch.Tensor:
        """Run the block: ``hidden_states [B, Q, H]``, memory ``mems_i [B, M, H]`` -> ``[B, Q, H]``.

        Arguments as in the class docstring; ``shared_biases`` (``r_w_bias``, ``r_r_bias``,
        ``r_s_bias``) go to the attention.

        Raises:
            ValueError: ``pos_emb`` is missing, or ``conditional_emb`` is given.
        """
        if pos_emb is None:
            raise ValueError("XlnetLayer needs pos_emb (XlnetPositionsEncoding of the distances)")
        if conditional_emb is not None:
            raise ValueError("XlnetLayer has no conditional LayerNorm (conditional_emb)")
        keep = None if attention_mask is None else attention_mask.bool()
        hidden = hidden_states
        context = hidden if mems_i is None else torch.cat([mems_i.to(hidden.dtype), hidden], 1)
        if self.pre_lnorm:
            context = self.layerNorm1(context)
        attn = self.multiHeadAttention(
            context, pos_emb, keep, segment_ids, hidden.shape[1], **shared_biases
        )
        hidden = hidden + self.dropout1(attn)
        if not self.pre_lnorm:
            hidden = self.layerNorm1(hidden)
        ffn_in = self.layerNorm2(hidden) if self.pre_lnorm else hidden
        hidden = hidden + self.dropout2(self.feedForward(ffn_in))
        if not self.pre_lnorm:
            hidden = self.layerNorm2(hidden)
        return hidden

    def forward_two_stream(
        self,
        hidden: torch.Tensor,
        query: torch.Tensor,
        target_mapping: torch.Tensor,
        pos_emb: torch.Tensor,
        keep_content: torch.Tensor | None,
        keep_query: torch.Tensor | None,
        seg_mat: torch.Tensor | None = None,
        mems: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """XLNet's two-stream attention (pre-training / permutation LM).

        The content stream ``hidden [B, Q, H]`` is :meth:`forward`'s. The query stream
        ``query [B, P, H]`` holds one vector per predicted token; ``target_mapping [B, P,
        Q]`` places prediction ``p`` at its position (one-hot rows). Its queries attend to
        the content keys under ``keep_query`` (which, unlike ``keep_content``, hides each
        position's own token). Both streams share every weight. Returns ``(hidden,
        query)``.
        """
        if self.pre_lnorm:
            raise ValueError("two-stream attention is XLNet's post-norm block (pre_lnorm=False)")
        att = self.multiHeadAttention
        context = hidden if mems is None else torch.cat([mems.to(hidden.dtype), hidden], dim=1)
        k, v, r = att.keys_values(context, pos_emb)
        q_h = att._heads(att.q(hidden))
        content = att.output(att.attend(q_h, k, v, r, keep_content, seg_mat))
        q_g = torch.einsum("bnpd,bpl->bnld", att._heads(att.q(query)), target_mapping)
        per_position = att.attend(q_g, k, v, r, keep_query, seg_mat)
        predicted = att.output(torch.einsum("bnld,bpl->bnpd", per_position, target_mapping))
        hidden = self.layerNorm1(hidden + self.dropout1(content))
        query = self.layerNorm1(query + self.dropout1(predicted))
        hidden = self.layerNorm2(hidden + self.dropout2(self.feedForward(hidden)))
        query = self.layerNorm2(query + self.dropout2(self.feedForward(query)))
        return hidden, query
