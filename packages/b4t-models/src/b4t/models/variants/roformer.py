"""RoFormer (rotary positions, BERT graph) and RoFormer-v2 (no biases, weightless RMS norms).

* ``roformer``: transformers' RoFormer layout under ``roformer.``; no absolute position
  table, queries and keys rotated in every layer (:class:`b4t.layers.rotary.RotaryAttention`).
* ``roformer_v2``: the same rotary attention with no biases anywhere, RMS norms without
  gain or bias (post-norm, also after the embeddings), and an MLM head that is only the
  tied embedding matrix (as in bert4keras / bert4torch). Its checkpoint names are the
  RoFormer ones without bias and LayerNorm entries.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers import LayerNorm
from b4t.layers.rotary import RotaryAttention
from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_weight_map
from b4t.models.weight_map import WeightSource

__all__ = ["RoFormer", "RoFormerV2", "TiedDecoder"]


class RoFormer(Transformer):
    """BERT graph with rotary attention and no absolute positions."""

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        if config.extra.get("rotary_value"):
            raise ValueError(
                f"config key 'rotary_value' = true in {config.source} is not supported "
                "(b4t rotates queries and keys only)"
            )
        super().__init__(config, **kwargs)

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        overrides.setdefault("attention_cls", RotaryAttention)
        overrides.setdefault(
            "attention_kwargs", {"max_position": self.config.max_position_embeddings}
        )
        return super().build_layer(index, **overrides)


def roformer_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """BERT map under ``roformer.`` without a position table, plus the embedding projection."""
    mapping = bert_weight_map("roformer")
    del mapping["embeddings.position_embeddings.weight"]
    mapping["embeddings.projection.weight"] = "roformer.embeddings_project.weight"
    mapping["embeddings.projection.bias"] = "roformer.embeddings_project.bias"
    return mapping


ROFORMER_OPTIONAL = (*BERT_OPTIONAL, r"embed_positions\.weight$")

register_variant(
    Variant(
        name="roformer",
        prefix="roformer",
        weight_map=roformer_weight_map,
        preset={"position_type": "none"},
        model_cls=RoFormer,
        optional_keys=ROFORMER_OPTIONAL,
        description="RoFormer (rotary position embedding)",
    )
)


class TiedDecoder(nn.Module):
    """MLM scores as ``hidden @ word_embeddings^T`` with no transform and no bias."""

    tied = True

    def forward(
        self,
        hidden_states: torch.Tensor,
        embedding_weight: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.linear(hidden_states, embedding_weight)


def _weightless_rms_norm(size: int, eps: float) -> LayerNorm:
    """An RMS norm whose gain is fixed at one (not trained, not in checkpoints)."""
    norm = LayerNorm(size, eps, bias=False, norm_mode="rmsnorm")
    norm.weight.requires_grad_(False)
    return norm


class RoFormerV2(RoFormer):
    """RoFormer-v2: rotary attention, no biases, weightless RMS post-norms, tied MLM decoder.

    ``x = rms(x + attn(x)); x = rms(x + ffn(x))``; embeddings are ``rms(word + segment)``.
    """

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if self.mlm is not None:
            self.mlm = TiedDecoder()

    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        emb = super().build_embeddings(layer_add_embs)
        emb.layer_norm = _weightless_rms_norm(self.config.embedding_dim, self.config.layer_norm_eps)
        return emb

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        overrides.setdefault("bias", False)
        overrides.setdefault("norm_mode", "rmsnorm")
        overrides.setdefault("norm_bias", False)
        layer = super().build_layer(index, **overrides)
        for norm in (layer.norm1, layer.norm2):
            norm.weight.requires_grad_(False)
        return layer


def roformer_v2_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """The RoFormer map without biases, norms, pooler and MLM transform."""
    mapping = roformer_weight_map(config, model)
    return {
        name: src
        for name, src in mapping.items()
        if not name.endswith(".bias")
        and "norm" not in name
        and (not name.startswith("mlm.") or name == "mlm.decoder.weight")
    }


register_variant(
    Variant(
        name="roformer_v2",
        prefix="roformer",
        weight_map=roformer_v2_weight_map,
        preset={"position_type": "none", "bias": False, "norm_mode": "rmsnorm"},
        model_cls=RoFormerV2,
        optional_keys=ROFORMER_OPTIONAL,
        description="RoFormer-v2 (rotary, no biases, weightless RMS norms)",
    )
)
