"""ERNIE (BERT graph with optional task-type embeddings) and UIE (ERNIE 3 + pointer heads)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from b4t.models.config import ConfigError, ModelConfig
from b4t.models.forward_state import ForwardState
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_weight_map
from b4t.models.weight_map import FirstOf, WeightSource

__all__ = ["UIE"]


def ernie_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """BERT map under ``ernie.`` plus the task-type table."""
    mapping = bert_weight_map("ernie")
    mapping["embeddings.task_type_embeddings.weight"] = (
        "ernie.embeddings.task_type_embeddings.weight"
    )
    # Paddle-converted ERNIE files (what bert4torch 0.2.5 loads) name the LayerNorm
    # tensors gamma / beta
    for name, src in mapping.items():
        if isinstance(src, str) and ".LayerNorm." in src:
            paddle = src.replace(".weight", ".gamma").replace(".bias", ".beta")
            mapping[name] = FirstOf((src, paddle))
    return mapping


register_variant(
    Variant(
        name="ernie",
        prefix="ernie",
        weight_map=ernie_weight_map,
        optional_keys=BERT_OPTIONAL,
        description="ERNIE 1/2/3 (BERT graph, optional task-type embeddings)",
    )
)


class UIE(Transformer):
    """UIE: the ERNIE 3 encoder with start/end pointer heads (as in bert4torch).

    Returns ``[hidden_states, ..., start_prob [B, L], end_prob [B, L]]``: the usual
    outputs followed by the sigmoid start and end probabilities.
    """

    prefix_reuse = False  # its own final stage (the start/end pointers)

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.linear_start = nn.Linear(config.hidden_size, 1)
        self.linear_end = nn.Linear(config.hidden_size, 1)

    def apply_final_layers(self, state: ForwardState) -> Any:
        """The usual outputs, then the start and end probabilities ``[B, L]``."""
        outputs = super().apply_final_layers(state)
        hidden = state.hidden_states
        start = torch.sigmoid(self.linear_start(hidden).squeeze(-1))
        end = torch.sigmoid(self.linear_end(hidden).squeeze(-1))
        if isinstance(outputs, list) and (self.pooler is not None or self.mlm is not None):
            return [*outputs, start, end]
        return [outputs, start, end]


def uie_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """ERNIE map plus ``linear_start`` / ``linear_end``."""
    mapping = ernie_weight_map(config, model)
    for head in ("linear_start", "linear_end"):
        mapping[f"{head}.weight"] = f"{head}.weight"
        mapping[f"{head}.bias"] = f"{head}.bias"
    return mapping


def uie_bert_layout_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """bert4torch 0.2.5's UIE layout: BERT keys under ``bert.``, the task-type table under
    its own name, and ``linear_start`` / ``linear_end``."""
    mapping = bert_weight_map("bert")
    mapping["embeddings.task_type_embeddings.weight"] = FirstOf(
        ("embeddings.task_type_embeddings.weight", "bert.embeddings.task_type_embeddings.weight")
    )
    for head in ("linear_start", "linear_end"):
        mapping[f"{head}.weight"] = f"{head}.weight"
        mapping[f"{head}.bias"] = f"{head}.bias"
    return mapping


UIE_ERNIE_LAYOUT = Variant(
    name="uie",
    prefix="ernie",
    weight_map=uie_weight_map,
    model_cls=UIE,
    optional_keys=BERT_OPTIONAL,
    description="UIE (ERNIE 3 + start/end pointers)",
)
UIE_BERT_LAYOUT = dataclasses.replace(
    UIE_ERNIE_LAYOUT, prefix="bert", weight_map=uie_bert_layout_map
)


def resolve_uie(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
    """``ernie.*`` keys (transformers' ERNIE) or ``bert.*`` keys (bert4torch 0.2.5's UIE).

    Without a checkpoint, or with neither prefix, the ERNIE layout; both: ConfigError.
    """
    if state is None:
        return UIE_ERNIE_LAYOUT
    ernie = any(k.startswith("ernie.") for k in state)
    bert = any(k.startswith("bert.") for k in state)
    if ernie and bert:
        raise ConfigError("model='uie': the checkpoint holds both 'ernie.*' and 'bert.*' keys")
    return UIE_BERT_LAYOUT if bert else UIE_ERNIE_LAYOUT


register_variant(dataclasses.replace(UIE_ERNIE_LAYOUT, resolve=resolve_uie))
