"""bert4torch 0.2.5's generic ``model='encoder'``, ``'decoder'`` and ``'transformer'``.

* ``encoder``: BERT (``bert.`` layout) returning ``[hidden_states, mask [B, 1, 1, L]]``,
  as the seed's ``Encoder``; ``src_vocab_size`` in the config overrides ``vocab_size``;
* ``decoder``: BERT embeddings and layers (``bert.`` layout) with cross-attention and an
  untied LM head under the seed's own names (``decoderLayer.{i}.crossAttention.*``,
  ``decoderLayer.{i}.layerNorm3.*``, ``final_dense.weight``): ``[decoder_ids,
  encoder_hidden, encoder_mask]`` -> ``[hidden, logits * H ** -0.5]``;
* ``transformer``: both, in the checkpoint layout 0.2.5 writes for its ``Transformer``
  (its parameter names: ``encoder.encoderLayer.{i}.multiHeadAttention.q.weight``, ...).
"""

from __future__ import annotations

from typing import Any

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.seq2seq import SeedDecoder, SeedTransformer
from b4t.models.transformer import Transformer
from b4t.models.variants.bert import BERT_OPTIONAL, bert_layer_map, bert_weight_map
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["SeedEncoder", "attention_map"]


class SeedEncoder(Transformer):
    """BERT that also returns its padding mask: ``[hidden [B, L, H], mask [B, 1, 1, L]]``."""

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        if config.raw.get("src_vocab_size"):
            config.vocab_size = int(config.raw["src_vocab_size"])
        super().__init__(config, **kwargs)

    def apply_final_layers(self, state: dict[str, Any]) -> Any:
        """BERT's outputs followed by the padding mask ``[B, 1, 1, L]``."""
        out = super().apply_final_layers(state)
        keep = state["attention_mask"]
        if keep is None:
            keep = state["token_ids"].ne(self.token_pad_ids)
        mask = keep.bool()[:, None, None, :].to(state["hidden_states"].dtype)
        return [*(out if isinstance(out, list) else [out]), mask]


def attention_map(
    ours: str, theirs: str, cross: bool = False, proj: str = "{}", out: str = "o"
) -> dict[str, WeightSource]:
    """Names of one attention with biases: b4t's fused ``{ours}.qkv`` (cross-attention:
    ``{ours}.q`` and the fused ``{ours}.kv``) and ``{ours}.o``, from a checkpoint's separate
    projections ``{theirs}.{proj}`` (``proj`` formatted with ``q``, ``k``, ``v``) and its
    output ``{theirs}.{out}``."""
    mapping: dict[str, WeightSource] = {}
    for group in ("q", "kv") if cross else ("qkv",):
        for part in ("weight", "bias"):
            keys = tuple(f"{theirs}.{proj.format(p)}.{part}" for p in group)
            mapping[f"{ours}.{group}.{part}"] = Concat(keys) if len(keys) > 1 else keys[0]
    for part in ("weight", "bias"):
        mapping[f"{ours}.o.{part}"] = f"{theirs}.{out}.{part}"
    return mapping


def _norm(ours: str, theirs: str) -> dict[str, WeightSource]:
    return {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}


def _seed_embeddings(ours: str, theirs: str) -> dict[str, WeightSource]:
    mapping: dict[str, WeightSource] = {
        f"{ours}word_embeddings.weight": f"{theirs}.word_embeddings.weight",
        f"{ours}position_embeddings.weight": f"{theirs}.position_embeddings.weight",
        f"{ours}segment_embeddings.weight": f"{theirs}.segment_embeddings.weight",
    }
    mapping.update(_norm(f"{ours}embedding_norm", f"{theirs}.layerNorm"))
    return mapping


def _seed_layer(ours: str, theirs: str, decoder: bool) -> dict[str, WeightSource]:
    mapping = attention_map(f"{ours}.attention", f"{theirs}.multiHeadAttention")
    mapping.update(_norm(f"{ours}.norm1", f"{theirs}.layerNorm1"))
    mapping.update(_norm(f"{ours}.norm2", f"{theirs}.layerNorm2"))
    for ffn, dense in (("intermediate", "intermediateDense"), ("output", "outputDense")):
        mapping.update(_norm(f"{ours}.ffn.{ffn}", f"{theirs}.feedForward.{dense}"))
    if decoder:
        mapping.update(attention_map(f"{ours}.cross", f"{theirs}.crossAttention", cross=True))
        mapping.update(_norm(f"{ours}.norm_cross", f"{theirs}.layerNorm3"))
    return mapping


def transformer_weight_map(config: ModelConfig, model: Any) -> dict[str, WeightSource]:
    """0.2.5's ``Transformer`` parameter names."""
    mapping = _seed_embeddings("encoder.", "encoder.embeddings")
    mapping.update(_seed_embeddings("decoder.", "decoder.embeddings"))
    mapping["decoder.final_dense.weight"] = "decoder.final_dense.weight"
    for i in range(config.num_hidden_layers):
        mapping.update(_seed_layer(f"encoder.layers.{i}", f"encoder.encoderLayer.{i}", False))
        mapping.update(_seed_layer(f"decoder.layers.{i}", f"decoder.decoderLayer.{i}", True))
    return mapping


def decoder_weight_map(config: ModelConfig, model: Any) -> dict[str, WeightSource]:
    """0.2.5's ``Decoder``: BERT names under ``bert.`` plus its own cross-attention names."""
    emb = "bert.embeddings"
    mapping: dict[str, WeightSource] = {
        "word_embeddings.weight": f"{emb}.word_embeddings.weight",
        "position_embeddings.weight": f"{emb}.position_embeddings.weight",
        "segment_embeddings.weight": f"{emb}.token_type_embeddings.weight",
        "embedding_norm.weight": f"{emb}.LayerNorm.weight",
        "embedding_norm.bias": f"{emb}.LayerNorm.bias",
        "final_dense.weight": "final_dense.weight",
    }
    layer = bert_layer_map("bert.encoder.layer.{i}")
    for i in range(config.num_hidden_layers):
        for name, src in layer.items():
            key = name.format(i=i)
            mapping[key] = src.format(i=i) if src is not None else None  # type: ignore[union-attr]
        cross = f"decoderLayer.{i}.crossAttention"
        mapping.update(attention_map(f"layers.{i}.cross", cross, cross=True))
        mapping.update(_norm(f"layers.{i}.norm_cross", f"decoderLayer.{i}.layerNorm3"))
    return mapping


register_variant(
    Variant(
        name="encoder",
        prefix="bert",
        weight_map=bert_weight_map("bert"),
        model_cls=SeedEncoder,
        optional_keys=BERT_OPTIONAL,
        description="bert4torch's generic Encoder (BERT returning [hidden, mask])",
    )
)
register_variant(
    Variant(
        name="decoder",
        prefix="",
        weight_map=decoder_weight_map,
        model_cls=SeedDecoder,
        optional_keys=BERT_OPTIONAL,
        description="bert4torch's generic Decoder (BERT layers + cross-attention + LM head)",
    )
)
register_variant(
    Variant(
        name="transformer",
        prefix="",
        weight_map=transformer_weight_map,
        model_cls=SeedTransformer,
        description="bert4torch's generic Transformer (encoder-decoder, its own names)",
    )
)
