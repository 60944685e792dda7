"""bert4torch's classic layers: ``MultiHeadAttentionLayer``, ``BertLayer``, ``BertEmbeddings``.

These keep bert4torch 0.2.5's constructor arguments, positional order, forward inputs
and parameter names (``q``/``k``/``v``/``o``, ``multiHeadAttention``, ``layerNorm1``,
``feedForward``, ...), so code and state dicts written for it work unchanged. b4t's own
models use the leaner :class:`~b4t.layers.MultiHeadAttention` (fused QKV) and
:class:`~b4t.layers.TransformerBlock`; the two families compute the same thing.

Masks follow bert4torch: ``attention_mask`` holds 1 on keys to attend to and 0
elsewhere, broadcastable to ``[B, heads, Q, K]`` (usually ``[B, 1, 1, K]`` or
``[B, 1, Q, K]``), and ``(1 - mask) * -10000`` is added to the scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from b4t.layers.embeddings import SinusoidalPositionEncoding
from b4t.layers.feed_forward import PositionWiseFeedForward
from b4t.layers.norms import LayerNorm
from b4t.layers.relative_positions import (
    RelativePositionsEncoding,
    RelativePositionsEncodingDebertaV2,
    relative_distance,
    t5_relative_position_bucket,
)
from b4t.layers.rotary import RoPEPositionEncoding

__all__ = ["BertEmbeddings", "BertLayer", "Identity", "MultiHeadAttentionLayer"]

_EAGER = ("typical_relative", "t5_relative", "deberta_v2")
_RELATIVE = {"rotary", "typical_relative", "t5_relative", "other_relative", "deberta_v2"}


class RelativePositionsEncodingT5(nn.Module):
    """T5 bucket ids ``(qlen, klen)`` kept as the buffer ``relative_position`` (bert4torch
    0.2.5's ``RelativePositionsEncodingT5``, the layout of ``p_bias='t5_relative'``):
    ``RelativePositionsEncodingT5(qlen, klen, relative_attention_num_buckets,
    is_decoder=False)``; ``forward(qlen, klen)`` slices it to ``(qlen, klen)``."""

    def __init__(
        self,
        qlen: int,
        klen: int,
        relative_attention_num_buckets: int | None = None,
        is_decoder: bool = False,
        *,
        num_buckets: int | None = None,
    ) -> None:
        """``num_buckets=`` is b4t 0.1's keyword for ``relative_attention_num_buckets``."""
        super().__init__()
        if (relative_attention_num_buckets is None) == (num_buckets is None):
            raise TypeError(
                "RelativePositionsEncodingT5 takes relative_attention_num_buckets "
                "(or num_buckets=) once"
            )
        if num_buckets is None:
            num_buckets = relative_attention_num_buckets
        rel = relative_distance(qlen, klen)
        buckets = t5_relative_position_bucket(rel, not is_decoder, num_buckets)
        self.register_buffer("relative_position", buckets)

    def forward(self, qlen: int, klen: int) -> Tensor:
        """The bucket ids ``(qlen, klen)``."""
        return self.relative_position[:qlen, :klen]


class MultiHeadAttentionLayer(nn.Module):
    """Multi-head attention with separate ``q``, ``k``, ``v``, ``o`` projections.

    Args (bert4torch's order):
        hidden_size, num_attention_heads: width ``H`` and heads ``N``.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        dropout_rate: kept for bert4torch's signature (used by its DeBERTa path).
        attention_scale: divide scores by ``sqrt(D)``.
        return_attention_scores: also return the masked, pre-softmax scores.
        bias: biases on the four projections.
        **kwargs: ``attention_head_size`` (``D``, default ``H // N``), and ``p_bias``:
            ``'rotary'`` (RoFormer; needs ``max_position``), ``'typical_relative'``
            (NEZHA; ``max_position``, ``max_relative_position``), ``'t5_relative'``
            (``max_position``, ``relative_attention_num_buckets``, ``is_decoder``),
            ``'deberta_v2'`` (``max_position``, ``share_att_key=True``, ``pos_att_type``,
            ``position_buckets``, ``max_relative_positions``, ``norm_rel_ebd``);
            other keys are ignored, as in bert4torch.

    ``forward(hidden_states [B, Q, H], attention_mask=None, encoder_hidden_states=None
    [B, K, H], encoder_attention_mask=None, query_states=None [B, Q, H])`` ->
    ``[B, Q, H]`` (or ``(out, scores [B, N, Q, K])``). With ``encoder_hidden_states``
    keys and values come from it and ``encoder_attention_mask`` is the mask.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        attention_probs_dropout_prob: float,
        dropout_rate: float = 0.1,
        attention_scale: bool = True,
        return_attention_scores: bool = False,
        bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        head = kwargs.get("attention_head_size") or hidden_size // num_attention_heads
        self.attention_head_size = head
        self.inner_dim = num_attention_heads * head
        self.attention_scale = attention_scale
        self.return_attention_scores = return_attention_scores
        self.bias = bias
        self.q = nn.Linear(hidden_size, self.inner_dim, bias=bias)
        self.k = nn.Linear(hidden_size, self.inner_dim, bias=bias)
        self.v = nn.Linear(hidden_size, self.inner_dim, bias=bias)
        self.o = nn.Linear(self.inner_dim, hidden_size, bias=bias)
        self.dropout = nn.Dropout(attention_probs_dropout_prob)
        self.p_bias = kwargs.get("p_bias")
        max_position = kwargs.get("max_position")
        if self.p_bias in ("rotary", "typical_relative", "t5_relative") and not max_position:
            raise ValueError(f"MultiHeadAttentionLayer p_bias={self.p_bias!r} needs max_position")
        if self.p_bias == "typical_relative":
            self.relative_positions_encoding = RelativePositionsEncoding(
                max_position, max_position, head, kwargs.get("max_relative_position") or 127
            )
        elif self.p_bias == "rotary":
            self.relative_positions_encoding = RoPEPositionEncoding(max_position, head)
        elif self.p_bias == "t5_relative":
            buckets = kwargs.get("relative_attention_num_buckets") or 32
            self.relative_positions = RelativePositionsEncodingT5(
                max_position, max_position, buckets, bool(kwargs.get("is_decoder"))
            )
            self.relative_positions_encoding = nn.Embedding(buckets, num_attention_heads)
        elif self.p_bias == "deberta_v2":
            self._init_deberta(hidden_size, max_position, dropout_rate, kwargs)

    def _init_deberta(
        self, hidden_size: int, max_position: int | None, dropout_rate: float, kw: dict
    ) -> None:
        """bert4torch's DeBERTa-v2 options: disentangled c2p / p2c terms on shared keys."""
        if not max_position:
            raise ValueError("MultiHeadAttentionLayer p_bias='deberta_v2' needs max_position")
        if not kw.get("share_att_key", False):
            raise ValueError(
                "MultiHeadAttentionLayer p_bias='deberta_v2' needs share_att_key=True (as in "
                "bert4torch 0.2.5); for separate position projections use "
                "b4t.layers.DisentangledSelfAttention"
            )
        self.share_att_key = True
        self.position_buckets = kw.get("position_buckets", -1) or -1
        span = kw.get("max_relative_positions", -1) or -1
        if span < 1:
            span = kw.get("max_position_embeddings") or max_position
        self.pos_ebd_size = self.position_buckets if self.position_buckets > 0 else span
        self.pos_att_type = kw.get("pos_att_type", []) or []
        self.relative_positions = RelativePositionsEncodingDebertaV2(
            max_position, max_position, self.position_buckets, max_position
        )
        self.relative_positions_encoding = nn.Embedding(max_position, hidden_size)
        norm_rel_ebd = [x.strip() for x in kw.get("norm_rel_ebd", "none").lower().split("|")]
        if "layer_norm" in norm_rel_ebd:
            self.layernorm = nn.LayerNorm(hidden_size, kw.get("layer_norm_eps", 1e-12))
        self.pos_dropout = nn.Dropout(dropout_rate)

    def _deberta_scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Content-content plus c2p / p2c scores ``[B, N, Q, K]``, each over
        ``sqrt(D * (1 + number of position terms))``."""
        kinds = [t for t in ("c2p", "p2c") if t in self.pos_att_type]
        scale_factor = 1 + len(kinds)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.attention_head_size * scale_factor)
        if not kinds:
            return scores
        rel = self.relative_positions_encoding.weight
        if hasattr(self, "layernorm"):
            rel = self.layernorm(rel)
        rel = self.pos_dropout(rel)
        return scores + self.disentangled_attention_bias(q, k, None, rel, scale_factor)

    def disentangled_attention_bias(
        self,
        query_layer: Tensor,
        key_layer: Tensor,
        relative_pos: Tensor | None,
        rel_embeddings: Tensor,
        scale_factor: float,
    ) -> Tensor:
        """DeBERTa-v2's position terms (bert4torch's method): c2p (query content x key
        position, indexed by ``i - j``) plus p2c (key content x query position, indexed by
        ``j - i``), each over ``sqrt(D * scale_factor)``.

        Args:
            query_layer: ``[B, N, Q, D]``.
            key_layer: ``[B, N, K, D]``.
            relative_pos: ``i - j`` ids ``(Q, K)``, ``(B, Q, K)`` or ``(B, 1, Q, K)``;
                ``None``: this layer's ``relative_positions``.
            rel_embeddings: the relative-position table ``[>= 2S, H]`` (its first ``2S``
                rows are used, ``S = pos_ebd_size``).
            scale_factor: ``1 +`` the number of position terms.

        Returns:
            ``[B, N, Q, K]`` (0 when ``pos_att_type`` names neither term).
        """
        b, n, q_len, d = query_layer.shape
        k_len = key_layer.shape[-2]
        if relative_pos is None:
            relative_pos = self.relative_positions(q_len, k_len)
        if relative_pos.dim() == 2:
            relative_pos = relative_pos[None, None]
        elif relative_pos.dim() == 3:
            relative_pos = relative_pos[:, None]
        elif relative_pos.dim() != 4:
            raise ValueError(f"relative_pos must be 2-, 3- or 4-D, got {relative_pos.dim()}-D")
        relative_pos = relative_pos.long().to(query_layer.device)
        span = self.pos_ebd_size
        rel = rel_embeddings[: 2 * span][None]  # [1, 2S, H]
        denom = math.sqrt(d * scale_factor)
        score: Tensor | float = 0.0
        if "c2p" in self.pos_att_type:
            pos_k = self.transpose_for_scores(self.k(rel))  # [1, N, 2S, D]
            index = (relative_pos + span).clamp(0, 2 * span - 1).expand(b, n, q_len, k_len)
            score = score + (query_layer @ pos_k.transpose(-1, -2)).gather(-1, index) / denom
        if "p2c" in self.pos_att_type:
            pos_q = self.transpose_for_scores(self.q(rel))
            r_pos = relative_pos
            if k_len != q_len:
                r_pos = self.relative_positions(k_len, k_len)[:, None]
            index = (span - r_pos).clamp(0, 2 * span - 1).expand(b, n, k_len, k_len)
            p2c = (key_layer @ pos_q.transpose(-1, -2)).gather(-1, index).transpose(-1, -2)
            score = score + p2c[..., :q_len, :] / denom
        if isinstance(score, float):
            return query_layer.new_zeros(b, n, q_len, k_len)
        return score

    def transpose_for_scores(self, x: Tensor) -> Tensor:
        """``[B, L, N * D]`` -> ``[B, N, L, D]``."""
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).transpose(
            1, 2
        )

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        query_states: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """See the class docstring: ``[B, Q, H]`` (or ``(out, scores)``)."""
        source = hidden_states
        if encoder_hidden_states is not None:
            source, attention_mask = encoder_hidden_states, encoder_attention_mask
        query_states = hidden_states if query_states is None else query_states
        q = self.transpose_for_scores(self.q(query_states))
        k = self.transpose_for_scores(self.k(source))
        v = self.transpose_for_scores(self.v(source))
        if self.p_bias == "rotary":
            q, k = self.relative_positions_encoding(q), self.relative_positions_encoding(k)
        scale = 1.0 / math.sqrt(self.attention_head_size) if self.attention_scale else 1.0
        additive = None
        if attention_mask is not None:
            additive = (1.0 - attention_mask.to(q.dtype)) * -10000.0
        q_len, k_len = q.shape[-2], k.shape[-2]
        table = None
        eager = self.return_attention_scores or self.p_bias in _EAGER
        if not eager:
            p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=additive, dropout_p=p, scale=scale
            )
            scores = None
        else:
            if self.p_bias == "deberta_v2":  # scaled inside, per number of terms
                scores, scale = self._deberta_scores(q, k), 1.0
            else:
                scores = q @ k.transpose(-1, -2)
            if self.p_bias == "typical_relative":
                table = self.relative_positions_encoding(q_len, k_len, q.device, q.dtype)
                scores = scores + torch.einsum("bnqd,qkd->bnqk", q, table)
            elif self.p_bias == "t5_relative":
                ids = self.relative_positions(q_len, k_len)
                scores = scores + self.relative_positions_encoding(ids).permute(2, 0, 1)[None]
            scores = scores * scale
            if additive is not None:
                scores = scores + additive
            probs = self.dropout(torch.softmax(scores, dim=-1))
            context = probs @ v
            if table is not None:
                context = context + torch.einsum("bnqk,qkd->bnqd", probs, table)
        context = context.transpose(1, 2).reshape(*context.shape[:1], q_len, self.inner_dim)
        out = self.o(context)
        if self.return_attention_scores:
            return out, scores
        return out


class BertLayer(nn.Module):
    """A post-norm transformer layer with bert4torch's names and order.

    ``x = layerNorm1(x + dropout1(multiHeadAttention(x, mask)))``; for a decoder with
    ``encoder_hidden_states`` also ``x = layerNorm3(x + dropout3(crossAttention(...)))``;
    then ``x = layerNorm2(x + dropout2(feedForward(x)))``. Every norm takes the optional
    ``conditional_emb`` (conditional LayerNorm).

    Args (bert4torch's order): ``hidden_size, num_attention_heads, dropout_rate,
    attention_probs_dropout_prob, intermediate_size, hidden_act, is_dropout=False,
    conditional_size=False, **kwargs``; kwargs reach the attention (``p_bias``, ...),
    the feed-forward and the norms (``bias``, ``norm_mode``, ``weight``), and
    ``is_decoder=True`` adds the cross-attention. ``feed_forward_kwargs`` (b4t's) override
    kwargs for the feed-forward alone (T5.1.1: ``{'is_gated': True, 'bias': False}``). The
    norms use eps 1e-12, as bert4torch.

    ``forward(hidden_states [B, L, H], attention_mask, conditional_emb=None,
    encoder_hidden_states=None, encoder_attention_mask=None)`` -> ``[B, L, H]``.
    """

    pre_norm = False  # the sublayers' residual order (T5Layer: pre-norm)

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        dropout_rate: float,
        attention_probs_dropout_prob: float,
        intermediate_size: int,
        hidden_act: str | Callable,
        is_dropout: bool = False,
        conditional_size: int | bool = False,
        *,
        feed_forward_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.pop("return_attention_scores", None)  # a layer returns hidden states only

        def norm() -> LayerNorm:
            return LayerNorm(hidden_size, 1e-12, conditional_size, **kwargs)

        def attention() -> MultiHeadAttentionLayer:
            return MultiHeadAttentionLayer(
                hidden_size,
                num_attention_heads,
                attention_probs_dropout_prob,
                dropout_rate,
                **kwargs,
            )

        self.multiHeadAttention = attention()
        self.dropout1 = nn.Dropout(dropout_rate)
        self.layerNorm1 = norm()
        self.feedForward = PositionWiseFeedForward(
            hidden_size,
            intermediate_size,
            dropout_rate,
            hidden_act,
            **{"is_dropout": is_dropout, **kwargs, **(feed_forward_kwargs or {})},
        )
        self.dropout2 = nn.Dropout(dropout_rate)
        self.layerNorm2 = norm()
        self.is_decoder = bool(kwargs.get("is_decoder"))
        if self.is_decoder:
            self.crossAttention = attention()
            self.dropout3 = nn.Dropout(dropout_rate)
            self.layerNorm3 = norm()

    def _input(self, x: Tensor, norm: nn.Module, cond: Tensor | None) -> Tensor:
        """What a sublayer reads: the normed ``x`` (pre-norm) or ``x`` itself."""
        return norm((x, cond)) if self.pre_norm else x

    def _add(
        self, x: Tensor, out: Tensor, dropout: nn.Module, norm: nn.Module, cond: Tensor | None
    ) -> Tensor:
        """The residual sum of ``x`` and a sublayer's ``out``, normed after (post-norm)."""
        x = x + dropout(out)
        return x if self.pre_norm else norm((x, cond))

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None,
        conditional_emb: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Self-attention, cross-attention (a decoder given ``encoder_hidden_states``) and
        feed-forward, each with its residual in the layer's order: ``[B, L, H]`` ->
        ``[B, L, H]``."""
        x, cond = hidden_states, conditional_emb
        attn = self.multiHeadAttention(self._input(x, self.layerNorm1, cond), attention_mask)
        x = self._add(x, attn, self.dropout1, self.layerNorm1, cond)
        if self.is_decoder and encoder_hidden_states is not None:
            query = self._input(x, self.layerNorm3, cond)
            cross = self.crossAttention(query, None, encoder_hidden_states, encoder_attention_mask)
            x = self._add(x, cross, self.dropout3, self.layerNorm3, cond)
        ffn = self.feedForward(self._input(x, self.layerNorm2, cond))
        return self._add(x, ffn, self.dropout2, self.layerNorm2, cond)


class T5Layer(BertLayer):
    """bert4torch 0.2.5's pre-norm T5 layer: ``BertLayer``'s arguments plus ``version``.

    ``x = x + dropout1(multiHeadAttention(layerNorm1(x), mask))``; for a decoder with
    ``encoder_hidden_states`` also ``x = x + dropout3(crossAttention(layerNorm3(x), ...))``
    (the cross attention has no relative positions); then
    ``x = x + dropout2(feedForward(layerNorm2(x)))``. ``version='t5.1.1'`` makes the
    feed-forward gated and bias-free (``act(intermediate(x)) * gate(x)``; 0.2.5's
    ``intermediateDense`` / ``intermediateDense1`` / ``outputDense`` load into it). T5
    passes ``p_bias='t5_relative'``, ``bias=False``, ``norm_mode='rmsnorm'`` in kwargs.

    ``forward(hidden_states [B, L, H], attention_mask, conditional_emb=None,
    encoder_hidden_states=None, encoder_attention_mask=None)`` -> ``[B, L, H]``.
    """

    pre_norm = True

    def __init__(self, *args: Any, version: str = "t5.1.0", **kwargs: Any) -> None:
        if version.endswith("t5.1.1"):
            kwargs["feed_forward_kwargs"] = {"is_gated": True, "bias": False}
        super().__init__(*args, **kwargs)
        if self.is_decoder and hasattr(self.crossAttention, "relative_positions_encoding"):
            del self.crossAttention.relative_positions_encoding
            del self.crossAttention.relative_positions
            self.crossAttention.p_bias = None


class BertEmbeddings(nn.Module):
    """Word + segment + position embeddings, conditional LayerNorm, dropout, projection.

    Args (bert4torch's order): ``vocab_size, embedding_size, hidden_size, max_position,
    segment_vocab_size, shared_segment_embeddings, dropout_rate, conditional_size=False,
    token_pad_ids=0, **kwargs`` where kwargs may hold ``p_bias`` (``'sinusoid'``: a fixed
    table; a relative scheme: no absolute positions), ``emb_scale`` (multiplier before the
    norm) and the norm's ``bias`` / ``norm_mode`` / ``weight``.

    Parameter names are bert4torch's (``word_embeddings``, ``segment_embeddings``,
    ``position_embeddings``, ``layerNorm``, ``embedding_hidden_mapping_in``).

    ``forward(token_ids [B, L] (or float embeddings [B, L, E]), segment_ids=None,
    conditional_emb=None, additional_embs=None, attention_mask=None [B, 1, 1, L])`` ->
    ``[B, L, hidden_size]``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        max_position: int,
        segment_vocab_size: int,
        shared_segment_embeddings: bool,
        dropout_rate: float,
        conditional_size: int | bool = False,
        token_pad_ids: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.shared_segment_embeddings = shared_segment_embeddings
        self.word_embeddings = nn.Embedding(vocab_size, embedding_size, padding_idx=token_pad_ids)
        p_bias = kwargs.get("p_bias")
        if p_bias == "sinusoid":
            self.position_embeddings: nn.Module | None = SinusoidalPositionEncoding(
                max_position, embedding_size
            )
        elif p_bias not in _RELATIVE and max_position > 0:
            self.position_embeddings = nn.Embedding(max_position, embedding_size)
        else:
            self.position_embeddings = None
        self.segment_embeddings = (
            nn.Embedding(segment_vocab_size, embedding_size)
            if segment_vocab_size > 0 and not shared_segment_embeddings
            else None
        )
        self.emb_scale = kwargs.get("emb_scale", 1)
        self.layerNorm = LayerNorm(embedding_size, 1e-12, conditional_size, **kwargs)
        self.dropout = nn.Dropout(dropout_rate)
        self.embedding_hidden_mapping_in = (
            nn.Linear(embedding_size, hidden_size) if embedding_size != hidden_size else None
        )

    def forward(
        self,
        token_ids: Tensor,
        segment_ids: Tensor | None = None,
        conditional_emb: Tensor | None = None,
        additional_embs: Sequence[Tensor] | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """See the class docstring: ``[B, L]`` ids -> ``[B, L, hidden_size]``."""
        if token_ids.dtype in (torch.long, torch.int) and not token_ids.requires_grad:
            x = self.word_embeddings(token_ids)
        else:  # ready-made word embeddings (bert4torch's VAT passes these)
            x = token_ids
        shape = x.shape[:2]
        if self.segment_embeddings is not None or self.shared_segment_embeddings:
            if segment_ids is None:
                segment_ids = torch.zeros(shape, dtype=torch.long, device=x.device)
            table = self.segment_embeddings
            x = x + (self.word_embeddings if table is None else table)(segment_ids)
        for emb in additional_embs or ():
            x = x + emb
        if self.position_embeddings is not None:
            positions = torch.arange(shape[1], device=x.device).expand(shape)
            x = x + self.position_embeddings(positions)
        if self.emb_scale != 1:
            x = x * self.emb_scale
        x = self.layerNorm((x, conditional_emb))
        if attention_mask is not None:
            x = x * attention_mask[:, 0, 0, :, None].to(x.dtype)
        x = self.dropout(x)
        if self.embedding_hidden_mapping_in is not None:
            x = self.embedding_hidden_mapping_in(x)
        return x


class Identity(nn.Module):
    """Returns its first input unchanged; bert4torch puts it in place of dropped layers
    (``keep_hidden_layers``). Takes and ignores any constructor arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The first positional input, unchanged."""
        if not args:
            raise TypeError("Identity needs at least one positional input")
        return args[0]
