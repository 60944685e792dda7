"""BERT and its same-graph relatives: bert, roberta, ernie (weight maps + presets)."""

from __future__ import annotations

from b4t.models.registry import Variant, register_variant
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["bert_layer_map", "bert_mlm_map", "bert_weight_map"]


def bert_layer_map(layer: str) -> dict[str, WeightSource]:
    """Map of one BERT-layout encoder layer; ``layer`` is e.g. ``'bert.encoder.layer.{i}'``."""
    att = f"{layer}.attention"
    return {
        "layers.{i}.attention.qkv.weight": Concat(
            tuple(f"{att}.self.{p}.weight" for p in ("query", "key", "value"))
        ),
        "layers.{i}.attention.qkv.bias": Concat(
            tuple(f"{att}.self.{p}.bias" for p in ("query", "key", "value"))
        ),
        "layers.{i}.attention.o.weight": f"{att}.output.dense.weight",
        "layers.{i}.attention.o.bias": f"{att}.output.dense.bias",
        "layers.{i}.norm1.weight": f"{att}.output.LayerNorm.weight",
        "layers.{i}.norm1.bias": f"{att}.output.LayerNorm.bias",
        "layers.{i}.ffn.intermediate.weight": f"{layer}.intermediate.dense.weight",
        "layers.{i}.ffn.intermediate.bias": f"{layer}.intermediate.dense.bias",
        "layers.{i}.ffn.output.weight": f"{layer}.output.dense.weight",
        "layers.{i}.ffn.output.bias": f"{layer}.output.dense.bias",
        "layers.{i}.norm2.weight": f"{layer}.output.LayerNorm.weight",
        "layers.{i}.norm2.bias": f"{layer}.output.LayerNorm.bias",
    }


def bert_mlm_map(head: str = "cls.predictions") -> dict[str, WeightSource]:
    """The BERT MLM transform + decoder bias (the decoder weight is the tied embedding)."""
    return {
        "mlm.dense.weight": f"{head}.transform.dense.weight",
        "mlm.dense.bias": f"{head}.transform.dense.bias",
        "mlm.layer_norm.weight": f"{head}.transform.LayerNorm.weight",
        "mlm.layer_norm.bias": f"{head}.transform.LayerNorm.bias",
        "mlm.bias": f"{head}.bias",
    }


def bert_weight_map(prefix: str = "bert", mlm_head: str | None = "cls.predictions") -> dict:
    """The whole BERT-layout map for base-model prefix ``prefix``."""
    emb = f"{prefix}.embeddings"
    mapping: dict[str, WeightSource] = {
        "embeddings.word_embeddings.weight": f"{emb}.word_embeddings.weight",
        "embeddings.segment_embeddings.weight": f"{emb}.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight": f"{emb}.position_embeddings.weight",
        "embeddings.layer_norm.weight": f"{emb}.LayerNorm.weight",
        "embeddings.layer_norm.bias": f"{emb}.LayerNorm.bias",
        "pooler.dense.weight": f"{prefix}.pooler.dense.weight",
        "pooler.dense.bias": f"{prefix}.pooler.dense.bias",
        "nsp.weight": "cls.seq_relationship.weight",
        "nsp.bias": "cls.seq_relationship.bias",
    }
    mapping.update(bert_layer_map(f"{prefix}.encoder.layer.{{i}}"))
    if mlm_head:
        mapping.update(bert_mlm_map(mlm_head))
    return mapping


# checkpoint keys that may stay unused: heads not asked for, buffers
BERT_OPTIONAL = (
    r"^cls\.",
    r"(^|\.)pooler\.",
    r"position_ids$",
    r"^lm_head\.",
    r"^classifier\.",
    r"^qa_outputs\.",
)

register_variant(
    Variant(
        name="bert",
        prefix="bert",
        weight_map=bert_weight_map("bert"),
        optional_keys=BERT_OPTIONAL,
        description="BERT (post-norm, learned absolute positions)",
    )
)

_roberta_map = bert_weight_map("roberta", mlm_head=None)
_roberta_map.update(
    {
        "mlm.dense.weight": "lm_head.dense.weight",
        "mlm.dense.bias": "lm_head.dense.bias",
        "mlm.layer_norm.weight": "lm_head.layer_norm.weight",
        "mlm.layer_norm.bias": "lm_head.layer_norm.bias",
        "mlm.bias": "lm_head.bias",
    }
)
register_variant(
    Variant(
        name="roberta",
        prefix="roberta",
        weight_map=_roberta_map,
        preset={"roberta_positions": True, "pad_token_id": 1},
        optional_keys=BERT_OPTIONAL,
        description="RoBERTa (positions counted from pad_token_id + 1)",
    )
)
