"""BERT and its same-graph relatives: bert and roberta (both layouts), weight maps + presets."""

from __future__ import annotations

import dataclasses
from typing import Any

from b4t.models.config import ConfigError
from b4t.models.registry import Variant, register_variant
from b4t.models.weight_map import Concat, WeightSource

__all__ = [
    "bert_layer_map",
    "bert_mlm_map",
    "bert_weight_map",
    "encoder_layer_map",
    "resolve_roberta",
]


def encoder_layer_map(
    qkv: tuple[str, str, str], o: str, norm1: str, ffn_in: str, ffn_out: str, norm2: str
) -> dict[str, WeightSource]:
    """Map of one post-norm encoder layer (b4t's ``TransformerBlock``) from the checkpoint
    modules holding its parts (each with ``.weight`` and ``.bias``): the query, key and
    value projections (fused into ``qkv``), the attention output, the two norms and the
    feed-forward's two projections."""
    parts = {
        "attention.o": o,
        "norm1": norm1,
        "ffn.intermediate": ffn_in,
        "ffn.output": ffn_out,
        "norm2": norm2,
    }
    mapping: dict[str, WeightSource] = {}
    for kind in ("weight", "bias"):
        mapping[f"layers.{{i}}.attention.qkv.{kind}"] = Concat(tuple(f"{m}.{kind}" for m in qkv))
    for ours, theirs in parts.items():
        for kind in ("weight", "bias"):
            mapping[f"layers.{{i}}.{ours}.{kind}"] = f"{theirs}.{kind}"
    return mapping


def bert_layer_map(layer: str) -> dict[str, WeightSource]:
    """Map of one BERT-layout encoder layer; ``layer`` is e.g. ``'bert.encoder.layer.{i}'``."""
    att = f"{layer}.attention"
    return encoder_layer_map(
        qkv=(f"{att}.self.query", f"{att}.self.key", f"{att}.self.value"),
        o=f"{att}.output.dense",
        norm1=f"{att}.output.LayerNorm",
        ffn_in=f"{layer}.intermediate.dense",
        ffn_out=f"{layer}.output.dense",
        norm2=f"{layer}.output.LayerNorm",
    )


def bert_mlm_map(head: str = "cls.predictions") -> dict[str, WeightSource]:
    """The BERT MLM transform, decoder bias and decoder weight.

    ``mlm.decoder.*`` are the head's own decoder when it is untied; a tied head (the
    default) reads the word embeddings, and the checkpoint's decoder tensors, when
    present, must equal the embeddings and ``mlm.bias`` (see
    :meth:`b4t.models.Transformer.tied_parameters`).
    """
    return {
        "mlm.dense.weight": f"{head}.transform.dense.weight",
        "mlm.dense.bias": f"{head}.transform.dense.bias",
        "mlm.layer_norm.weight": f"{head}.transform.LayerNorm.weight",
        "mlm.layer_norm.bias": f"{head}.transform.LayerNorm.bias",
        "mlm.bias": f"{head}.bias",
        "mlm.decoder.weight": f"{head}.decoder.weight",
        "mlm.decoder.bias": f"{head}.decoder.bias",
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


# checkpoint keys that may stay unused: buffers and task heads b4t does not build (keys
# of heads b4t has, pool / NSP / MLM, are in the weight maps: never optional)
BERT_OPTIONAL = (
    r"position_ids$",
    r"^classifier\.",
    r"^qa_outputs\.",
)

BERT = register_variant(
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
        "mlm.decoder.weight": "lm_head.decoder.weight",
        "mlm.decoder.bias": "lm_head.decoder.bias",
    }
)
ROBERTA_FACEBOOK = Variant(
    name="roberta",
    prefix="roberta",
    weight_map=_roberta_map,
    preset={"roberta_positions": True, "pad_token_id": 1},
    optional_keys=BERT_OPTIONAL,
    description="RoBERTa, Facebook layout (roberta.*, lm_head.*; positions from pad + 1)",
)
ROBERTA_BERT_LAYOUT = Variant(
    name="roberta",
    prefix="bert",
    weight_map=bert_weight_map("bert"),
    optional_keys=BERT_OPTIONAL,
    description="RoBERTa in the BERT layout (bert.*, cls.*: Chinese RoBERTa-wwm, as 0.2.5)",
)

_FACEBOOK_MARKS = ("roberta.", "lm_head.")
_BERT_MARKS = ("bert.", "cls.")


def resolve_roberta(state: dict[str, Any] | None, raw: dict[str, Any]) -> Variant:
    """Pick the RoBERTa layout from the checkpoint's keys.

    ``roberta.*`` / ``lm_head.*`` keys: Facebook's layout; ``bert.*`` / ``cls.*``: the
    BERT layout (Chinese RoBERTa-wwm, what bert4torch 0.2.5 loads). A checkpoint with
    neither (headless keys) is told apart by the config's ``model_type``; without a
    checkpoint, ``model_type: "roberta"`` builds Facebook's graph, anything else the
    BERT one (0.2.5's). Keys of both kinds, or no way to tell: :class:`ConfigError`.
    """
    model_type = str(raw.get("model_type", "")).lower()
    if state is None:
        return ROBERTA_FACEBOOK if model_type == "roberta" else ROBERTA_BERT_LAYOUT
    facebook = [k for k in state if k.startswith(_FACEBOOK_MARKS)]
    bert = [k for k in state if k.startswith(_BERT_MARKS)]
    if facebook and bert:
        raise ConfigError(
            "model='roberta': the checkpoint holds both Facebook-layout keys "
            f"({facebook[0]}) and BERT-layout keys ({bert[0]}); it cannot be both"
        )
    if facebook:
        return ROBERTA_FACEBOOK
    if bert:
        return ROBERTA_BERT_LAYOUT
    if model_type == "roberta":
        return ROBERTA_FACEBOOK
    if model_type == "bert":
        return ROBERTA_BERT_LAYOUT
    raise ConfigError(
        "model='roberta': the checkpoint's keys carry no 'roberta.'/'lm_head.' (Facebook "
        "layout) or 'bert.'/'cls.' (BERT layout) prefix and the config's model_type is "
        f"{model_type or 'missing'!r}; set model_type to 'roberta' or 'bert' in config.json"
    )


register_variant(dataclasses.replace(ROBERTA_BERT_LAYOUT, resolve=resolve_roberta))
