"""T5 (``model='t5'`` / ``'t5.1.0'``), T5.1.1 (``'t5.1.1'``) and mT5 (``'mt5.1.1'``).

transformers' ``T5ForConditionalGeneration`` / ``MT5ForConditionalGeneration`` layout.
``feed_forward_proj`` in ``config.json`` decides the feed-forward (``relu``: T5.1.0;
``gated-gelu``: T5.1.1 / mT5); the name's preset is the default when the key is absent.
The LM head is tied to the shared word table (T5.1.0: logits of ``hidden * H ** -0.5``)
unless ``tie_word_embeddings`` is false (T5.1.1, mT5: its own ``lm_head``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.seq2seq import T5, T5Part, t5_settings
from b4t.models.weight_map import Concat, FirstOf, WeightSource

__all__ = ["t5_part_weight_map", "t5_weight_map"]


def t5_weight_map(config: ModelConfig, model: T5) -> dict[str, WeightSource]:
    """transformers' T5 names (explicit per layer: the decoder may have its own depth)."""
    s = model.settings if model is not None else t5_settings(config)
    mapping: dict[str, WeightSource] = {
        # one shared table; a half saved alone (0.2.5's T5_Encoder) names it its own way
        "encoder.word_embeddings.weight": FirstOf(("shared.weight", "encoder.embed_tokens.weight")),
        "decoder.word_embeddings.weight": FirstOf(("shared.weight", "decoder.embed_tokens.weight")),
        "encoder.final_norm.weight": "encoder.final_layer_norm.weight",
        "decoder.final_norm.weight": "decoder.final_layer_norm.weight",
        "decoder.lm_head.weight": "lm_head.weight",
    }
    for stack, n_layers in (
        ("encoder", config.num_hidden_layers),
        ("decoder", s["decoder_layers"]),
    ):
        mapping[f"{stack}.relative_bias.relative_attention_bias.weight"] = (
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        )
        ff = 2 if stack == "decoder" else 1
        for i in range(n_layers):
            ours, block = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            att = f"{block}.0.SelfAttention"
            mapping[f"{ours}.norm1.weight"] = f"{block}.0.layer_norm.weight"
            mapping[f"{ours}.attention.qkv.weight"] = Concat(
                tuple(f"{att}.{p}.weight" for p in "qkv")
            )
            mapping[f"{ours}.attention.o.weight"] = f"{att}.o.weight"
            if stack == "decoder":
                cross = f"{block}.1.EncDecAttention"
                mapping[f"{ours}.norm_cross.weight"] = f"{block}.1.layer_norm.weight"
                mapping[f"{ours}.cross.q.weight"] = f"{cross}.q.weight"
                mapping[f"{ours}.cross.kv.weight"] = Concat(
                    (f"{cross}.k.weight", f"{cross}.v.weight")
                )
                mapping[f"{ours}.cross.o.weight"] = f"{cross}.o.weight"
            dense = f"{block}.{ff}.DenseReluDense"
            mapping[f"{ours}.norm2.weight"] = f"{block}.{ff}.layer_norm.weight"
            if s["gated"]:
                mapping[f"{ours}.ffn.intermediate.weight"] = f"{dense}.wi_0.weight"
                mapping[f"{ours}.ffn.gate.weight"] = f"{dense}.wi_1.weight"
            else:
                mapping[f"{ours}.ffn.intermediate.weight"] = f"{dense}.wi.weight"
            mapping[f"{ours}.ffn.output.weight"] = f"{dense}.wo.weight"
    return mapping


def t5_part_weight_map(config: ModelConfig, model: T5Part) -> dict[str, WeightSource]:
    """The encoder's or the decoder's half of :func:`t5_weight_map`, names unprefixed."""
    part = "decoder." if model.is_decoder else "encoder."
    full = t5_weight_map(config, model)  # type: ignore[arg-type]
    return {k[len(part) :]: v for k, v in full.items() if k.startswith(part)}


T5_OPTIONAL = (
    r"embed_tokens\.weight$",
    r"^lm_head\.weight$",
    # 0.2.5's save_weights: layer i > 0 holds a tied copy of layer 0's bias table, and
    # the tied T5.1.0 head under 0.2.5's own name
    r"Layer\.[1-9][0-9]*\.multiHeadAttention\.relative_positions_encoding\.weight$",
    r"(^|\.)final_dense\.weight$",
)
# transformers' T5 configs all name their eps (1e-6); one without it is bert4torch's,
# whose T5 norms use 1e-12
_PRESET = {"layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_dropout_prob": 0.1}


def untie_differing_head(variant: Variant):  # type: ignore[no-untyped-def]
    """A checkpoint whose ``lm_head.weight`` is not the word table (0.2.5's T5 saves its
    own ``final_dense``) loads untied, unless the config says ``tie_word_embeddings``."""
    untied = dataclasses.replace(variant, preset={**variant.preset, "tie_word_embeddings": False})

    def resolve(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
        if state is None or "tie_word_embeddings" in raw:
            return variant
        head = state.get("lm_head.weight")
        table = state.get("shared.weight", state.get("decoder.embed_tokens.weight"))
        if head is not None and table is not None and not torch.equal(head, table):
            return untied
        return variant

    return resolve


for _name, _aliases in (("t5", ("t5.1.0",)), ("t5.1.1", ()), ("mt5.1.1", ())):
    _full = Variant(
        name=_name,
        prefix="",
        weight_map=t5_weight_map,
        preset=dict(_PRESET),
        model_cls=T5,
        optional_keys=T5_OPTIONAL,
        description="T5 encoder-decoder (relative position buckets, RMS pre-norm; HF T5)",
    )
    register_variant(dataclasses.replace(_full, resolve=untie_differing_head(_full)), *_aliases)
    for _part, _other in (("encoder", "decoder"), ("decoder", "encoder")):
        _half = Variant(
            name=f"{_name}_{_part}",
            prefix="",
            weight_map=t5_part_weight_map,
            preset=dict(_PRESET),
            model_cls=T5Part,
            optional_keys=(*T5_OPTIONAL, rf"^{_other}\.", r"^lm_head\.weight$"),
            description=f"the T5 {_part} alone (bert4torch's T5_{_part.title()})",
        )
        if _part == "decoder":
            _half = dataclasses.replace(_half, resolve=untie_differing_head(_half))
        register_variant(_half, *(f"{a}_{_part}" for a in _aliases))
