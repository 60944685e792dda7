"""ELECTRA: the BERT encoder under ``electra.``, with ``embeddings_project`` when the
embedding width differs from the hidden width. The discriminator head is optional."""

from __future__ import annotations

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_weight_map
from b4t.models.weight_map import WeightSource

__all__ = ["electra_weight_map"]


def electra_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """BERT layout under ``electra.`` minus the pooler, plus the embedding projection."""
    mapping = bert_weight_map("electra", mlm_head=None)
    for key in ("pooler.dense.weight", "pooler.dense.bias", "nsp.weight", "nsp.bias"):
        mapping.pop(key)
    mapping["embeddings.projection.weight"] = "electra.embeddings_project.weight"
    mapping["embeddings.projection.bias"] = "electra.embeddings_project.bias"
    mapping.update(
        {
            "mlm.dense.weight": "generator_predictions.dense.weight",
            "mlm.dense.bias": "generator_predictions.dense.bias",
            "mlm.layer_norm.weight": "generator_predictions.LayerNorm.weight",
            "mlm.layer_norm.bias": "generator_predictions.LayerNorm.bias",
            "mlm.bias": "generator_lm_head.bias",
        }
    )
    return mapping


register_variant(
    Variant(
        name="electra",
        prefix="electra",
        weight_map=electra_weight_map,
        optional_keys=(*BERT_OPTIONAL, r"^discriminator_predictions\.", r"^generator_"),
        description="ELECTRA discriminator / generator encoder",
    )
)
