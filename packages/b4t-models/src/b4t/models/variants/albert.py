"""ALBERT: factorised embeddings and one shared layer (``albert``) or per-layer copies
initialised from it (``albert_unshared``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import encoder_layer_map
from b4t.models.weight_map import WeightSource

__all__ = ["Albert", "SeedAlbert", "albert_weight_map"]


class Albert(Transformer):
    """ALBERT: the embedding-to-hidden projection exists even when the widths are equal
    (transformers applies ``embedding_hidden_mapping_in`` always; a checkpoint holds it)."""

    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        emb = super().build_embeddings(layer_add_embs)
        if getattr(emb, "projection", None) is None:
            emb.projection = nn.Linear(self.config.embedding_dim, self.config.hidden_size)
        return emb


class SeedAlbert(Albert):
    """ALBERT converted for (or saved by) bert4torch 0.2.5 with equal widths: 0.2.5 has
    no ``embedding_hidden_mapping_in`` then (the embeddings feed the layers directly), so
    neither has this model."""

    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        return Transformer.build_embeddings(self, layer_add_embs)


def albert_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """Map onto transformers' ALBERT layout (one layer group, one inner layer)."""
    if config.num_hidden_groups != 1 or config.inner_group_num != 1:
        raise ValueError(
            "ALBERT checkpoints with num_hidden_groups != 1 or inner_group_num != 1 are not "
            f"supported (got {config.num_hidden_groups}, {config.inner_group_num}; "
            f"config {config.source})"
        )
    emb = "albert.embeddings"
    layer = "albert.encoder.albert_layer_groups.0.albert_layers.0"
    att = f"{layer}.attention"
    mapping: dict[str, WeightSource] = {
        "embeddings.word_embeddings.weight": f"{emb}.word_embeddings.weight",
        "embeddings.segment_embeddings.weight": f"{emb}.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight": f"{emb}.position_embeddings.weight",
        "embeddings.layer_norm.weight": f"{emb}.LayerNorm.weight",
        "embeddings.layer_norm.bias": f"{emb}.LayerNorm.bias",
        "embeddings.projection.weight": "albert.encoder.embedding_hidden_mapping_in.weight",
        "embeddings.projection.bias": "albert.encoder.embedding_hidden_mapping_in.bias",
    }
    mapping.update(
        encoder_layer_map(
            qkv=(f"{att}.query", f"{att}.key", f"{att}.value"),
            o=f"{att}.dense",
            norm1=f"{att}.LayerNorm",
            ffn_in=f"{layer}.ffn",
            ffn_out=f"{layer}.ffn_output",
            norm2=f"{layer}.full_layer_layer_norm",
        )
    )
    heads: dict[str, WeightSource] = {
        "pooler.dense.weight": "albert.pooler.weight",
        "pooler.dense.bias": "albert.pooler.bias",
        "nsp.weight": "sop_classifier.classifier.weight",
        "nsp.bias": "sop_classifier.classifier.bias",
        "mlm.dense.weight": "predictions.dense.weight",
        "mlm.dense.bias": "predictions.dense.bias",
        "mlm.layer_norm.weight": "predictions.LayerNorm.weight",
        "mlm.layer_norm.bias": "predictions.LayerNorm.bias",
        "mlm.bias": "predictions.bias",
        "mlm.decoder.weight": "predictions.decoder.weight",
        "mlm.decoder.bias": "predictions.decoder.bias",
    }
    return {**mapping, **heads}


ALBERT_OPTIONAL = (
    r"position_ids$",
    r"^classifier\.",
)

_ALBERT = Variant(
    name="albert",
    prefix="albert",
    weight_map=albert_weight_map,
    model_cls=Albert,
    preset={"share_layers": True, "hidden_act": "gelu_new"},
    optional_keys=ALBERT_OPTIONAL,
    description="ALBERT (factorised embeddings, all layers share one set of weights)",
)
_ALBERT_UNSHARED = dataclasses.replace(
    _ALBERT,
    name="albert_unshared",
    preset={"share_layers": False, "hidden_act": "gelu_new"},
    description="ALBERT with every layer its own copy of the shared checkpoint layer",
)


def seed_albert_resolver(variant: Variant):  # type: ignore[no-untyped-def]
    """Equal embedding and hidden widths and a checkpoint without
    ``embedding_hidden_mapping_in`` (0.2.5's layout): :class:`SeedAlbert`."""
    seed = dataclasses.replace(variant, model_cls=SeedAlbert)

    def resolve(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
        width = raw.get("embedding_size")
        if (
            state is not None
            and width in (None, raw.get("hidden_size"))
            and not any(k.endswith("embedding_hidden_mapping_in.weight") for k in state)
        ):
            return seed
        return variant

    return resolve


for _variant in (_ALBERT, _ALBERT_UNSHARED):
    register_variant(dataclasses.replace(_variant, resolve=seed_albert_resolver(_variant)))
