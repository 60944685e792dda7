"""bert4torch 0.2.5's own parameter names for a built b4t model.

``model.save_weights('best_model.pt')`` in bert4torch 0.2.5 writes ``model.state_dict()``
in 0.2.5's module names (``encoderLayer.0.multiHeadAttention.q.weight``,
``embeddings.layerNorm.weight``, ``mlmDecoder.weight``, ...), and its ``load_weights``
reads them back. b4t's modules are named otherwise (``layers.0.attention.qkv.weight``:
one fused projection). :func:`seed_weight_names` gives, for every key of a b4t model's
state dict, the 0.2.5 key(s) that hold the same tensor, so a file either library writes
loads in the other.

For most variants the table is the composition of two maps to the checkpoint layout both
libraries read: b4t's ``variable_mapping()`` (b4t name -> checkpoint key) and 0.2.5's
``variable_mapping`` (0.2.5 name -> checkpoint key), inverted: BERT's for ``bert``,
``roberta``, ``ernie``, ``encoder``, ``nezha``, ``roformer``, ``roformer_v2``,
``electra``, ``uie``; ALBERT's (one shared ``encoderLayer.0``); the generic
``Decoder``'s (``decoderLayer``); the identity for ``gau_alpha``, ``transformer_xl`` and
the generic ``transformer``, whose checkpoints are in 0.2.5's own names. Where b4t's map
reaches transformers' layout and 0.2.5's another, the table is read off b4t's module
names instead: the decoder LMs (``gpt``, ``gpt2``, ``gpt2_ml``:
:func:`_decoder_lm_seed_names`), BART in 0.2.5's converted layout
(:func:`_bart_seed_names`) and the T5s (:func:`_t5_seed_names`).

A target is a key, a :class:`~b4t.models.weight_map.Concat` (the fused QKV split into
0.2.5's ``q``, ``k``, ``v``), a :class:`Copies` (one tensor 0.2.5 keeps under two names:
the MLM bias is ``mlmBias`` and ``mlmDecoder.bias``, a tied LM head is the word table
and ``dense.weight``) or a :class:`Fixed` (a frozen b4t parameter 0.2.5 has no module
for: not written, kept on load). Variants are covered where the table was checked
against 0.2.5 itself, both ways (``tests/seed/test_seed_weights.py``). For the others
(``albert_unshared``, ``deberta_v2``, ``xlnet``, ``llama``, the T5 halves, ALBERT and
RoFormer-v2 with an MLM head, Transformer-XL with segments and without ``untie_r``, BART
in transformers' layout) :func:`seed_weight_names` returns ``None`` and the trainer writes b4t's own
names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from b4t.models.weight_map import Concat, FirstOf

__all__ = [
    "DECODER_LM_VARIANTS",
    "SEED_NAMED_VARIANTS",
    "T5_VARIANTS",
    "Copies",
    "Fixed",
    "seed_constant_tables",
    "seed_weight_names",
]

# variants whose b4t weight map composes with 0.2.5's variable_mapping (0.2.5's BERT
# module names, ALBERT's; GAU-alpha's, Transformer-XL's, the generic Transformer's own):
# checked against 0.2.5 in tests/seed/test_seed_weights.py. The decoder LMs, BART and the
# T5s have tables of their own.
SEED_NAMED_VARIANTS = frozenset(
    {
        "bert",
        "roberta",
        "ernie",
        "encoder",
        "nezha",
        "roformer",
        "electra",
        "albert",
        "uie",
        "roformer_v2",
        "gau_alpha",
        "decoder",
        "transformer_xl",
        "transformer",
    }
)

_W = r"(weight|bias)"
# (checkpoint key after the model prefix, 0.2.5 module name): BERT.variable_mapping
_BERT_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"\Z"), target)
    for pattern, target in (
        (r"embeddings\.(word_embeddings|position_embeddings)\.weight", r"embeddings.\1.weight"),
        (r"embeddings\.token_type_embeddings\.weight", "embeddings.segment_embeddings.weight"),
        (rf"embeddings\.LayerNorm\.{_W}", r"embeddings.layerNorm.\1"),
        (
            rf"encoder\.layer\.(\d+)\.attention\.self\.query\.{_W}",
            r"encoderLayer.\1.multiHeadAttention.q.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.attention\.self\.key\.{_W}",
            r"encoderLayer.\1.multiHeadAttention.k.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.attention\.self\.value\.{_W}",
            r"encoderLayer.\1.multiHeadAttention.v.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.attention\.output\.dense\.{_W}",
            r"encoderLayer.\1.multiHeadAttention.o.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.{_W}",
            r"encoderLayer.\1.layerNorm1.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.intermediate\.dense\.{_W}",
            r"encoderLayer.\1.feedForward.intermediateDense.\2",
        ),
        (
            rf"encoder\.layer\.(\d+)\.output\.dense\.{_W}",
            r"encoderLayer.\1.feedForward.outputDense.\2",
        ),
        (rf"encoder\.layer\.(\d+)\.output\.LayerNorm\.{_W}", r"encoderLayer.\1.layerNorm2.\2"),
        (rf"pooler\.dense\.{_W}", r"pooler.\1"),
    )
)
_HEAD_RULES = {
    "cls.seq_relationship.weight": "nsp.weight",
    "cls.seq_relationship.bias": "nsp.bias",
    "cls.predictions.transform.dense.weight": "mlmDense.weight",
    "cls.predictions.transform.dense.bias": "mlmDense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlmLayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlmLayerNorm.bias",
    "cls.predictions.bias": "mlmBias",
    "cls.predictions.decoder.weight": "mlmDecoder.weight",
    "cls.predictions.decoder.bias": "mlmDecoder.bias",
    # ELECTRA's discriminator head (0.2.5's ELECTRA.variable_mapping)
    "discriminator_predictions.dense.weight": "dense.weight",
    "discriminator_predictions.dense.bias": "dense.bias",
    "discriminator_predictions.dense_prediction.weight": "dense_prediction.weight",
    "discriminator_predictions.dense_prediction.bias": "dense_prediction.bias",
}


_ALBERT_LAYER = r"encoder\.albert_layer_groups\.0\.albert_layers\.0\."
# ALBERT.variable_mapping (after the ``albert.`` prefix): one shared layer, 0.2.5's
# ``encoderLayer.0``; the embeddings are BERT's plus the projection to hidden_size
_ALBERT_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"\Z"), target)
    for pattern, target in (
        (
            rf"encoder\.embedding_hidden_mapping_in\.{_W}",
            r"embeddings.embedding_hidden_mapping_in.\1",
        ),
        (_ALBERT_LAYER + rf"attention\.query\.{_W}", r"encoderLayer.0.multiHeadAttention.q.\1"),
        (_ALBERT_LAYER + rf"attention\.key\.{_W}", r"encoderLayer.0.multiHeadAttention.k.\1"),
        (_ALBERT_LAYER + rf"attention\.value\.{_W}", r"encoderLayer.0.multiHeadAttention.v.\1"),
        (_ALBERT_LAYER + rf"attention\.dense\.{_W}", r"encoderLayer.0.multiHeadAttention.o.\1"),
        (_ALBERT_LAYER + rf"attention\.LayerNorm\.{_W}", r"encoderLayer.0.layerNorm1.\1"),
        (_ALBERT_LAYER + rf"ffn\.{_W}", r"encoderLayer.0.feedForward.intermediateDense.\1"),
        (_ALBERT_LAYER + rf"ffn_output\.{_W}", r"encoderLayer.0.feedForward.outputDense.\1"),
        (_ALBERT_LAYER + rf"full_layer_layer_norm\.{_W}", r"encoderLayer.0.layerNorm2.\1"),
        (rf"pooler\.{_W}", r"pooler.\1"),
    )
)
# ALBERT's sentence-order head is 0.2.5's ``nsp``. Its MLM head is left out on purpose:
# 0.2.5's ``mlmDense`` is hidden x hidden, b4t's (and the checkpoint's) hidden x
# embedding_size (MIGRATION.md), so no file of one loads in the other.
_ALBERT_HEADS = {
    "sop_classifier.classifier.weight": "nsp.weight",
    "sop_classifier.classifier.bias": "nsp.bias",
}
# UIE.variable_mapping: BERT's plus the span heads under their own names
_UIE_HEADS = {
    f"{head}.{w}": f"{head}.{w}"
    for head in ("linear_start", "linear_end")
    for w in ("weight", "bias")
}
# variants whose checkpoint keys are 0.2.5's module names (0.2.5's convert scripts wrote
# them so; its variable_mapping is the identity)
_OWN_NAMES = frozenset({"gau_alpha", "transformer_xl", "transformer"})
# Decoder.variable_mapping: BERT's with ``decoderLayer`` for ``encoderLayer``; the cross
# attention and the LM head have no checkpoint name there, so b4t's map keeps 0.2.5's own
_DECODER_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    *((p, t.replace("encoderLayer", "decoderLayer")) for p, t in _BERT_RULES),
    (re.compile(r"(decoderLayer\.\d+\.(crossAttention\.[qkvo]|layerNorm3)\.\w+)\Z"), r"\1"),
    (re.compile(r"(final_dense\.weight)\Z"), r"\1"),
)
# variant -> (rules tried first, head keys): variants not named here use BERT's alone
_VARIANT_RULES: dict[str, tuple[tuple[tuple[re.Pattern[str], str], ...], dict[str, str]]] = {
    "albert": (_ALBERT_RULES, _ALBERT_HEADS),
    "uie": ((), {**_HEAD_RULES, **_UIE_HEADS}),
    "decoder": (_DECODER_RULES, {}),
}


@dataclass(frozen=True)
class Copies:
    """One tensor stored under each of ``keys`` (0.2.5 shares it between two modules)."""

    keys: tuple[str, ...]

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor] * len(self.keys)

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return tensors[0]


@dataclass(frozen=True, eq=False)
class Fixed:
    """A frozen b4t parameter 0.2.5 does not hold (RoFormer-v2's RMS-norm gains, fixed at
    one): not written on save; on load the model keeps its own ``value``."""

    value: torch.Tensor
    keys: tuple[str, ...] = ()

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return []

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return self.value.detach().clone()


def _seed_key(checkpoint_key: str, variant: str = "bert") -> str | None:
    """0.2.5's module name for a checkpoint key (any model prefix) of ``variant``'s layout
    (BERT's unless :data:`_VARIANT_RULES` names it), or None."""
    rules, heads = _VARIANT_RULES.get(variant, ((), _HEAD_RULES))
    head = heads.get(checkpoint_key)
    if head is not None:
        return head
    _, _, rest = checkpoint_key.partition(".")  # drop the model prefix: bert., roberta., ...
    for key in (rest, checkpoint_key):
        for pattern, target in rules + _BERT_RULES:
            if pattern.match(key):
                return pattern.sub(target, key)
    return None


T5_VARIANTS = frozenset({"t5", "t5.1.0", "t5.1.1", "mt5.1.1"})
_T5_LAYER_RULES: tuple[tuple[str, str], ...] = (  # b4t layer key -> 0.2.5 layer key
    ("attention.o.weight", "multiHeadAttention.o.weight"),
    ("norm1.weight", "layerNorm1.weight"),
    ("norm2.weight", "layerNorm2.weight"),
    ("norm_cross.weight", "layerNorm3.weight"),
    ("cross.q.weight", "crossAttention.q.weight"),
    ("cross.o.weight", "crossAttention.o.weight"),
    ("ffn.intermediate.weight", "feedForward.intermediateDense.weight"),
    ("ffn.gate.weight", "feedForward.intermediateDense1.weight"),
    ("ffn.output.weight", "feedForward.outputDense.weight"),
)


def _t5_seed_names(model: nn.Module) -> dict[str, Any] | None:
    """0.2.5's ``T5`` names (``encoder.encoderLayer.{i}...``, ``decoder.decoderLayer.{i}...``):
    its relative-position table is one tensor shared by every layer (written under each
    layer's name), and a tied T5.1.0 head is the decoder's embedding (``final_dense``)."""
    state = model.state_dict()
    n_layers = {
        part: len({k.split(".")[2] for k in state if k.startswith(f"{part}.layers.")})
        for part in ("encoder", "decoder")
    }
    out: dict[str, Any] = {}
    for key in state:
        part, _, rest = key.partition(".")
        stack = f"{part}.{part}Layer"
        if rest == "word_embeddings.weight":
            names = [f"{part}.embeddings.word_embeddings.weight"]
            if part == "decoder" and "decoder.lm_head.weight" not in state:
                names.append("decoder.final_dense.weight")  # the tied head
            out[key] = names[0] if len(names) == 1 else Copies(tuple(names))
        elif rest == "final_norm.weight":
            out[key] = f"{part}.final_layer_norm.weight"
        elif key == "decoder.lm_head.weight":
            out[key] = "decoder.final_dense.weight"
        elif rest == "relative_bias.relative_attention_bias.weight":
            lead = ".multiHeadAttention.relative_positions_encoding.weight"
            out[key] = Copies(tuple(f"{stack}.{i}{lead}" for i in range(n_layers[part])))
        elif rest.startswith("layers."):
            _, index, layer_key = rest.split(".", 2)
            lead = f"{stack}.{index}."
            if layer_key == "attention.qkv.weight":
                att = lead + "multiHeadAttention."
                out[key] = Concat((f"{att}q.weight", f"{att}k.weight", f"{att}v.weight"))
            elif layer_key == "cross.kv.weight":
                out[key] = Concat(
                    (f"{lead}crossAttention.k.weight", f"{lead}crossAttention.v.weight")
                )
            else:
                target = dict(_T5_LAYER_RULES).get(layer_key)
                if target is None:
                    return None
                out[key] = lead + target
        else:
            return None
    return out


_BART_LAYER_RULES = {  # b4t layer module -> 0.2.5 layer module (0.2.5's BART names)
    "attention.o": "multiHeadAttention.o",
    "norm1": "layerNorm1",
    "norm2": "layerNorm2",
    "norm_cross": "layerNorm3",
    "cross.q": "crossAttention.q",
    "cross.o": "crossAttention.o",
    "ffn.intermediate": "feedForward.intermediateDense",
    "ffn.output": "feedForward.outputDense",
}
_BART_EMBEDDINGS = {
    "word_embeddings": "embeddings.word_embeddings",
    "position_embeddings": "embeddings.position_embeddings",
    "embedding_norm": "embeddings.layerNorm",
}


def _bart_seed_names(model: nn.Module) -> dict[str, Any] | None:
    """0.2.5's ``BART`` names (``encoder.encoderLayer.{i}...``, ``decoder.decoderLayer.{i}
    ...``) for b4t's BART in 0.2.5's converted layout (``SeedBART``: position table of
    ``max_position`` rows, read without offset). The tied LM head is 0.2.5's
    ``decoder.final_dense.weight``; b4t's fixed zero ``final_logits_bias`` is not written.
    ``None`` for transformers' layout (its offset table and logits bias have no 0.2.5
    counterpart)."""
    if type(model).__name__ != "SeedBART":
        return None
    state = model.state_dict()
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    out: dict[str, Any] = {}
    for key in state:
        part, _, rest = key.partition(".")
        module, _, param = rest.rpartition(".")
        if part not in ("encoder", "decoder"):
            return None
        if module in _BART_EMBEDDINGS:
            names = [f"{part}.{_BART_EMBEDDINGS[module]}.{param}"]
            tied = "decoder.lm_head.weight" not in state
            if key == "decoder.word_embeddings.weight" and tied:
                names.append("decoder.final_dense.weight")  # the tied head
            out[key] = names[0] if len(names) == 1 else Copies(tuple(names))
        elif rest == "lm_head.weight" and part == "decoder":
            out[key] = "decoder.final_dense.weight"
        elif rest == "final_logits_bias" and key in frozen:
            out[key] = Fixed(frozen[key])
        elif module.startswith("layers."):
            _, index, layer_module = module.split(".", 2)
            lead = f"{part}.{part}Layer.{index}."
            if layer_module == "attention.qkv":
                att = lead + "multiHeadAttention."
                out[key] = Concat(tuple(f"{att}{p}.{param}" for p in "qkv"))
            elif layer_module == "cross.kv":
                att = lead + "crossAttention."
                out[key] = Concat((f"{att}k.{param}", f"{att}v.{param}"))
            elif layer_module in _BART_LAYER_RULES:
                out[key] = f"{lead}{_BART_LAYER_RULES[layer_module]}.{param}"
            else:
                return None
        else:
            return None
    return out


DECODER_LM_VARIANTS = frozenset({"gpt", "gpt2", "gpt2_ml"})
_DECODER_LM_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"\Z"), target)  # b4t key -> 0.2.5 key (0.2.5's BERT modules)
    for pattern, target in (
        (r"embeddings\.(position_embeddings|segment_embeddings)\.weight", r"embeddings.\1.weight"),
        (rf"embeddings\.layer_norm\.{_W}", r"embeddings.layerNorm.\1"),
        (rf"layers\.(\d+)\.attention\.o\.{_W}", r"encoderLayer.\1.multiHeadAttention.o.\2"),
        (rf"layers\.(\d+)\.norm([12])\.{_W}", r"encoderLayer.\1.layerNorm\2.\3"),
        (
            rf"layers\.(\d+)\.ffn\.intermediate\.{_W}",
            r"encoderLayer.\1.feedForward.intermediateDense.\2",
        ),
        (rf"layers\.(\d+)\.ffn\.output\.{_W}", r"encoderLayer.\1.feedForward.outputDense.\2"),
        (rf"norm\.{_W}", r"LayerNormFinal.\1"),  # GPT-2's final norm
    )
)


def _decoder_lm_seed_names(model: nn.Module) -> dict[str, Any] | None:
    """0.2.5's ``GPT`` / ``GPT2`` / ``GPT2_ML`` names, read off b4t's module names directly
    (b4t's GPT and GPT-2 weight maps reach the transformers layout, 0.2.5's a BERT-like
    one, so the two maps do not compose): BERT's modules, the fused QKV split into ``q``,
    ``k``, ``v``, and the word table also under ``dense.weight`` (0.2.5's tied LM head)."""
    out: dict[str, Any] = {}
    for key in model.state_dict():
        qkv = re.fullmatch(rf"layers\.(\d+)\.attention\.qkv\.{_W}", key)
        if key == "embeddings.word_embeddings.weight":
            out[key] = Copies((key, "dense.weight"))
        elif qkv is not None:
            att = f"encoderLayer.{qkv[1]}.multiHeadAttention"
            out[key] = Concat(tuple(f"{att}.{p}.{qkv[2]}" for p in "qkv"))
        else:
            target = next((p.sub(t, key) for p, t in _DECODER_LM_RULES if p.match(key)), None)
            if target is None:
                return None
            out[key] = target
    return out


def seed_weight_names(model: nn.Module) -> dict[str, Any] | None:
    """``{b4t state-dict key: 0.2.5 key | Concat | Copies}`` for ``model``, or ``None``.

    ``None`` when the model's variant is not one whose 0.2.5 names are known
    (:data:`SEED_NAMED_VARIANTS`, :data:`T5_VARIANTS`), or when some key of its state dict
    has no 0.2.5 name.
    """
    variant = getattr(model, "variant", None)
    name = getattr(variant, "name", None)
    if name in T5_VARIANTS and type(model).__name__ == "T5":
        return _t5_seed_names(model)
    if name in DECODER_LM_VARIANTS:
        return _decoder_lm_seed_names(model)
    if name == "bart":
        return _bart_seed_names(model)
    if variant is None or name not in SEED_NAMED_VARIANTS:
        return None
    if not hasattr(model, "variable_mapping"):
        return None
    if name == "roformer_v2" and getattr(model, "mlm", None) is not None:
        return None  # b4t ties the decoder to the embeddings, 0.2.5 keeps its own mlmDecoder
    segments = any(key.endswith("seg_embed") for key in model.state_dict())
    if name == "transformer_xl" and segments and not _untied(model):
        return None  # 0.2.5's model-level r_s_bias too: not checked against 0.2.5
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    mapping = model.variable_mapping()
    seed_key = (lambda k: k) if name in _OWN_NAMES else partial(_seed_key, variant=name)
    direct = {key: seed_key(source) for key, source in mapping.items() if isinstance(source, str)}
    claimed = {key for key in direct.values() if key is not None}
    out: dict[str, Any] = {}
    for key in model.state_dict():
        source = mapping.get(key)
        if isinstance(source, str):
            target: Any = direct[key]
        elif isinstance(source, Concat):
            keys = tuple(seed_key(k) for k in source.keys)
            target = None if None in keys else Concat(keys, source.dim)  # type: ignore[arg-type]
        elif isinstance(source, FirstOf):
            keys = tuple(
                dict.fromkeys(
                    k for k in map(seed_key, source.keys) if k is not None and k not in claimed
                )
            )
            target = None if not keys else keys[0] if len(keys) == 1 else Copies(keys)
        elif source is None and key in frozen:
            target = Fixed(frozen[key])
        else:
            target = None
        if target is None:
            return None
        out[key] = target
    return out


def seed_constant_tables(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fixed position tables 0.2.5 keeps in its state dict and b4t computes instead:
    NEZHA's relative-position table (``position_embeddings``, ``(P, P, head size)`` per
    layer) and the rotary ``cos_position`` / ``sin_position`` of RoFormer (v1, v2; ``(P,
    head size)``) and GAU-alpha (``(P, key size)``), Transformer-XL's ``inv_freq``,
    under 0.2.5's names; ``{}`` for other variants. Written beside the weights so the file
    loads strictly in 0.2.5; dropped on load (b4t recomputes them)."""
    from b4t.layers import RelativePositionsEncoding, get_sinusoid_encoding_table

    name = getattr(getattr(model, "variant", None), "name", None)
    config = getattr(model, "config", None)
    if name in T5_VARIANTS and type(model).__name__ == "T5" and config is not None:
        return _t5_bucket_tables(model)
    if name == "transformer_xl":  # 0.2.5's sinusoid frequencies, a buffer
        size = model.pos_embeddings.embedding_size  # type: ignore[union-attr]
        steps = torch.arange(0.0, size, 2.0)
        out = {"pos_embeddings.inv_freq": 1 / (10000 ** (steps / size))}
        if not _untied(model):
            # without untie_r 0.2.5 also holds model-level r_w_bias / r_r_bias that no layer
            # reads (each layer holds its own copy): zeros, (heads, head size)
            shape = model.layers[0].multiHeadAttention.r_w_bias.shape  # type: ignore[index]
            out.update(r_w_bias=torch.zeros(shape), r_r_bias=torch.zeros(shape))
        return out
    if name not in ("nezha", "roformer", "roformer_v2", "gau_alpha") or config is None:
        return {}
    positions = config.max_position_embeddings
    head = config.hidden_size // config.num_attention_heads
    lead = "encoderLayer.{i}.multiHeadAttention.relative_positions_encoding."
    if name == "gau_alpha":  # rotary over the key size (the width of its offset-scale)
        head = model.layers[0].gau.offsetscale.gamma.shape[-1]  # type: ignore[index]
        lead = "encoderLayer.{i}.gau.relative_positions_encoding."
    if name == "nezha":
        max_rel = config.extra.get("max_relative_position", 64)
        table = RelativePositionsEncoding(positions, positions, head, max_rel).position_embeddings
        tables = {"position_embeddings": table}
    else:
        sinusoid = get_sinusoid_encoding_table(positions, head)
        tables = {
            "cos_position": sinusoid[:, 1::2].repeat_interleave(2, dim=-1),
            "sin_position": sinusoid[:, ::2].repeat_interleave(2, dim=-1),
        }
    return {
        lead.format(i=i) + key: table
        for i in range(config.num_hidden_layers)
        for key, table in tables.items()
    }


def _untied(model: nn.Module) -> bool:
    """Transformer-XL built with ``untie_r`` (as transformers' configs say)."""
    return bool(getattr(model, "_opts", {}).get("untie_r"))


def _t5_bucket_tables(model: nn.Module) -> dict[str, torch.Tensor]:
    """0.2.5's per-layer T5 bucket buffers (``relative_positions.relative_position``,
    ``(P, P)`` with ``P = max_position``): bidirectional in the encoder, causal in the
    decoder."""
    from b4t.layers import RelativePositionsEncodingT5

    config = model.config  # type: ignore[attr-defined]
    positions = config.max_position_embeddings
    buckets = model.encoder.relative_bias.relative_attention_bias.num_embeddings  # type: ignore[union-attr]
    out: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        table = RelativePositionsEncodingT5(positions, positions, buckets, part == "decoder")
        for i in range(len(getattr(model, part).layers)):
            key = f"{part}.{part}Layer.{i}.multiHeadAttention.relative_positions.relative_position"
            out[key] = table.relative_position
    return out
