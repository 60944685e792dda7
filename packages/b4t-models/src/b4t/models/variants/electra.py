"""ELECTRA: the BERT encoder under ``electra.``, with ``embeddings_project`` when the
embedding width differs from the hidden width, and the optional replaced-token
detection head (``with_discriminator``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.layers import get_activation
from b4t.models.config import ModelConfig
from b4t.models.forward_state import ForwardState
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_weight_map
from b4t.models.weight_map import WeightSource

__all__ = ["Electra", "ElectraDiscriminatorHead", "electra_weight_map"]


class ElectraDiscriminatorHead(nn.Module):
    """``final(dense_prediction(act(dense(h))))``: ``[B, L, H]`` -> ``[B, L]``.

    One score per token that it was replaced by the generator; ``final_activation``
    'sigmoid' gives probabilities, 'linear' the logits of transformers'
    ``ElectraForPreTraining``.
    """

    def __init__(self, hidden_size: int, hidden_act: str, final_activation: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = get_activation(hidden_act)
        self.dense_prediction = nn.Linear(hidden_size, 1)
        self.final = get_activation(final_activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits = self.dense_prediction(self.act(self.dense(hidden_states))).squeeze(-1)
        return self.final(logits)


class Electra(Transformer):
    """ELECTRA; ``with_discriminator`` appends the replaced-token scores ``[B, L]``.

    ``with_discriminator=True`` gives sigmoid probabilities (bert4keras' default); a
    string names the final activation instead (``'linear'``: logits). The scores come
    after the other outputs: ``[hidden_states, (mlm_scores,) discriminator_scores]``.
    """

    prefix_reuse = False  # its own final stage (the discriminator head)

    def __init__(
        self, config: ModelConfig, with_discriminator: bool | str = False, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.discriminator = None
        if with_discriminator:
            final = "sigmoid" if with_discriminator is True else str(with_discriminator)
            self.discriminator = ElectraDiscriminatorHead(
                config.hidden_size, config.hidden_act, final
            )

    def apply_final_layers(self, state: ForwardState) -> Any:
        """The usual outputs, then the discriminator scores ``[B, L]``."""
        outputs = super().apply_final_layers(state)
        if self.discriminator is None:
            return outputs
        scores = self.discriminator(state.hidden_states)
        if isinstance(outputs, list) and (self.pooler is not None or self.mlm is not None):
            return [*outputs, scores]
        return [outputs, scores]


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
            "mlm.decoder.weight": "generator_lm_head.weight",
        }
    )
    for layer in ("dense", "dense_prediction"):
        for part in ("weight", "bias"):
            mapping[f"discriminator.{layer}.{part}"] = f"discriminator_predictions.{layer}.{part}"
    return mapping


register_variant(
    Variant(
        name="electra",
        prefix="electra",
        weight_map=electra_weight_map,
        model_cls=Electra,
        optional_keys=(*BERT_OPTIONAL, r"^discriminator_predictions\.", r"^generator_"),
        description="ELECTRA discriminator / generator encoder",
    )
)
