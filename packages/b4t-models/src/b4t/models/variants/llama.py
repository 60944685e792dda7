"""LLaMA (``model='llama'``): RMSNorm pre-norm blocks, half-split rotary positions,
grouped-query attention, SwiGLU feed-forward, final RMSNorm and an (untied) LM head.

Loads transformers' ``LlamaForCausalLM`` / ``LlamaModel`` layout: ``q_proj``, ``k_proj``
and ``v_proj`` are fused into one ``qkv`` projection (split back on save);
``gate_proj`` -> ``ffn.intermediate``, ``up_proj`` -> ``ffn.gate``, ``down_proj`` ->
``ffn.output``. Config keys read: ``num_key_value_heads``, ``head_dim``,
``rms_norm_eps``, ``rope_theta`` (or ``rope_parameters.rope_theta``),
``attention_bias``/``mlp_bias``, ``tie_word_embeddings``. Rope scaling other than the
default is refused. A seed-style call returns softmax probabilities unless
``final_activation='linear'``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from b4t.layers.gqa import GroupedQueryAttention, rope_cos_sin
from b4t.models.config import ModelConfig
from b4t.models.decoder import CausalLM
from b4t.models.forward_state import DecoderState
from b4t.models.registry import Variant, register_variant
from b4t.models.sources import SplitConcat
from b4t.models.transformer import Transformer
from b4t.models.variants.gpt2 import DECODER_OPTIONAL, _set_from_raw
from b4t.models.weight_map import WeightSource

__all__ = ["LLaMA", "llama_weight_map"]


def _rope_theta(config: ModelConfig) -> float:
    raw = config.raw
    params = raw.get("rope_parameters") or {}
    scaling = raw.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ValueError(f"rope type {kind!r} in {config.source} is not supported (only 'default')")
    return float(raw.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _head_dim(config: ModelConfig) -> int:
    return config.attention_head_size or config.hidden_size // config.num_attention_heads


def _kv_heads(config: ModelConfig) -> int:
    return int(config.extra.get("num_key_value_heads") or config.num_attention_heads)


class LLaMA(CausalLM):
    """LLaMA: ``x += attn(rms_1(x)); x += down(silu(gate(rms_2(x))) * up(rms_2(x)))``."""

    final_norm = True
    model_types = ("llama",)
    # its layer_kwargs (rotary tables) read the position ids the decoder stage computes
    # for the new positions: reuse runs as in CausalLM
    prefix_reuse = True

    def normalise_config(self, config: ModelConfig, name: str) -> None:
        super().normalise_config(config, name)
        _set_from_raw(config, "rms_norm_eps", "layer_norm_eps", float)
        _set_from_raw(config, "head_dim", "attention_head_size", int)
        attention_bias = bool(config.raw.get("attention_bias", config.bias))
        mlp_bias = bool(config.raw.get("mlp_bias", attention_bias))
        if attention_bias != mlp_bias:
            raise ValueError(
                f"{config.source}: attention_bias={attention_bias} with mlp_bias={mlp_bias} is "
                "not supported (b4t's block uses one bias flag)"
            )
        config.bias = attention_bias
        config.norm_mode = "rmsnorm"
        config.pre_norm = True
        config.is_gated = True
        config.position_type = "none"
        config.extra["rope_theta"] = _rope_theta(config)
        if config.num_attention_heads % _kv_heads(config):
            raise ValueError(
                f"{config.source}: num_attention_heads {config.num_attention_heads} is not a "
                f"multiple of num_key_value_heads {_kv_heads(config)}"
            )

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        overrides.setdefault("attention_cls", GroupedQueryAttention)
        overrides.setdefault("attention_kwargs", {"num_key_value_heads": _kv_heads(self.config)})
        overrides.setdefault("norm_bias", False)
        return super().build_layer(index, **overrides)

    def layer_kwargs(self, state: DecoderState) -> dict[str, Any]:
        """``rotary_cos_sin``: the rotary tables of the call's positions, for every layer."""
        cos, sin = rope_cos_sin(
            state.position_ids,
            _head_dim(self.config),
            self.config.extra["rope_theta"],
            state.hidden_states.dtype,
        )
        return {"rotary_cos_sin": (cos, sin)}


def llama_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' LLaMA names under ``model.``."""
    d = _head_dim(config)
    sizes = (config.num_attention_heads * d, _kv_heads(config) * d, _kv_heads(config) * d)
    layer = "model.layers.{i}"
    att = f"{layer}.self_attn"
    mapping: dict[str, WeightSource] = {
        "embeddings.word_embeddings.weight": "model.embed_tokens.weight",
        "layers.{i}.attention.qkv.weight": SplitConcat(
            tuple(f"{att}.{p}_proj.weight" for p in "qkv"), 0, sizes
        ),
        "layers.{i}.attention.o.weight": f"{att}.o_proj.weight",
        "layers.{i}.norm1.weight": f"{layer}.input_layernorm.weight",
        "layers.{i}.norm2.weight": f"{layer}.post_attention_layernorm.weight",
        "layers.{i}.ffn.intermediate.weight": f"{layer}.mlp.gate_proj.weight",
        "layers.{i}.ffn.gate.weight": f"{layer}.mlp.up_proj.weight",
        "layers.{i}.ffn.output.weight": f"{layer}.mlp.down_proj.weight",
        "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    if config.bias:
        mapping["layers.{i}.attention.qkv.bias"] = SplitConcat(
            tuple(f"{att}.{p}_proj.bias" for p in "qkv"), 0, sizes
        )
        mapping["layers.{i}.attention.o.bias"] = f"{att}.o_proj.bias"
        for ours, theirs in (("intermediate", "gate"), ("gate", "up"), ("output", "down")):
            mapping[f"layers.{{i}}.ffn.{ours}.bias"] = f"{layer}.mlp.{theirs}_proj.bias"
    return mapping


register_variant(
    Variant(
        name="llama",
        prefix="model",
        weight_map=llama_weight_map,
        preset={
            "type_vocab_size": 0,
            "hidden_act": "silu",
            "layer_norm_eps": 1e-6,
            "bias": False,
            "norm_mode": "rmsnorm",
            "pre_norm": True,
            "is_gated": True,
            "position_type": "none",
            "max_position_embeddings": 2048,
        },
        model_cls=LLaMA,
        optional_keys=(*DECODER_OPTIONAL, r"rotary_emb\.inv_freq$"),
        description="LLaMA (RMSNorm, rotary, grouped-query attention, SwiGLU; HF LlamaForCausalLM)",
    )
)
