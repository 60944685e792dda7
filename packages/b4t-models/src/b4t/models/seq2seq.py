"""The encoder-decoder families as data: T5 (T5.1.0 / T5.1.1 / mT5), BART and bert4torch
0.2.5's generic ``Transformer``, and the class names users import.

Each family is a :class:`~b4t.models.encoder_decoder.StackSpec` (its layers, positions
and LM head) and a :class:`~b4t.models.encoder_decoder.Seq2SeqSpec` (its settings, word
tables and build options), read by the one composed
:class:`~b4t.models.encoder_decoder.EncoderDecoder`. :class:`T5`, :class:`BART` and
:class:`SeedTransformer` are that class named per family (none derives from another);
:class:`T5Stack`, :class:`BartStack` and :class:`GenericStack` the one
:class:`~b4t.models.encoder_decoder.Seq2SeqStack` named per family; :class:`T5Part` and
:class:`SeedDecoder` a single stack as a model. The calls are described in
:mod:`b4t.models.encoder_decoder`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from b4t.layers import TransformerBlock
from b4t.layers.t5 import DecoderBlock, T5Block
from b4t.models.config import ModelConfig
from b4t.models.encoder_decoder import (
    CheckpointMixin,
    EncoderDecoder,
    Seq2SeqSpec,
    Seq2SeqStack,
    StackSpec,
    check_build,
)

__all__ = [
    "BART",
    "BART_STACK",
    "GENERIC_STACK",
    "T5",
    "T5_STACK",
    "BartStack",
    "GenericStack",
    "SeedDecoder",
    "SeedTransformer",
    "T5Part",
    "T5Stack",
    "bart_settings",
    "generic_settings",
    "t5_settings",
]

_ACT = {"relu": "relu", "gelu": "gelu_new", "gelu_new": "gelu_new", "silu": "silu"}


# ---- settings: each family's config.json keys -----------------------------------------
def t5_settings(config: ModelConfig, version: str = "t5.1.0") -> dict[str, Any]:
    """The T5 keys of ``config.json``; ``version`` (a ``model=`` name) gives the defaults
    for absent keys (T5.1.1 / mT5: gated GELU, untied head)."""
    raw = config.raw
    v11 = version.endswith("t5.1.1")
    proj = str(raw.get("feed_forward_proj", "gated-gelu" if v11 else "relu"))
    gated = proj.startswith("gated-")
    act = proj.split("-", 1)[1] if gated else proj
    if act not in _ACT:
        raise ValueError(f"feed_forward_proj {proj!r} in {config.source} is not supported")
    act = _ACT[act]
    if "feed_forward_proj" not in raw and "hidden_act" in raw:
        act = str(raw["hidden_act"])  # a bert4torch-style config names the activation
    # the config's key; else the name's default, untied where the checkpoint's lm_head
    # differs from the word table (the variant's preset says so: b4t.models.variants.t5)
    tie = bool(raw.get("tie_word_embeddings", not v11 and config.tie_word_embeddings))
    mt5 = raw.get("model_type") == "mt5" or version.startswith("mt5")
    scale = raw.get("scale_decoder_outputs")
    return {
        "gated": gated,
        "act": act,
        "head_size": int(raw.get("d_kv") or config.hidden_size // config.num_attention_heads),
        "buckets": int(raw.get("relative_attention_num_buckets", 32)),
        "max_distance": int(raw.get("relative_attention_max_distance", 128)),
        "decoder_layers": int(raw.get("num_decoder_layers") or config.num_hidden_layers),
        "tie": tie,
        # transformers 5 writes tie_word_embeddings=true for every T5 and keeps the
        # T5.1.0 rule (scale the decoder output by H ** -0.5) in scale_decoder_outputs
        # (mT5 never scales)
        "scale": bool(scale if scale is not None else tie and not mt5),
    }


def bart_settings(config: ModelConfig) -> dict[str, Any]:
    """BART's own ``config.json`` keys."""
    raw = config.raw
    return {
        "scale_embedding": bool(raw.get("scale_embedding", False)),
        "decoder_layers": int(raw.get("decoder_layers") or config.num_hidden_layers),
        "decoder_ffn": int(raw.get("decoder_ffn_dim") or config.intermediate_size),
        "activation_dropout": float(raw.get("activation_dropout") or 0.0),
    }


def generic_settings(config: ModelConfig, segment_vocab_size: int | None) -> dict[str, Any]:
    """Sizes of the seed's generic encoder/decoder (one depth, one FFN width)."""
    return {
        "scale_embedding": False,
        "decoder_layers": config.num_hidden_layers,
        "decoder_ffn": config.intermediate_size,
        "activation_dropout": 0.0,
        "segment_vocab_size": (
            config.type_vocab_size if segment_vocab_size is None else segment_vocab_size
        ),
        "logit_scale": True,
    }


def _t5_model_settings(config: ModelConfig, name: str, options: dict[str, Any]) -> dict:
    return t5_settings(config, name)


def _bart_model_settings(config: ModelConfig, name: str, options: dict[str, Any]) -> dict:
    """BART's settings; ``dropout`` in ``config.json`` is its residual dropout."""
    if config.raw.get("dropout") is not None:
        config.hidden_dropout_prob = float(config.raw["dropout"])
    return bart_settings(config)


def _generic_model_settings(config: ModelConfig, name: str, options: dict[str, Any]) -> dict:
    settings = generic_settings(config, options["segment_vocab_size"])
    settings["logit_scale"] = options["logit_scale"]
    return settings


# ---- layers ----------------------------------------------------------------------------
def t5_block(config: ModelConfig, settings: dict[str, Any], is_decoder: bool) -> nn.Module:
    """A T5 layer (RMS pre-norm, relative bias given by the stack)."""
    c, s = config, settings
    return T5Block(
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
        hidden_act=s["act"],
        is_gated=s["gated"],
        attention_head_size=s["head_size"],
        layer_norm_eps=c.layer_norm_eps,
        dropout_rate=c.hidden_dropout_prob,
        is_decoder=is_decoder,
    )


def post_norm_block(config: ModelConfig, settings: dict[str, Any], is_decoder: bool) -> nn.Module:
    """BART's and the seed's generic layer: the post-norm BERT block in the encoder, the
    post-norm :class:`~b4t.layers.DecoderBlock` (with cross-attention) in the decoder."""
    c, s = config, settings
    common = {
        "hidden_size": c.hidden_size,
        "num_attention_heads": c.num_attention_heads,
        "hidden_act": c.hidden_act,
        "layer_norm_eps": c.layer_norm_eps,
        "dropout_rate": c.hidden_dropout_prob,
        "attention_dropout": c.attention_probs_dropout_prob,
    }
    if is_decoder:
        return DecoderBlock(
            intermediate_size=s["decoder_ffn"],
            activation_dropout=s["activation_dropout"],
            **common,
        )
    return TransformerBlock(intermediate_size=c.intermediate_size, **common)


# ---- word tables -----------------------------------------------------------------------
def shared_word_table(config: ModelConfig, tie: bool) -> tuple[nn.Embedding, nn.Embedding]:
    """One table for both stacks (T5, BART: ``tie_emb_src_tgt_weight`` is always true)."""
    shared = nn.Embedding(config.vocab_size, config.hidden_size)
    return shared, shared


def seed_word_tables(config: ModelConfig, tie: bool) -> tuple[nn.Embedding, nn.Embedding]:
    """The seed's generic model: a source table of ``src_vocab_size`` rows (default
    ``vocab_size``) and a target table of ``vocab_size``, one table where ``tie``."""
    rows = int(config.raw.get("src_vocab_size") or config.vocab_size)
    source = nn.Embedding(rows, config.hidden_size)
    target = source if tie else nn.Embedding(config.vocab_size, config.hidden_size)
    return source, target


# ---- the stacks ------------------------------------------------------------------------
T5_STACK = StackSpec(block=t5_block, positions="t5_relative", head="t5")
"""T5's stacks: relative position buckets, RMS pre-norm layers, a final RMS norm."""
BART_STACK = StackSpec(
    block=post_norm_block, positions="learned", head="tied_bias", position_offset=2
)
"""BART's stacks: learned positions from row 2, post-norm layers, ``final_logits_bias``."""
GENERIC_STACK = StackSpec(
    block=post_norm_block,
    positions="learned",
    head="dense",
    position_rows_key="max_position",
    segment_row=True,
    mask_decoder_padding=True,
)
"""The seed's generic stacks: BERT embeddings, post-norm layers, an untied ``final_dense``."""


class T5Stack(Seq2SeqStack):
    """The T5 encoder (``is_decoder=False``) or decoder with its LM head.

    ``word_embeddings`` is the shared table (the same module in both stacks).
    """

    spec = T5_STACK


class BartStack(Seq2SeqStack):
    """The BART encoder or decoder: scaled word + learned positions (offset 2),
    ``embedding_norm``, post-norm layers; the decoder's LM head is the shared word
    table plus ``final_logits_bias``. Same calls as :class:`T5Stack`.
    """

    spec = BART_STACK


class GenericStack(Seq2SeqStack):
    """bert4torch 0.2.5's generic ``Encoder`` / ``Decoder`` stack: BERT embeddings (word +
    learned position + segment row 0, LayerNorm), post-norm BERT layers (the decoder's
    with cross-attention), and for the decoder an untied ``final_dense`` whose logits are
    scaled by ``H ** -0.5`` (the seed's ``logit_scale``). Decoder padding keys are masked.
    """

    spec = GENERIC_STACK


# ---- the models ------------------------------------------------------------------------
class T5(EncoderDecoder):
    """T5 / T5.1.1 / mT5 encoder-decoder (transformers' ``T5ForConditionalGeneration``
    layout). Build options: ``tie_emb_src_tgt_weight`` is accepted (T5 always shares the
    word table); heads (``with_pool`` / ``with_mlm`` / ``with_nsp``) are refused.
    Training updates the one table (and a tied head) with the sum of its gradients, as
    transformers does; 0.2.5 trains three copies of it apart (MIGRATION.md).
    """

    spec = Seq2SeqSpec(
        stack=T5Stack,
        settings=_t5_model_settings,
        word_tables=shared_word_table,
        model_types=("t5", "mt5"),
    )


class BART(EncoderDecoder):
    """BART encoder-decoder (transformers' ``BartForConditionalGeneration`` layout), with
    T5's calls: ``[encoder_ids, decoder_ids]`` -> ``[enc_hidden, dec_hidden, logits]``,
    ``model.encoder`` / ``model.decoder`` with ``predict``, ``encode`` / ``decode``.
    """

    spec = Seq2SeqSpec(
        stack=BartStack,
        settings=_bart_model_settings,
        word_tables=shared_word_table,
        model_types=("bart",),
    )


class SeedTransformer(EncoderDecoder):
    """``model='transformer'``: bert4torch 0.2.5's generic encoder-decoder (``Transformer``),
    loading the layout 0.2.5 loads for it (its own parameter names). Calls as :class:`T5`.
    Decoder options: ``logit_scale`` (default True), ``tie_emb_src_tgt_weight`` (one word
    table for both stacks, default False).
    """

    spec = Seq2SeqSpec(
        stack=GenericStack,
        settings=_generic_model_settings,
        word_tables=seed_word_tables,
        options={"logit_scale": True, "segment_vocab_size": None},
        tie_default=False,
    )

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        tie_emb_src_tgt_weight: bool = False,
        logit_scale: bool = True,
        segment_vocab_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config,
            application,
            variant,
            tie_emb_src_tgt_weight,
            logit_scale=logit_scale,
            segment_vocab_size=segment_vocab_size,
            **kwargs,
        )


# ---- one stack as a model --------------------------------------------------------------
class T5Part(CheckpointMixin, T5Stack):
    """``model='t5_encoder'`` / ``'t5_decoder'`` (and the ``t5.1.0``, ``t5.1.1``, ``mt5.1.1``
    forms): one stack of a T5 checkpoint, called as the seed's ``T5_Encoder`` (``[ids]`` ->
    ``[hidden, mask]``) or ``T5_Decoder`` (``[ids, encoder_hidden, encoder_mask]`` ->
    ``[hidden, logits]``). The other stack's checkpoint tensors are skipped.
    """

    vocab_params = ("word_embeddings.weight", "lm_head.weight")
    model_types: tuple[str, ...] = ("t5", "mt5")

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        tie_emb_src_tgt_weight: bool = True,
        **kwargs: Any,
    ) -> None:
        name = check_build(self, config, application, variant, kwargs, self.model_types)
        settings = t5_settings(config, name.rsplit("_", 1)[0])
        shared = nn.Embedding(config.vocab_size, config.hidden_size)
        super().__init__(config, shared, name.endswith("_decoder"), settings)
        self.variant = variant
        self.settings = settings


class SeedDecoder(CheckpointMixin, GenericStack):
    """``model='decoder'``: bert4torch 0.2.5's generic ``Decoder`` alone, called
    ``[decoder_ids, encoder_hidden, encoder_mask]`` -> ``[hidden, logits]``."""

    vocab_params = ("word_embeddings.weight", "final_dense.weight")
    model_types = ()

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        logit_scale: bool = True,
        segment_vocab_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_build(self, config, application, variant, kwargs, self.model_types)
        if config.raw.get("tgt_vocab_size"):
            config.vocab_size = int(config.raw["tgt_vocab_size"])
        settings = generic_settings(config, segment_vocab_size)
        settings["logit_scale"] = logit_scale
        word = nn.Embedding(config.vocab_size, config.hidden_size)
        super().__init__(config, word, True, settings)
        self.variant = variant
        self.settings = settings
