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

__all__ = ["SeedEncoder"]


class SeedEncoder(Transformer):
    """BERT that also returns its padding mask: ``[hidden [B, L, H], mask [B, 1, 1, L]]``."""

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        if config.raw.get("src_vocab_size"):
            config.vocab_size = int(config.raw["src_vocab_size"])
        super().__init__(config, **kwargs)

    def apply_final_layers(self, state: dict[str, Any]) -> Any:
        out = super().apply_final_layers(state)
        keep = state["attention_mask"]
        if keep is None:
            keep = state["token_ids"].ne(self.token_pad_ids)
        mask = keep.bool()[:, None, None, :].to(state["hidden_states"].dtype)
        return [*(out if isinstance(out, list) else [out]), mask]


def _seed_attention(ours: str, theirs: str) -> dict[str, WeightSource]:
    return {
        f"{ours}.qkv.weight": Concat(tuple(f"{theirs}.{p}.weight" for p in "qkv")),
        f"{ours}.qkv.bias": Concat(tuple(f"{theirs}.{p}.bias" for p in "qkv")),
        f"{ours}.o.weight": f"{theirs}.o.weight",
        f"{ours}.o.bias": f"{theirs}.o.bias",
    }


def _cross(ours: str, theirs: str) -> dict[str, WeightSource]:
    return {
        f"{ours}.q.weight": f"{theirs}.q.weight",
        f"{ours}.q.bias": f"{theirs}.q.bias",
        f"{ours}.kv.weight": Concat((f"{theirs}.k.weight", f"{theirs}.v.weight")),
        f"{ours}.kv.bias": Concat((f"{theirs}.k.bias", f"{theirs}.v.bias")),
        f"{ours}.o.weight": f"{theirs}.o.weight",
        f"{ours}.o.bias": f"{theirs}.o.bias",
    }


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
    mapping = _seed_attention(f"{ours}.attention", f"{theirs}.multiHeadAttention")
    mapping.update(_norm(f"{ours}.norm1", f"{theirs}.layerNorm1"))
    mapping.update(_norm(f"{ours}.norm2", f"{theirs}.layerNorm2"))
    for ffn, dense in (("intermediate", "intermediateDense"), ("output", "outputDense")):
        mapping.update(_norm(f"{ours}.ffn.{ffn}", f"{theirs}.feedForward.{dense}"))
    if decoder:
        mapping.update(_cross(f"{ours}.cross", f"{theirs}.crossAttention"))
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
        mapping.update(_cross(f"layers.{i}.cross", f"decoderLayer.{i}.crossAttention"))
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
