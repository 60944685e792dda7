"""GPT-2 (``model='gpt2'``): pre-norm causal blocks, learned positions, final LayerNorm,
LM head tied to the word embeddings. Loads transformers' ``GPT2LMHeadModel`` /
``GPT2Model`` layout (``Conv1D`` weights stored ``[in, out]``, transposed on load).

Built from a config dict with no checkpoint it is a from-scratch GPT-2::

    model = build_transformer_model(
        {"vocab_size": 96, "hidden_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "max_position_embeddings": 256},
        model="gpt2", final_activation="linear")
    logits = model([token_ids])              # [B, L, V]

As bert4torch 0.2.5's GPT2, a seed-style call returns softmax probabilities unless
``final_activation='linear'``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from b4t.models.config import ModelConfig
from b4t.models.decoder import CausalLM
from b4t.models.registry import Variant, register_variant
from b4t.models.sources import transposed
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import bert_layer_map
from b4t.models.weight_map import WeightSource

__all__ = [
    "GPT2",
    "gpt2_weight_map",
    "seed_layout_resolver",
    "seed_weight_map",
    "with_seed_layout",
]


def _set_from_raw(config: ModelConfig, raw_key: str, field: str, convert: Any = None) -> None:
    """Copy a native config.json key into a ModelConfig field unless the field's own key
    (or an alias) was in the file."""
    if raw_key in config.raw and config.raw[raw_key] is not None:
        value = config.raw[raw_key]
        setattr(config, field, convert(value) if convert else value)


class GPT2(CausalLM):
    """GPT-2: ``x += attn(ln_1(x)); x += mlp(ln_2(x))``, then ``ln_f`` and the tied head."""

    final_norm = True
    model_types = ("gpt2",)

    def normalise_config(self, config: ModelConfig, name: str) -> None:
        super().normalise_config(config, name)
        if "hidden_act" not in config.raw:
            _set_from_raw(config, "activation_function", "hidden_act")
        _set_from_raw(config, "resid_pdrop", "hidden_dropout_prob", float)
        _set_from_raw(config, "attn_pdrop", "attention_probs_dropout_prob", float)
        config.pre_norm = True


def gpt2_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' GPT-2 names under ``transformer.``."""
    h = "transformer.h.{i}"
    mapping: dict[str, WeightSource] = {
        "embeddings.word_embeddings.weight": "transformer.wte.weight",
        "embeddings.position_embeddings.weight": "transformer.wpe.weight",
        "layers.{i}.norm1.weight": f"{h}.ln_1.weight",
        "layers.{i}.norm1.bias": f"{h}.ln_1.bias",
        "layers.{i}.attention.qkv.weight": transposed(f"{h}.attn.c_attn.weight"),
        "layers.{i}.attention.qkv.bias": f"{h}.attn.c_attn.bias",
        "layers.{i}.attention.o.weight": transposed(f"{h}.attn.c_proj.weight"),
        "layers.{i}.attention.o.bias": f"{h}.attn.c_proj.bias",
        "layers.{i}.norm2.weight": f"{h}.ln_2.weight",
        "layers.{i}.norm2.bias": f"{h}.ln_2.bias",
        "layers.{i}.ffn.intermediate.weight": transposed(f"{h}.mlp.c_fc.weight"),
        "layers.{i}.ffn.intermediate.bias": f"{h}.mlp.c_fc.bias",
        "layers.{i}.ffn.output.weight": transposed(f"{h}.mlp.c_proj.weight"),
        "layers.{i}.ffn.output.bias": f"{h}.mlp.c_proj.bias",
        "norm.weight": "transformer.ln_f.weight",
        "norm.bias": "transformer.ln_f.bias",
        "lm_head.weight": "lm_head.weight",
    }
    return mapping


DECODER_OPTIONAL = (r"^lm_head\.weight$", r"attn\.bias$", r"attn\.masked_bias$", r"position_ids$")
# 0.2.5's converted layouts; ``dense.weight`` is the LM head 0.2.5's save_weights writes
# under its own name, a tied copy of the word embeddings
SEED_DECODER_OPTIONAL = (r"^cls\.", r"(^|\.)pooler\.", r"position_ids$", r"^dense\.weight$")


def seed_weight_map(prefix: str, final_norm: str | None = None):  # type: ignore[no-untyped-def]
    """The layout bert4torch 0.2.5's conversion scripts write for GPT / GPT-2: BERT names
    under ``prefix`` (q/k/v separate; the pre-norm LayerNorms under BERT's post-norm
    names) and, for GPT-2, ``{prefix}.LayerNormFinal``."""

    def build(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
        emb = f"{prefix}.embeddings"
        mapping: dict[str, WeightSource] = {
            "embeddings.word_embeddings.weight": f"{emb}.word_embeddings.weight",
            "embeddings.position_embeddings.weight": f"{emb}.position_embeddings.weight",
            "embeddings.segment_embeddings.weight": f"{emb}.token_type_embeddings.weight",
        }
        mapping.update(bert_layer_map(f"{prefix}.encoder.layer.{{i}}"))
        if final_norm:
            mapping["norm.weight"] = f"{prefix}.{final_norm}.weight"
            mapping["norm.bias"] = f"{prefix}.{final_norm}.bias"
        return mapping

    return build


def seed_layout_resolver(hf: Variant, seed: Variant, mark: str):  # type: ignore[no-untyped-def]
    """Pick transformers' layout or 0.2.5's converted one (keys under ``mark``)."""

    def resolve(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
        if state is not None and any(k.startswith(mark) for k in state):
            return seed
        return hf

    return resolve


def with_seed_layout(
    hf: Variant, label: str, prefix: str, preset: dict[str, Any], final_norm: str | None = None
) -> Variant:
    """``hf`` (transformers' layout) that also loads bert4torch 0.2.5's converted layout
    of model ``label``: BERT names under ``prefix`` (:func:`seed_weight_map`) with
    ``preset``, chosen when the checkpoint's keys start with ``prefix.``."""
    seed = dataclasses.replace(
        hf,
        prefix=prefix,
        weight_map=seed_weight_map(prefix, final_norm),
        preset=preset,
        optional_keys=SEED_DECODER_OPTIONAL,
        description=f"{label} in bert4torch 0.2.5's converted layout ({prefix}.*)",
    )
    return dataclasses.replace(hf, resolve=seed_layout_resolver(hf, seed, f"{prefix}."))


_GPT2 = Variant(
    name="gpt2",
    prefix="transformer",
    weight_map=gpt2_weight_map,
    preset={
        "type_vocab_size": 0,
        "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5,
        "pre_norm": True,
        "max_position_embeddings": 1024,
    },
    model_cls=GPT2,
    optional_keys=DECODER_OPTIONAL,
    description="GPT-2 (pre-norm, learned positions, tied LM head; HF GPT2LMHeadModel)",
)
# 0.2.5's converted layout: every LayerNorm eps 1e-12 and the segment table by default
register_variant(
    with_seed_layout(
        _GPT2,
        "GPT-2",
        "gpt2",
        {"hidden_act": "gelu_new", "layer_norm_eps": 1e-12, "pre_norm": True},
        final_norm="LayerNormFinal",
    )
)
