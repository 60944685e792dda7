"""GAU-alpha: RoFormer-v2-style embeddings and norms with gated attention units as layers.

Each layer is ``x = rms(x + dropout(GAU(x)))`` (:class:`b4t.layers.gau.GatedAttentionUnit`:
single-head rotary attention with ``softmax_plus`` normalisation, no biases); the RMS
norms have no weights. ``config.json`` keys: ``attention_key_size`` (default 128),
``intermediate_size``, ``hidden_act`` (``swish``). Checkpoints use bert4torch's names
(``encoderLayer.{i}.gau.i_dense.weight``, ...), as converted from the released weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.layers import get_activation
from b4t.layers.gau import GatedAttentionUnit
from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.roformer import RoFormerV2, _weightless_rms_norm
from b4t.models.weight_map import WeightSource

__all__ = ["GAUAlpha", "GAULayer"]


class GAULayer(nn.Module):
    """``x = norm(x + dropout(gau(x, mask)))`` with a weightless RMS norm.

    ``forward(x [B, L, H], attention_mask additive [B, 1, 1|L, L] or None)`` ->
    ``(x, None, None)``, the layer protocol of :class:`b4t.layers.TransformerBlock`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        key_size = config.attention_key_size or config.extra.get("attention_key_size", 128)
        if not isinstance(key_size, int) or isinstance(key_size, bool) or key_size < 2:
            raise ValueError(
                f"config key 'attention_key_size' in {config.source} must be an even int "
                f">= 2, got {key_size!r}"
            )
        self.gau = GatedAttentionUnit(
            config.hidden_size,
            key_size,
            config.intermediate_size,
            activation=get_activation(config.hidden_act),
            bias=False,
            normalization=str(config.extra.get("normalization", "softmax_plus")),
            rotary=True,
            max_position=config.max_position_embeddings,
            dropout=config.attention_probs_dropout_prob,
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.norm = _weightless_rms_norm(config.hidden_size, config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, None, None]:
        keep = None
        if attention_mask is not None:
            keep = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        return self.norm(x + self.dropout(self.gau(x, keep))), None, None


class GAUAlpha(RoFormerV2):
    """GAU-alpha encoder (``model='gau_alpha'``)."""

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        return GAULayer(self.config)


def gau_alpha_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """bert4torch's GAU-alpha names (no prefix)."""
    return {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.segment_embeddings.weight": "embeddings.segment_embeddings.weight",
        "layers.{i}.gau.i_dense.weight": "encoderLayer.{i}.gau.i_dense.weight",
        "layers.{i}.gau.o_dense.weight": "encoderLayer.{i}.gau.o_dense.weight",
        "layers.{i}.gau.offsetscale.gamma": "encoderLayer.{i}.gau.offsetscale.gamma",
    }


register_variant(
    Variant(
        name="gau_alpha",
        prefix="",
        weight_map=gau_alpha_weight_map,
        preset={"position_type": "none", "bias": False, "norm_mode": "rmsnorm"},
        model_cls=GAUAlpha,
        optional_keys=(r"^mlmDecoder\.",),
        description="GAU-alpha (gated attention units, rotary, softmax_plus)",
    )
)
