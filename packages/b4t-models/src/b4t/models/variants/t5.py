"""T5 (``model='t5'`` / ``'t5.1.0'``), T5.1.1 (``'t5.1.1'``) and mT5 (``'mt5.1.1'``).

transformers' ``T5ForConditionalGeneration`` / ``MT5ForConditionalGeneration`` layout.
``feed_forward_proj`` in ``config.json`` decides the feed-forward (``relu``: T5.1.0;
``gated-gelu``: T5.1.1 / mT5); the name's preset is the default when the key is absent.
The LM head is tied to the shared word table (T5.1.0: logits of ``hidden * H ** -0.5``)
unless ``tie_word_embeddings`` is false (T5.1.1, mT5: its own ``lm_head``).
"""

from __future__ import annotations

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.seq2seq import T5, T5Part, t5_settings
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["t5_part_weight_map", "t5_weight_map"]


def t5_weight_map(config: ModelConfig, model: T5) -> dict[str, WeightSource]:
    """transformers' T5 names (explicit per layer: the decoder may have its own depth)."""
    s = model.settings if model is not None else t5_settings(config)
    mapping: dict[str, WeightSource] = {
        "encoder.word_embeddings.weight": "shared.weight",
        "decoder.word_embeddings.weight": "shared.weight",
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


T5_OPTIONAL = (r"embed_tokens\.weight$", r"^lm_head\.weight$")
_PRESET = {"layer_norm_eps": 1e-6, "pad_token_id": 0, "hidden_dropout_prob": 0.1}

for _name, _aliases in (("t5", ("t5.1.0",)), ("t5.1.1", ()), ("mt5.1.1", ())):
    register_variant(
        Variant(
            name=_name,
            prefix="",
            weight_map=t5_weight_map,
            preset=dict(_PRESET),
            model_cls=T5,
            optional_keys=T5_OPTIONAL,
            description="T5 encoder-decoder (relative position buckets, RMS pre-norm; HF T5)",
        ),
        *_aliases,
    )
    for _part, _other in (("encoder", "decoder"), ("decoder", "encoder")):
        register_variant(
            Variant(
                name=f"{_name}_{_part}",
                prefix="",
                weight_map=t5_part_weight_map,
                preset=dict(_PRESET),
                model_cls=T5Part,
                optional_keys=(*T5_OPTIONAL, rf"^{_other}\.", r"^lm_head\.weight$"),
                description=f"the T5 {_part} alone (bert4torch's T5_{_part.title()})",
            ),
            *(f"{a}_{_part}" for a in _aliases),
        )
