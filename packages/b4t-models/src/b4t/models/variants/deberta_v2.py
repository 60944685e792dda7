"""DeBERTa-v2 / v3 (transformers' ``deberta-v2`` layout): disentangled attention.

The encoder holds one relative-embedding table ``rel_embeddings`` (``2S x H``, optionally
layer-normed) and the log-bucketed relative positions; both are computed once per
forward and handed to every layer's :class:`b4t.layers.DisentangledSelfAttention`.
Embeddings are ``LayerNorm(proj(word [+ position] [+ segment]))``.

As in transformers, an encoder zeroes the embeddings of padded tokens and masks padded
query rows too (they attend uniformly), so padded positions match transformers as well.
With ``conv_kernel_size > 0`` (DeBERTa-v2-xlarge) a convolution over the embeddings is
merged into the first layer's output (:class:`DebertaV2Conv`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from b4t.layers import Embeddings, LayerNorm, get_activation, to_additive_mask
from b4t.layers.deberta_attention import DisentangledSelfAttention
from b4t.layers.relative_positions import deberta_relative_position
from b4t.models.config import ModelConfig
from b4t.models.forward_state import ForwardState
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_layer_map, bert_mlm_map
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["DebertaV2", "DebertaV2Conv", "DebertaV2Embeddings", "deberta_settings"]


def deberta_settings(config: ModelConfig) -> dict[str, Any]:
    """The DeBERTa keys of ``config.json`` (kept in ``config.extra``), checked and defaulted."""
    extra = config.extra
    pos_att_type = extra.get("pos_att_type") or []
    if isinstance(pos_att_type, str):
        pos_att_type = [p.strip() for p in pos_att_type.lower().split("|") if p.strip()]
    bad = [p for p in pos_att_type if p not in ("c2p", "p2c")]
    if bad:
        raise ValueError(f"config key 'pos_att_type' in {config.source} has unknown terms {bad}")
    conv_kernel = extra.get("conv_kernel_size", 0) or 0
    if (
        not isinstance(conv_kernel, int)
        or conv_kernel < 0
        or (conv_kernel and conv_kernel % 2 == 0)
    ):
        raise ValueError(
            f"config key 'conv_kernel_size' in {config.source} must be 0 or an odd positive "
            f"int, got {conv_kernel!r}"
        )
    relative = bool(extra.get("relative_attention", False))
    max_rel = int(extra.get("max_relative_positions", -1))
    if max_rel < 1:
        max_rel = config.max_position_embeddings
    buckets = int(extra.get("position_buckets", -1))
    norm_rel = [x.strip() for x in str(extra.get("norm_rel_ebd", "none")).lower().split("|")]
    return {
        "relative_attention": relative,
        "pos_att_type": tuple(pos_att_type) if relative else (),
        "share_att_key": bool(extra.get("share_att_key", False)),
        "max_relative_positions": max_rel,
        "position_buckets": buckets,
        "span": buckets if buckets > 0 else max_rel,
        "norm_rel_ebd": "layer_norm" in norm_rel,
        "position_biased_input": bool(extra.get("position_biased_input", True)),
        "legacy": bool(extra.get("legacy", True)),
        "conv_kernel_size": conv_kernel,
        "conv_groups": int(extra.get("conv_groups", 1)),
        "conv_act": str(extra.get("conv_act", "tanh")),
    }


class DebertaV2Conv(nn.Module):
    """DeBERTa-v2's convolution beside the first layer.

    ``forward(x, layer_out, keep)``: ``LayerNorm(layer_out + act(conv(x)))`` with the
    convolution output zeroed at padded positions and the result zeroed there too;
    ``x`` is the first layer's input ``[B, L, H]``, ``keep`` a ``[B, L]`` bool or None.
    """

    def __init__(
        self, hidden_size: int, kernel_size: int, groups: int, act: str, eps: float, dropout: float
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            hidden_size, hidden_size, kernel_size, padding=(kernel_size - 1) // 2, groups=groups
        )
        self.act = get_activation(act)
        self.layer_norm = LayerNorm(hidden_size, eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, layer_out: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)
        if keep is not None:
            out = out * keep[..., None].to(out.dtype)
        out = self.layer_norm(layer_out + self.act(self.dropout(out)))
        if keep is not None:
            out = out * keep[..., None].to(out.dtype)
        return out


class DebertaV2Embeddings(Embeddings):
    """``dropout(LayerNorm(proj(word + position? + segment?)))``; proj is bias-free, E -> H."""

    def __init__(self, embedding_size: int, hidden_size: int, layer_norm_eps: float, **kw: Any):
        super().__init__(embedding_size=embedding_size, hidden_size=hidden_size, **kw)
        self.layer_norm = LayerNorm(hidden_size, layer_norm_eps)
        self.projection = (
            nn.Linear(embedding_size, hidden_size, bias=False)
            if embedding_size != hidden_size
            else None
        )

    def forward(
        self,
        token_ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        extra_ids: Sequence[torch.Tensor] = (),
        task_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.word_embeddings(token_ids)
        if self.position_embeddings is not None:
            if position_ids is None:
                x = x + self.position_embeddings.weight[: token_ids.shape[1]]
            else:
                x = x + self.position_embeddings(position_ids)
        if self.segment_embeddings is not None:
            if segment_ids is None:
                segment_ids = torch.zeros_like(token_ids)
            x = x + self.segment_embeddings(segment_ids)
        if self.layer_add_embs is not None:
            for emb, ids in zip(self.layer_add_embs, extra_ids, strict=True):
                x = x + emb(ids)
        if self.projection is not None:
            x = self.projection(x)
        return self.dropout(self.layer_norm(x))


@dataclass(slots=True, eq=False)
class DebertaV2State(ForwardState):
    """:class:`ForwardState` plus ``input_mask [B, L]`` (bool, True = real token), set by
    an encoder call with padding for the first layer's convolution."""

    input_mask: torch.Tensor | None = None


class DebertaV2(Transformer):
    """DeBERTa-v2/v3 encoder: BERT-style post-norm blocks with disentangled attention."""

    state_type = DebertaV2State
    # its own embedding stage (zeroed padding rows, a query+key mask) and relative layers
    prefix_reuse = False

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        self.deberta = deberta_settings(config)
        if config.type_vocab_size == 0:
            kwargs["segment_vocab_size"] = 0
        super().__init__(config, **kwargs)
        s = self.deberta
        self.rel_embeddings = (
            nn.Embedding(2 * s["span"], config.hidden_size) if s["relative_attention"] else None
        )
        self.rel_norm = (
            LayerNorm(config.hidden_size, config.layer_norm_eps)
            if s["relative_attention"] and s["norm_rel_ebd"]
            else None
        )
        self.conv = None
        if s["conv_kernel_size"]:
            self.conv = DebertaV2Conv(
                config.hidden_size,
                s["conv_kernel_size"],
                s["conv_groups"],
                s["conv_act"],
                config.layer_norm_eps,
                config.hidden_dropout_prob,
            )
            self.layers[0].register_forward_hook(self._merge_conv, with_kwargs=True)

    def _merge_conv(
        self, layer: nn.Module, args: tuple, kwargs: dict[str, Any], output: tuple
    ) -> tuple:
        """Forward hook on layer 0: fold the convolution of its input into its output."""
        assert self.conv is not None
        merged = self.conv(args[0], output[0], kwargs.get("input_mask"))
        return (merged, *output[1:])

    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        c = self.config
        return DebertaV2Embeddings(
            c.embedding_dim,
            c.hidden_size,
            c.layer_norm_eps,
            vocab_size=c.vocab_size,
            max_position=c.max_position_embeddings,
            segment_vocab_size=self.segment_vocab_size,
            dropout_rate=c.hidden_dropout_prob,
            pad_token_id=c.pad_token_id,
            position_type="learned" if self.deberta["position_biased_input"] else None,
            layer_add_embs=layer_add_embs,
        )

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        s = self.deberta
        overrides.setdefault("attention_cls", DisentangledSelfAttention)
        overrides.setdefault(
            "attention_kwargs",
            {
                "pos_att_type": s["pos_att_type"],
                "share_att_key": s["share_att_key"],
                "position_span": s["span"],
            },
        )
        return super().build_layer(index, **overrides)

    def apply_embeddings(self, state: DebertaV2State) -> DebertaV2State:
        """Embeddings, then (encoder with padding) zeroed padded rows and a query+key mask."""
        state = super().apply_embeddings(state)
        state.input_mask = None
        if self.application != "encoder" or state.mask is None:
            return state
        keep = state.attention_mask
        if keep is None:
            keep = state.token_ids.ne(self.config.pad_token_id)
        keep = keep.bool()
        state.input_mask = keep
        hidden = state.hidden_states
        state.hidden_states = hidden * keep[..., None].to(hidden.dtype)
        both = keep[:, None, :, None] & keep[:, None, None, :]  # [B, 1, L, L]
        state.mask = to_additive_mask(both, hidden.dtype)
        return state

    def layer_kwargs(self, state: DebertaV2State) -> DebertaV2State:
        """``rel_embeddings [2S, H]``, ``relative_pos [L, L]`` (and the padding mask for the
        convolution), shared by all layers."""
        extra: dict[str, Any] = {}
        if self.conv is not None:
            extra["input_mask"] = state.input_mask
        if self.rel_embeddings is None:
            return extra
        s = self.deberta
        hidden = state.hidden_states
        length = hidden.shape[1]
        rel = self.rel_embeddings.weight
        if self.rel_norm is not None:
            rel = self.rel_norm(rel)
        relative_pos = deberta_relative_position(
            length, length, s["position_buckets"], s["max_relative_positions"], hidden.device
        )
        return {**extra, "rel_embeddings": rel, "relative_pos": relative_pos}


def deberta_v2_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' ``deberta.`` layout (legacy ``cls.predictions`` or ``lm_predictions`` head)."""
    emb, layer = "deberta.embeddings", "deberta.encoder.layer.{i}"
    mapping: dict[str, WeightSource] = {
        "embeddings.word_embeddings.weight": f"{emb}.word_embeddings.weight",
        "embeddings.segment_embeddings.weight": f"{emb}.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight": f"{emb}.position_embeddings.weight",
        "embeddings.projection.weight": f"{emb}.embed_proj.weight",
        "embeddings.layer_norm.weight": f"{emb}.LayerNorm.weight",
        "embeddings.layer_norm.bias": f"{emb}.LayerNorm.bias",
        "rel_embeddings.weight": "deberta.encoder.rel_embeddings.weight",
        "rel_norm.weight": "deberta.encoder.LayerNorm.weight",
        "rel_norm.bias": "deberta.encoder.LayerNorm.bias",
        "pooler.dense.weight": "pooler.dense.weight",
        "pooler.dense.bias": "pooler.dense.bias",
        "conv.conv.weight": "deberta.encoder.conv.conv.weight",
        "conv.conv.bias": "deberta.encoder.conv.conv.bias",
        "conv.layer_norm.weight": "deberta.encoder.conv.LayerNorm.weight",
        "conv.layer_norm.bias": "deberta.encoder.conv.LayerNorm.bias",
    }
    mapping.update(bert_layer_map(layer))
    att = f"{layer}.attention.self"
    for part in ("weight", "bias"):
        mapping[f"layers.{{i}}.attention.qkv.{part}"] = Concat(
            tuple(f"{att}.{p}_proj.{part}" for p in ("query", "key", "value"))
        )
        mapping[f"layers.{{i}}.attention.pos_key_proj.{part}"] = f"{att}.pos_key_proj.{part}"
        mapping[f"layers.{{i}}.attention.pos_query_proj.{part}"] = f"{att}.pos_query_proj.{part}"
    if deberta_settings(config)["legacy"]:
        mapping.update(bert_mlm_map("cls.predictions"))
    else:
        head = "lm_predictions.lm_head"
        mapping.update(
            {
                "mlm.dense.weight": f"{head}.dense.weight",
                "mlm.dense.bias": f"{head}.dense.bias",
                "mlm.layer_norm.weight": f"{head}.LayerNorm.weight",
                "mlm.layer_norm.bias": f"{head}.LayerNorm.bias",
                "mlm.bias": f"{head}.bias",
            }
        )
    return mapping


register_variant(
    Variant(
        name="deberta_v2",
        prefix="deberta",
        weight_map=deberta_v2_weight_map,
        model_cls=DebertaV2,
        optional_keys=(*BERT_OPTIONAL, r"^lm_predictions\.", r"^pooler\."),
        description="DeBERTa-v2/v3 (disentangled attention, log-bucket relative positions)",
    ),
    "deberta_v3",
)
