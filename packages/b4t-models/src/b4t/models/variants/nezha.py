"""NEZHA: the BERT graph with functional (fixed sinusoid) relative positions, no absolute table.

Every layer uses :class:`b4t.layers.relative_positions.NezhaAttention`; the clipping
distance is ``max_relative_position`` from ``config.json`` (64 when absent, as in the
released checkpoints). Checkpoints use the BERT layout under ``bert.`` (as transformers'
former ``NezhaModel``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from b4t.layers.relative_positions import NezhaAttention
from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_weight_map
from b4t.models.weight_map import WeightSource

__all__ = ["Nezha"]


class Nezha(Transformer):
    """BERT with NEZHA relative positions in every attention layer."""

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        max_rel = self.config.extra.get("max_relative_position", 64)
        if not isinstance(max_rel, int) or isinstance(max_rel, bool) or max_rel < 1:
            raise ValueError(
                f"config key 'max_relative_position' in {self.config.source} must be a "
                f"positive int, got {max_rel!r}"
            )
        overrides.setdefault("attention_cls", NezhaAttention)
        overrides.setdefault("attention_kwargs", {"max_relative_position": max_rel})
        return super().build_layer(index, **overrides)


def nezha_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """The BERT map without the absolute position table."""
    mapping = bert_weight_map("bert")
    del mapping["embeddings.position_embeddings.weight"]
    return mapping


register_variant(
    Variant(
        name="nezha",
        prefix="bert",
        weight_map=nezha_weight_map,
        preset={"position_type": "none"},
        model_cls=Nezha,
        optional_keys=(*BERT_OPTIONAL, r"relative_positions_encoding\."),
        description="NEZHA (functional relative positions)",
    )
)
