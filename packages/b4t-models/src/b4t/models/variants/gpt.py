"""OpenAI GPT (``model='gpt'``): post-norm causal blocks (BERT's order), learned positions,
no embedding LayerNorm, LM head tied to the word embeddings.

Loads transformers' ``OpenAIGPTLMHeadModel`` / ``OpenAIGPTModel`` layout (``Conv1D``
weights transposed on load). Token types, as in transformers and CDial-GPT, are looked
up in the word table: pass ``shared_segment_embeddings=True`` and ``[token_ids,
segment_ids]``. A seed-style call returns softmax probabilities (bert4torch 0.2.5's GPT)
unless ``final_activation='linear'``.
"""

from __future__ import annotations

from b4t.models.config import ModelConfig
from b4t.models.decoder import CausalLM
from b4t.models.registry import Variant, register_variant
from b4t.models.sources import transposed
from b4t.models.transformer import Transformer
from b4t.models.variants.gpt2 import DECODER_OPTIONAL, _set_from_raw, with_seed_layout
from b4t.models.weight_map import WeightSource

__all__ = ["GPT", "gpt_weight_map"]

# transformers' OpenAI GPT activation names -> b4t's ("gelu" there is the tanh form)
_AFN = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}


class GPT(CausalLM):
    """OpenAI GPT: ``x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))``; tied head, no final norm."""

    model_types = ("openai-gpt",)

    def normalise_config(self, config: ModelConfig, name: str) -> None:
        super().normalise_config(config, name)
        if "hidden_act" not in config.raw and "afn" in config.raw:
            afn = str(config.raw["afn"])
            if afn not in _AFN:
                raise ValueError(f"config key 'afn' = {afn!r} in {config.source} is not known")
            config.hidden_act = _AFN[afn]
        _set_from_raw(config, "resid_pdrop", "hidden_dropout_prob", float)
        _set_from_raw(config, "attn_pdrop", "attention_probs_dropout_prob", float)
        config.pre_norm = False


def gpt_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' OpenAI GPT names under ``transformer.``."""
    h = "transformer.h.{i}"
    return {
        "embeddings.word_embeddings.weight": "transformer.tokens_embed.weight",
        "embeddings.position_embeddings.weight": "transformer.positions_embed.weight",
        "layers.{i}.attention.qkv.weight": transposed(f"{h}.attn.c_attn.weight"),
        "layers.{i}.attention.qkv.bias": f"{h}.attn.c_attn.bias",
        "layers.{i}.attention.o.weight": transposed(f"{h}.attn.c_proj.weight"),
        "layers.{i}.attention.o.bias": f"{h}.attn.c_proj.bias",
        "layers.{i}.norm1.weight": f"{h}.ln_1.weight",
        "layers.{i}.norm1.bias": f"{h}.ln_1.bias",
        "layers.{i}.ffn.intermediate.weight": transposed(f"{h}.mlp.c_fc.weight"),
        "layers.{i}.ffn.intermediate.bias": f"{h}.mlp.c_fc.bias",
        "layers.{i}.ffn.output.weight": transposed(f"{h}.mlp.c_proj.weight"),
        "layers.{i}.ffn.output.bias": f"{h}.mlp.c_proj.bias",
        "layers.{i}.norm2.weight": f"{h}.ln_2.weight",
        "layers.{i}.norm2.bias": f"{h}.ln_2.bias",
        "lm_head.weight": "lm_head.weight",
    }


_GPT = Variant(
    name="gpt",
    prefix="transformer",
    weight_map=gpt_weight_map,
    preset={
        "type_vocab_size": 0,
        "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5,
        "max_position_embeddings": 512,
    },
    model_cls=GPT,
    optional_keys=DECODER_OPTIONAL,
    description="OpenAI GPT (post-norm, learned positions, tied head; HF OpenAIGPTLMHeadModel)",
)
# 0.2.5's converted layout (CDial-GPT): BERT names under gpt.*, LayerNorm eps 1e-12
register_variant(
    with_seed_layout(_GPT, "GPT", "gpt", {"hidden_act": "gelu", "layer_norm_eps": 1e-12})
)
