"""BART (``model='bart'``): transformers' ``BartForConditionalGeneration`` layout.

Post-norm encoder and decoder layers with biases, learned positions offset by 2, an
embedding LayerNorm, word embeddings shared by both stacks and the LM head, plus
``final_logits_bias``. The model has ``model.encoder`` / ``model.decoder`` with the
seed's ``predict`` and the b4t seq2seq protocol (``encode`` / ``decode`` with a KV cache).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from b4t.models.config import ModelConfig
from b4t.models.encoder_decoder import EncoderDecoder, Seq2SeqStack
from b4t.models.registry import Variant, register_variant
from b4t.models.seq2seq import BART, BART_STACK, bart_settings
from b4t.models.sources import Flattened
from b4t.models.variants.generic import attention_map
from b4t.models.weight_map import WeightSource

__all__ = ["SeedBART", "SeedBartStack", "bart_weight_map"]


def _attention(ours: str, theirs: str, cross: bool = False) -> dict[str, WeightSource]:
    """transformers' BART attention names (``q_proj``, ..., ``out_proj``)."""
    return attention_map(ours, theirs, cross, proj="{}_proj", out="out_proj")


def bart_weight_map(config: ModelConfig, model: BART) -> dict[str, WeightSource]:
    """transformers' BART names under ``model.``."""
    s = bart_settings(config)
    mapping: dict[str, WeightSource] = {
        "decoder.final_logits_bias": Flattened(("final_logits_bias",))
    }
    depths = (("encoder", config.num_hidden_layers), ("decoder", s["decoder_layers"]))
    for stack, n_layers in depths:
        hf = f"model.{stack}"
        mapping[f"{stack}.word_embeddings.weight"] = "model.shared.weight"
        mapping[f"{stack}.position_embeddings.weight"] = f"{hf}.embed_positions.weight"
        mapping[f"{stack}.embedding_norm.weight"] = f"{hf}.layernorm_embedding.weight"
        mapping[f"{stack}.embedding_norm.bias"] = f"{hf}.layernorm_embedding.bias"
        for i in range(n_layers):
            ours, theirs = f"{stack}.layers.{i}", f"{hf}.layers.{i}"
            mapping.update(_attention(f"{ours}.attention", f"{theirs}.self_attn"))
            norms = {"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm"}
            if stack == "decoder":
                mapping.update(_attention(f"{ours}.cross", f"{theirs}.encoder_attn", cross=True))
                norms["norm_cross"] = "encoder_attn_layer_norm"
            for norm, hf_norm in norms.items():
                mapping[f"{ours}.{norm}.weight"] = f"{theirs}.{hf_norm}.weight"
                mapping[f"{ours}.{norm}.bias"] = f"{theirs}.{hf_norm}.bias"
            for fc, ffn in (("fc1", "intermediate"), ("fc2", "output")):
                mapping[f"{ours}.ffn.{ffn}.weight"] = f"{theirs}.{fc}.weight"
                mapping[f"{ours}.ffn.{ffn}.bias"] = f"{theirs}.{fc}.bias"
    return mapping


def _bart_model_map(config: ModelConfig, model: BART) -> dict[str, WeightSource]:
    """The map of a ``BartModel`` checkpoint: no LM head, so no ``final_logits_bias``."""
    mapping = bart_weight_map(config, model)
    mapping.pop("decoder.final_logits_bias")
    return mapping


# 0.2.5's converted BART: a position table of max_position rows, position p at row p (no
# offset of 2), and the decoder masks padded keys, as 0.2.5's decoder does
SEED_BART_STACK = dataclasses.replace(BART_STACK, position_offset=0, mask_decoder_padding=True)


class SeedBartStack(Seq2SeqStack):
    """A stack of BART converted for bert4torch 0.2.5: the position table holds
    ``max_position`` rows, position ``p`` is row ``p`` (no offset of 2), and the decoder
    masks padded keys, as 0.2.5's decoder does."""

    spec = SEED_BART_STACK


class SeedBART(EncoderDecoder):
    """BART in bert4torch 0.2.5's converted layout (see :class:`SeedBartStack`)."""

    spec = dataclasses.replace(BART.spec, stack=SeedBartStack)


# the pad id is the config's pad_token_id (1 in transformers' BART configs); a config
# without one masks id 0, as bert4torch 0.2.5 does
_BART = Variant(
    name="bart",
    prefix="model",
    weight_map=bart_weight_map,
    preset={"hidden_act": "gelu", "layer_norm_eps": 1e-5},
    model_cls=BART,
    optional_keys=(r"embed_tokens\.weight$", r"^lm_head\.weight$"),
    description="BART encoder-decoder (post-norm, learned positions; HF BART)",
)
_BART_MODEL = dataclasses.replace(_BART, weight_map=_bart_model_map)
# 0.2.5's layout: BartModel names without ``model.``, a table of max_position rows read
# without offset, every LayerNorm eps 1e-12, and (from its save_weights) the tied LM head
# under 0.2.5's own name
_BART_SEED = dataclasses.replace(
    _BART_MODEL,
    preset={"hidden_act": "gelu", "layer_norm_eps": 1e-12},
    model_cls=SeedBART,
    optional_keys=(*_BART.optional_keys, r"^decoder\.final_dense\.weight$"),
    description="BART in bert4torch 0.2.5's converted layout (positions without offset)",
)


def _position_rows(state: dict[str, Any]) -> int | None:
    for key in ("encoder.embed_positions.weight", "model.encoder.embed_positions.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def resolve_bart(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
    """A checkpoint without ``final_logits_bias`` (``BartModel``, keys with or without
    ``model.``) loads with a zero logits bias; one whose position table has exactly the
    config's ``max_position_embeddings`` (``max_position``) rows, not two more, is
    0.2.5's converted layout."""
    if state is None:
        return _BART
    positions = raw.get("max_position_embeddings", raw.get("max_position"))
    if positions is not None and _position_rows(state) == positions:
        return _BART_SEED
    if "final_logits_bias" not in state:
        return _BART_MODEL
    return _BART


register_variant(dataclasses.replace(_BART, resolve=resolve_bart))
