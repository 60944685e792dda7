"""Encoder-decoder models (T5 family) with ``model.encoder`` / ``model.decoder`` and a KV cache.

:class:`T5` holds two :class:`T5Stack` s sharing one word table. Calls:

* the seed's, ``model([encoder_ids, decoder_ids])`` -> ``[encoder_hidden [B, S, H],
  decoder_hidden [B, T, H], logits [B, T, V]]`` (bert4torch 0.2.5's order);
  ``model.encoder.predict([token_ids])`` -> ``[encoder_hidden, encoder_mask [B, 1, 1, S]]``
  and ``model.decoder.predict([decoder_ids, encoder_hidden, encoder_mask])`` ->
  ``[decoder_hidden, logits]``, as the seed's T5-PEGASUS scripts call them;
* the b4t seq2seq protocol (:class:`b4t.generation.Seq2SeqGeneration`):
  ``model.encode(input_ids, attention_mask)`` -> memory and ``model.decode(input_ids,
  memory, memory_mask, past_key_values)`` -> ``(logits, KVCache)``; the cache holds the
  decoder's self-attention keys/values and the memory's cross-attention keys/values
  (computed once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.layers import LayerNorm, T5RelativePositionBias, TransformerBlock
from b4t.layers.attention import causal_bias
from b4t.layers.linear import Linear, linear
from b4t.layers.t5 import DecoderBlock, T5Block
from b4t.models.config import ModelConfig
from b4t.models.kv_cache import KVCache
from b4t.models.prefix_reuse import extend_outputs, reuse_or_run
from b4t.models.weight_map import WeightSource

__all__ = [
    "BART",
    "T5",
    "BartStack",
    "GenericStack",
    "SeedDecoder",
    "SeedTransformer",
    "T5Part",
    "T5Stack",
]

_ACT = {"relu": "relu", "gelu": "gelu_new", "gelu_new": "gelu_new", "silu": "silu"}


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


def _additive(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, S]`` keep mask (or the seed's ``[B, 1, 1, S]``) -> ``[B, 1, 1, S]`` bias."""
    if keep.dim() == 4:
        keep = keep[:, 0, 0]
    keep = keep.bool()[:, None, None, :]
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return bias.masked_fill_(~keep, torch.finfo(dtype).min)


def _check_build(
    model: Any, config: ModelConfig, application: str, variant: Any, kwargs: dict[str, Any]
) -> str:
    """Refuse heads, applications and configs of another model type; return the name."""
    name = getattr(variant, "name", type(model).__name__)
    for flag in ("with_pool", "with_nsp", "with_mlm", "layer_add_embs"):
        if kwargs.pop(flag, None):
            raise TypeError(f"model={name!r} is an encoder-decoder and takes no {flag}")
    for flag in ("segment_vocab_size", "output_all_encoded_layers", "gradient_checkpoint"):
        kwargs.pop(flag, None)
    if kwargs:
        raise TypeError(f"unknown keyword argument(s) for model={name!r}: {sorted(kwargs)}")
    if str(application).lower() != "encoder":
        raise ValueError(f"model={name!r} takes no application={application!r}")
    model_type = config.raw.get("model_type")
    if model_type and model.model_types and model_type not in model.model_types:
        raise ValueError(
            f"{config.source} is a {model_type!r} config but this is {name!r} "
            f"(accepts model_type {', '.join(model.model_types)})"
        )
    return name


class _CheckpointMixin:
    """``variable_mapping`` / ``load_weights`` / ``save_weights`` from the variant's map."""

    variant: Any
    config: ModelConfig

    def variable_mapping(self, existing_only: bool = True) -> dict[str, WeightSource]:
        """``{b4t parameter name: checkpoint key | Concat | None}`` (the variant's map)."""
        if self.variant is None:
            return {name: name for name in self.state_dict()}
        template = self.variant.weight_map
        mapping = template(self.config, self) if callable(template) else dict(template)
        if not existing_only:
            return mapping
        own = set(self.state_dict())
        return {k: v for k, v in mapping.items() if k in own}

    def load_weights(
        self,
        path: str | Path | Sequence[str | Path] | dict[str, torch.Tensor],
        strict: bool = True,
        *,
        mapping: dict[str, WeightSource] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a checkpoint; see :func:`b4t.models.loading.load_into`."""
        from b4t.models.loading import load_into

        return load_into(self, path, mapping=mapping, strict=strict, **kwargs)

    def save_weights(
        self, path: str | Path, *, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """Write the weights in transformers' T5 layout; see :func:`save_from`."""
        from b4t.models.loading import save_from

        return save_from(self, path, mapping=mapping)

    def save_pretrained(
        self, path: str | Path, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """The checkpoint layout, explicitly (see :meth:`save_weights`); with b4t-trainer
        installed ``save_weights(path)`` writes bert4torch 0.2.5's state-dict file."""
        return _CheckpointMixin.save_weights(self, path, mapping=mapping)


class T5Stack(nn.Module):
    """The T5 encoder (``is_decoder=False``) or decoder with its LM head.

    ``word_embeddings`` is the shared table (the same module in both stacks).
    """

    def __init__(
        self,
        config: ModelConfig,
        word_embeddings: nn.Embedding,
        is_decoder: bool,
        settings: dict[str, Any],
    ) -> None:
        super().__init__()
        c, s = config, settings
        self.config = config
        self.is_decoder = is_decoder
        self.pad_token_id = c.pad_token_id
        self.word_embeddings = word_embeddings
        n_layers = s["decoder_layers"] if is_decoder else c.num_hidden_layers
        self.relative_bias = T5RelativePositionBias(
            c.num_attention_heads, s["buckets"], s["max_distance"], bidirectional=not is_decoder
        )
        self.layers = nn.ModuleList(
            T5Block(
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
            for _ in range(n_layers)
        )
        self.final_norm = LayerNorm(
            c.hidden_size, c.layer_norm_eps, bias=False, norm_mode="rmsnorm"
        )
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.tie = bool(s["tie"])
        self.scale = bool(s["scale"])
        self.lm_head = (
            Linear(c.hidden_size, c.vocab_size, bias=False) if is_decoder and not self.tie else None
        )

    def _check_ids(self, token_ids: torch.Tensor) -> None:
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must be [batch, seq_len], got {tuple(token_ids.shape)}")
        vocab = self.word_embeddings.num_embeddings
        if token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= vocab):
            raise ValueError(f"a token id is outside the vocabulary (size {vocab})")

    def encode(self, token_ids: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder: ``[B, S]`` ids (+ keep mask) -> ``[B, S, H]``."""
        self._check_ids(token_ids)
        x = self.dropout(self.word_embeddings(token_ids))
        length = token_ids.shape[1]
        bias = self.relative_bias(length, length).to(x.dtype)
        if keep is not None and not bool(keep.bool().all()):
            bias = bias + _additive(keep, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)[0]
        return self.dropout(self.final_norm(x))

    def decode(
        self,
        token_ids: torch.Tensor,
        memory: torch.Tensor | None,
        memory_keep: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Decoder: new ids ``[B, T]`` over ``memory [B, S, H]`` -> hidden ``[B, T, H]``."""
        self._check_ids(token_ids)
        b, length = token_ids.shape
        past = 0
        if cache is not None:
            cache.check(b, len(self.layers))
            past = cache.seq_len
            if cache.cross is None:
                cache.cross = [None] * len(self.layers)
            cache.mask = torch.ones(b, past + length, dtype=torch.bool, device=token_ids.device)
        x = self.dropout(self.word_embeddings(token_ids))
        bias = self.relative_bias(length, past + length, offset=past).to(x.dtype)
        if length > 1:
            bias = bias + causal_bias(length, past + length, x.dtype, x.device)
        x = self.run_decoder_layers(x, bias, memory, memory_keep, cache)
        return self.dropout(self.final_norm(x))

    def run_decoder_layers(
        self,
        x: torch.Tensor,
        self_bias: torch.Tensor | None,
        memory: torch.Tensor | None,
        memory_keep: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        """The decoder blocks over ``x`` ``[B, T, H]``: self-attention with ``self_bias``
        (None: causal inside the attention), cross-attention to ``memory`` ``[B, S, H]``
        (padding from ``memory_keep`` ``[B, S]``); with a cache, each layer's keys/values
        are appended and the cross keys/values computed once and kept."""
        memory_bias = None
        if memory_keep is not None and not bool(memory_keep.bool().all()):
            memory_bias = _additive(memory_keep, x.dtype)
        for i, layer in enumerate(self.layers):
            if cache is None:
                x = layer(x, self_bias, memory=memory, memory_bias=memory_bias)[0]
                continue
            cross = cache.cross[i]  # type: ignore[index]
            x, cross = layer(
                x,
                self_bias,
                past_key_value=cache.layers[i],
                memory=memory if cross is None else None,
                memory_bias=memory_bias,
                cross_kv=cross,
            )
            cache.cross[i] = cross  # type: ignore[index]
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head: the shared word table or its own ``lm_head``; the hidden states are
        scaled by ``H ** -0.5`` first where the config says so (T5.1.0)."""
        if self.scale:
            hidden = hidden * self.config.hidden_size**-0.5
        if self.lm_head is not None:
            return self.lm_head(hidden)
        return linear(hidden, self.word_embeddings.weight)

    def forward(self, inputs: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """Seed-style: encoder ``[ids]`` -> ``[hidden, mask [B, 1, 1, S]]``; decoder
        ``[ids, encoder_hidden, encoder_mask]`` -> ``[hidden, logits]``."""
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        token_ids = inputs[0]
        if not self.is_decoder:
            keep = token_ids.ne(self.pad_token_id)
            hidden = self.encode(token_ids, keep)
            return [hidden, keep[:, None, None, :].to(hidden.dtype)]
        if len(inputs) < 2:
            raise ValueError("the decoder takes [decoder_ids, encoder_hidden, encoder_mask]")
        memory = inputs[1]
        memory_keep = inputs[2] if len(inputs) > 2 else None

        def run(cache: KVCache | None, past: int) -> list[torch.Tensor]:
            hidden = self.decode(token_ids[:, past:], memory, memory_keep, cache)
            return [hidden, self.logits(hidden)]

        if len(inputs) > 3:
            return run(None, 0)
        return reuse_or_run(
            self,
            [token_ids],
            [memory, memory_keep],
            run,
            extend_outputs,
            len(self.layers),
        )

    @torch.no_grad()
    def predict(self, inputs: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """``forward`` in eval mode without gradients (the seed's ``predict``)."""
        self.eval()
        return self.forward(inputs)


class T5(_CheckpointMixin, nn.Module):
    """T5 / T5.1.1 / mT5 encoder-decoder (transformers' ``T5ForConditionalGeneration``
    layout). Build options: ``tie_emb_src_tgt_weight`` is accepted (T5 always shares the
    word table); heads (``with_pool`` / ``with_mlm`` / ``with_nsp``) are refused.
    Training updates the one table (and a tied head) with the sum of its gradients, as
    transformers does; 0.2.5 trains three copies of it apart (MIGRATION.md).
    """

    vocab_params = (
        "encoder.word_embeddings.weight",
        "decoder.word_embeddings.weight",
        "decoder.lm_head.weight",
    )
    model_types: tuple[str, ...] = ("t5", "mt5")

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        tie_emb_src_tgt_weight: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        name = _check_build(self, config, application, variant, kwargs)
        self.config = config
        self.variant = variant
        settings = t5_settings(config, name)
        self.settings = settings
        shared = nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = T5Stack(config, shared, False, settings)
        self.decoder = T5Stack(config, shared, True, settings)

    # ---- calls ---------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        """Seed-style ``[encoder_ids, decoder_ids]`` (or ``[[encoder_ids], [decoder_ids]]``)
        -> ``[enc_hidden, dec_hidden, logits]``.

        Keywords ``input_ids``, ``decoder_input_ids`` and ``attention_mask`` work too.
        """
        inputs = (
            list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
        )
        enc = kwargs.pop("input_ids", inputs[0] if inputs else None)
        dec = kwargs.pop("decoder_input_ids", inputs[1] if len(inputs) > 1 else None)
        keep = kwargs.pop("attention_mask", None)
        if kwargs:
            raise TypeError(f"unknown inputs: {sorted(kwargs)}")
        if enc is None or dec is None:
            raise ValueError("T5 takes [encoder_ids, decoder_ids]")
        # the seed also passes [[encoder_ids], [decoder_ids]]
        enc = enc[0] if isinstance(enc, list | tuple) else enc
        dec = dec[0] if isinstance(dec, list | tuple) else dec
        if keep is None:
            keep = enc.ne(self.config.pad_token_id)
        memory = self.encoder.encode(enc, keep)
        hidden = self.decoder.decode(dec, memory, keep)
        return [memory, hidden, self.decoder.logits(hidden)]

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Protocol: ``[B, S]`` -> memory ``[B, S, H]``."""
        return self.encoder.encode(input_ids, attention_mask)

    def decode(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Protocol: new decoder ids -> ``(logits [B, T, V], cache)``."""
        cache = past_key_values
        if cache is None:
            cache = KVCache(len(self.decoder.layers))
        elif not isinstance(cache, KVCache):
            raise TypeError(f"past_key_values must be a b4t KVCache, got {type(cache).__name__}")
        hidden = self.decoder.decode(
            input_ids, encoder_hidden_states, encoder_attention_mask, cache
        )
        return self.decoder.logits(hidden), cache


class T5Part(_CheckpointMixin, T5Stack):
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
        name = _check_build(self, config, application, variant, kwargs)
        settings = t5_settings(config, name.rsplit("_", 1)[0])
        shared = nn.Embedding(config.vocab_size, config.hidden_size)
        super().__init__(config, shared, name.endswith("_decoder"), settings)
        self.variant = variant
        self.settings = settings


class BartStack(T5Stack):
    """The BART encoder or decoder: scaled word + learned positions (offset 2),
    ``layernorm_embedding``, post-norm layers; the decoder's LM head is the shared word
    table plus ``final_logits_bias``. Same calls as :class:`T5Stack`.
    """

    position_offset = 2

    def __init__(
        self,
        config: ModelConfig,
        word_embeddings: nn.Embedding,
        is_decoder: bool,
        settings: dict[str, Any],
    ) -> None:
        nn.Module.__init__(self)
        c, s = config, settings
        self.config = config
        self.is_decoder = is_decoder
        self.pad_token_id = c.pad_token_id
        self.word_embeddings = word_embeddings
        self.embed_scale = c.hidden_size**0.5 if s["scale_embedding"] else 1.0
        self.position_embeddings = nn.Embedding(
            c.max_position_embeddings + self.position_offset, c.hidden_size
        )
        self.embedding_norm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        n_layers = s["decoder_layers"] if is_decoder else c.num_hidden_layers
        if is_decoder:
            self.layers = nn.ModuleList(
                DecoderBlock(
                    c.hidden_size,
                    c.num_attention_heads,
                    s["decoder_ffn"],
                    hidden_act=c.hidden_act,
                    layer_norm_eps=c.layer_norm_eps,
                    dropout_rate=c.hidden_dropout_prob,
                    attention_dropout=c.attention_probs_dropout_prob,
                    activation_dropout=s["activation_dropout"],
                )
                for _ in range(n_layers)
            )
        else:
            self.layers = nn.ModuleList(
                _BartEncoderBlock(
                    hidden_size=c.hidden_size,
                    num_attention_heads=c.num_attention_heads,
                    intermediate_size=c.intermediate_size,
                    hidden_act=c.hidden_act,
                    dropout_rate=c.hidden_dropout_prob,
                    attention_dropout=c.attention_probs_dropout_prob,
                    layer_norm_eps=c.layer_norm_eps,
                )
                for _ in range(n_layers)
            )
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.tie, self.scale, self.lm_head = True, False, None
        self.final_logits_bias = (
            nn.Parameter(torch.zeros(c.vocab_size), requires_grad=False) if is_decoder else None
        )

    def _embed(self, token_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        self._check_ids(token_ids)
        length = token_ids.shape[1]
        rows = self.position_embeddings.num_embeddings - self.position_offset
        if past + length > rows:
            raise ValueError(
                f"the sequence reaches position {past + length} but the position table has "
                f"{rows} rows (max_position_embeddings)"
            )
        pos = torch.arange(past, past + length, device=token_ids.device) + self.position_offset
        x = self.word_embeddings(token_ids) * self.embed_scale + self.position_embeddings(pos)
        return self.dropout(self.embedding_norm(x))

    def encode(self, token_ids: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(token_ids)
        bias = None
        if keep is not None and not bool(keep.bool().all()):
            bias = _additive(keep, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)[0]
        return x

    def decode(
        self,
        token_ids: torch.Tensor,
        memory: torch.Tensor | None,
        memory_keep: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        b, length = token_ids.shape
        past = 0
        if cache is not None:
            cache.check(b, len(self.layers))
            past = cache.seq_len
            if cache.cross is None:
                cache.cross = [None] * len(self.layers)
            cache.mask = torch.ones(b, past + length, dtype=torch.bool, device=token_ids.device)
        x = self._embed(token_ids, past)
        # self_bias None: causal inside the attention (is_causal), cache-aware
        return self.run_decoder_layers(x, None, memory, memory_keep, cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.linear(hidden, self.word_embeddings.weight)
        return out + self.final_logits_bias if self.final_logits_bias is not None else out


class _BartEncoderBlock(TransformerBlock):
    """BART's encoder layer: the post-norm BERT block; ``(x, bias)`` -> ``(x, None)``."""

    def forward(self, x: torch.Tensor, attention_mask: Any = None, *args: Any, **kw: Any) -> Any:
        return super().forward(x, attention_mask)[0], None


def bart_settings(config: ModelConfig) -> dict[str, Any]:
    """BART's own ``config.json`` keys."""
    raw = config.raw
    return {
        "scale_embedding": bool(raw.get("scale_embedding", False)),
        "decoder_layers": int(raw.get("decoder_layers") or config.num_hidden_layers),
        "decoder_ffn": int(raw.get("decoder_ffn_dim") or config.intermediate_size),
        "activation_dropout": float(raw.get("activation_dropout") or 0.0),
    }


class BART(T5):
    """BART encoder-decoder (transformers' ``BartForConditionalGeneration`` layout), with
    T5's calls: ``[encoder_ids, decoder_ids]`` -> ``[enc_hidden, dec_hidden, logits]``,
    ``model.encoder`` / ``model.decoder`` with ``predict``, ``encode`` / ``decode``.
    """

    model_types = ("bart",)
    stack_cls: type[BartStack] = BartStack

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        tie_emb_src_tgt_weight: bool = True,
        **kwargs: Any,
    ) -> None:
        nn.Module.__init__(self)
        _check_build(self, config, application, variant, kwargs)
        if config.raw.get("dropout") is not None:
            config.hidden_dropout_prob = float(config.raw["dropout"])
        self.config = config
        self.variant = variant
        self.settings = bart_settings(config)
        shared = nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = self.stack_cls(config, shared, False, self.settings)
        self.decoder = self.stack_cls(config, shared, True, self.settings)


class GenericStack(BartStack):
    """bert4torch 0.2.5's generic ``Encoder`` / ``Decoder`` stack: BERT embeddings (word +
    learned position + segment row 0, LayerNorm), post-norm BERT layers (the decoder's
    with cross-attention), and for the decoder an untied ``final_dense`` whose logits are
    scaled by ``H ** -0.5`` (the seed's ``logit_scale``). Decoder padding keys are masked.
    """

    position_offset = 0

    def __init__(
        self,
        config: ModelConfig,
        word_embeddings: nn.Embedding,
        is_decoder: bool,
        settings: dict[str, Any],
    ) -> None:
        super().__init__(config, word_embeddings, is_decoder, settings)
        rows = int(settings.get("segment_vocab_size", 0))
        self.segment_embeddings = nn.Embedding(rows, config.hidden_size) if rows > 0 else None
        self.final_logits_bias = None
        self.final_dense = (
            Linear(config.hidden_size, config.vocab_size, bias=False) if is_decoder else None
        )
        self.logit_scale = config.hidden_size**-0.5 if settings.get("logit_scale", True) else 1.0

    def _embed(self, token_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        self._check_ids(token_ids)
        length = token_ids.shape[1]
        rows = self.position_embeddings.num_embeddings
        if past + length > rows:
            raise ValueError(
                f"the sequence reaches position {past + length} but the position table has "
                f"{rows} rows (max_position)"
            )
        pos = torch.arange(past, past + length, device=token_ids.device)
        x = self.word_embeddings(token_ids) + self.position_embeddings(pos)
        if self.segment_embeddings is not None:
            x = x + self.segment_embeddings.weight[0]
        return self.dropout(self.embedding_norm(x))

    def decode(
        self,
        token_ids: torch.Tensor,
        memory: torch.Tensor | None,
        memory_keep: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        b, length = token_ids.shape
        past = 0
        keep = token_ids.ne(self.pad_token_id)
        if cache is not None:
            cache.check(b, len(self.layers))
            past = cache.seq_len
            if cache.cross is None:
                cache.cross = [None] * len(self.layers)
            if cache.mask is not None:
                keep = torch.cat([cache.mask, keep], 1)
            cache.mask = keep
        x = self._embed(token_ids, past)
        self_bias = None
        if not bool(keep.all()):  # the seed masks padded decoder keys (causal mask inside)
            allowed = (causal_bias(length, past + length, x.dtype, x.device) == 0)[None, None]
            allowed = allowed & keep[:, None, None, :]
            self_bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
            self_bias.masked_fill_(~allowed, torch.finfo(x.dtype).min)
        return self.run_decoder_layers(x, self_bias, memory, memory_keep, cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.final_dense is None:
            raise ValueError("the encoder has no LM head")
        return self.final_dense(hidden) * self.logit_scale


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


class SeedTransformer(T5):
    """``model='transformer'``: bert4torch 0.2.5's generic encoder-decoder (``Transformer``),
    loading the layout 0.2.5 loads for it (its own parameter names). Calls as :class:`T5`.
    Decoder options: ``logit_scale`` (default True), ``tie_emb_src_tgt_weight`` (one word
    table for both stacks, default False).
    """

    model_types = ()

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
        nn.Module.__init__(self)
        _check_build(self, config, application, variant, kwargs)
        self.config = config
        self.variant = variant
        self.settings = generic_settings(config, segment_vocab_size)
        self.settings["logit_scale"] = logit_scale
        self.tie_emb_src_tgt_weight = tie_emb_src_tgt_weight
        src = nn.Embedding(
            int(config.raw.get("src_vocab_size") or config.vocab_size), config.hidden_size
        )
        tgt = src if tie_emb_src_tgt_weight else nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = GenericStack(config, src, False, self.settings)
        self.decoder = GenericStack(config, tgt, True, self.settings)


class SeedDecoder(_CheckpointMixin, GenericStack):
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
        _check_build(self, config, application, variant, kwargs)
        if config.raw.get("tgt_vocab_size"):
            config.vocab_size = int(config.raw["tgt_vocab_size"])
        settings = generic_settings(config, segment_vocab_size)
        settings["logit_scale"] = logit_scale
        word = nn.Embedding(config.vocab_size, config.hidden_size)
        super().__init__(config, word, True, settings)
        self.variant = variant
        self.settings = settings
