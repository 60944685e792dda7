"""GPT2-ML (``model='gpt2_ml'``, imcaspar/gpt2-ml) in bert4torch 0.2.5's checkpoint layout.

The graph is closer to GPT than to GPT-2: learned positions, a LayerNorm after the
embedding sum, and blocks ordered ``h = x + attn(x); x = ln_2(h + ffn(ln_1(h)))`` (the
first residual before the norm, unlike BERT). The LM head is tied to the word
embeddings. Checkpoint names are BERT's under the prefix ``gpt2_ml.`` (the layout the
seed's conversion script writes and 0.2.5 loads). A seed-style call returns softmax
probabilities unless ``final_activation='linear'``.
"""

from __future__ import annotations

from typing import Any

import torch

from b4t.layers import TransformerBlock
from b4t.models.config import ModelConfig
from b4t.models.decoder import CausalLM
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import bert_weight_map
from b4t.models.variants.gpt2 import SEED_DECODER_OPTIONAL
from b4t.models.weight_map import WeightSource

__all__ = ["GPT2ML", "Gpt2MlBlock", "gpt2_ml_weight_map"]


class Gpt2MlBlock(TransformerBlock):
    """``h = x + attn(x); out = ln_2(h + ffn(ln_1(h)))`` (dropout on both branches)."""

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        """``x [B, L, H]`` -> ``(x, probs or None, (k, v) or None)``, as TransformerBlock."""
        attn, probs, present = self.attention(x, attention_mask, **kwargs)
        h = x + self._drop(attn)
        h = h + self._drop(self.ffn(self.norm1(h, cond)))
        return self.norm2(h, cond), probs, present


class GPT2ML(CausalLM):
    """GPT2-ML: embedding LayerNorm, :class:`Gpt2MlBlock` layers, tied head."""

    embedding_norm = True
    block_cls = Gpt2MlBlock  # TransformerBlock's parameters, GPT2-ML's order


def gpt2_ml_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """BERT names under ``gpt2_ml.`` (embeddings and encoder layers only) and the head."""
    bert = bert_weight_map("gpt2_ml", mlm_head=None)
    mapping = {k: v for k, v in bert.items() if k.startswith(("embeddings.", "layers."))}
    mapping["lm_head.weight"] = "gpt2_ml.lm_head.weight"
    return mapping


register_variant(
    Variant(
        name="gpt2_ml",
        prefix="gpt2_ml",
        weight_map=gpt2_ml_weight_map,
        model_cls=GPT2ML,
        optional_keys=SEED_DECODER_OPTIONAL,
        description="GPT2-ML (bert4torch 0.2.5 layout: BERT names under gpt2_ml.)",
    )
)
