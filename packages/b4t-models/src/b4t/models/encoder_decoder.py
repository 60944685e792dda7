"""Encoder-decoder models composed from parts chosen by data.

A family (T5, BART, bert4torch 0.2.5's generic ``Transformer``) is data, not a class
hierarchy: a :class:`StackSpec` names the parts of its stacks (the layer, the positions,
the final norm, the LM head, how the decoder masks itself) and a :class:`Seq2SeqSpec` how
a model of two stacks is put together (its settings from ``config.json``, its word
tables, its build options). One :class:`Seq2SeqStack` class runs every family's encoder
and decoder; one :class:`EncoderDecoder` class every family's model. The families'
specs and the class names users import (``T5``, ``BART``, ...) are in
:mod:`b4t.models.seq2seq`.

Calls of an :class:`EncoderDecoder`:

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from b4t.layers import LayerNorm, T5RelativePositionBias, to_additive_mask
from b4t.layers.attention import causal_bias
from b4t.layers.linear import Linear, linear
from b4t.models.config import ModelConfig
from b4t.models.kv_cache import KVCache
from b4t.models.prefix_reuse import extend_outputs, reuse_or_run
from b4t.models.weight_map import WeightSource

__all__ = ["EncoderDecoder", "Seq2SeqSpec", "Seq2SeqStack", "StackSpec"]

# (config, settings, is_decoder) -> one layer, called ``layer(x, bias, past_key_value=...,
# memory=..., memory_bias=..., cross_kv=...)`` -> ``(x, cross_kv)`` (an encoder layer:
# ``layer(x, bias)[0]`` is ``x``)
BlockFactory = Callable[[ModelConfig, dict[str, Any], bool], nn.Module]


@dataclass(frozen=True)
class StackSpec:
    """The parts of one family's encoder and decoder stacks (read by :class:`Seq2SeqStack`).

    Attributes:
        block: builds each layer (see ``BlockFactory``).
        positions: ``'t5_relative'`` (a bucketed bias shared by the layers, word
            embeddings alone, an RMS norm and dropout after the layers) or ``'learned'``
            (a position table, ``embedding_norm`` over the embedding sum, nothing after).
        head: the decoder's LM head: ``'t5'`` (the word table, ``hidden * H ** -0.5``
            first where ``settings['scale']``, or its own ``lm_head`` where not
            ``settings['tie']``), ``'tied_bias'`` (the word table plus a fixed
            ``final_logits_bias``: BART) or ``'dense'`` (an untied ``final_dense``, logits
            times ``H ** -0.5`` where ``settings['logit_scale']``: the seed's generic).
        position_offset: the table row of position 0 (learned positions).
        position_rows_key: the config key that sizes the table (for errors).
        segment_row: add segment row 0 (a ``segment_embeddings`` table of
            ``settings['segment_vocab_size']`` rows, where that is positive).
        mask_decoder_padding: the decoder masks padded keys of its own ids (the seed's
            generic decoder); else only the causal mask.
    """

    block: BlockFactory
    positions: Literal["t5_relative", "learned"]
    head: Literal["t5", "tied_bias", "dense"]
    position_offset: int = 0
    position_rows_key: str = "max_position_embeddings"
    segment_row: bool = False
    mask_decoder_padding: bool = False


@dataclass(frozen=True)
class Seq2SeqSpec:
    """How one family's :class:`EncoderDecoder` is put together.

    Attributes:
        stack: the stack class (a :class:`Seq2SeqStack` with its :class:`StackSpec`).
        settings: ``(config, model name, options) -> settings`` (the family's
            ``config.json`` keys, read by the stacks and the weight map).
        word_tables: ``(config, tie_emb_src_tgt_weight) -> (encoder table, decoder table)``.
        model_types: the ``model_type`` values a config may name (empty: any).
        options: the family's own build keywords with their defaults.
        tie_default: ``tie_emb_src_tgt_weight`` when not given.
    """

    stack: type[Seq2SeqStack]
    settings: Callable[[ModelConfig, str, dict[str, Any]], dict[str, Any]]
    word_tables: Callable[[ModelConfig, bool], tuple[nn.Embedding, nn.Embedding]]
    model_types: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    tie_default: bool = True


def padding_bias(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, S]`` keep mask (or the seed's ``[B, 1, 1, S]``) -> ``[B, 1, 1, S]`` bias."""
    if keep.dim() == 4:
        keep = keep[:, 0, 0]
    return to_additive_mask(keep.bool()[:, None, None, :], dtype)


def check_build(
    model: Any,
    config: ModelConfig,
    application: str,
    variant: Any,
    kwargs: dict[str, Any],
    model_types: tuple[str, ...],
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
    if model_type and model_types and model_type not in model_types:
        raise ValueError(
            f"{config.source} is a {model_type!r} config but this is {name!r} "
            f"(accepts model_type {', '.join(model_types)})"
        )
    return name


class CheckpointMixin:
    """``variable_mapping`` / ``load_weights`` / ``save_weights`` from the variant's map."""

    variant: Any
    config: ModelConfig

    def variable_mapping(self, existing_only: bool = True) -> dict[str, WeightSource]:
        """``{b4t parameter name: checkpoint key | Concat | None}`` (the variant's map)."""
        if self.variant is None:
            return {name: name for name in self.state_dict()}  # type: ignore[attr-defined]
        template = self.variant.weight_map
        mapping = template(self.config, self) if callable(template) else dict(template)
        if not existing_only:
            return mapping
        own = set(self.state_dict())  # type: ignore[attr-defined]
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
        """Write the weights in the checkpoint layout; see :func:`save_from`."""
        from b4t.models.loading import save_from

        return save_from(self, path, mapping=mapping)

    def save_pretrained(
        self, path: str | Path, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """The checkpoint layout, explicitly (see :meth:`save_weights`); with b4t-trainer
        installed ``save_weights(path)`` writes bert4torch 0.2.5's state-dict file."""
        return CheckpointMixin.save_weights(self, path, mapping=mapping)


class Seq2SeqStack(nn.Module):
    """An encoder (``is_decoder=False``) or a decoder with its LM head, built from the
    class's :class:`StackSpec` (``spec``).

    ``word_embeddings`` is the word table (the same module in both stacks where the
    family shares it); ``settings`` the family's ``config.json`` keys. Parameter names:
    ``word_embeddings``, ``relative_bias`` (T5) or ``position_embeddings`` and
    ``embedding_norm``, ``layers.{i}``, ``final_norm`` (T5), ``segment_embeddings``, and
    the head's ``lm_head`` / ``final_logits_bias`` / ``final_dense``.
    """

    spec: ClassVar[StackSpec]

    def __init__(
        self,
        config: ModelConfig,
        word_embeddings: nn.Embedding,
        is_decoder: bool,
        settings: dict[str, Any],
    ) -> None:
        super().__init__()
        c, s, spec = config, settings, self.spec
        self.config = config
        self.is_decoder = is_decoder
        self.pad_token_id = c.pad_token_id
        self.word_embeddings = word_embeddings
        if spec.positions == "t5_relative":
            self.relative_bias = T5RelativePositionBias(
                c.num_attention_heads, s["buckets"], s["max_distance"], bidirectional=not is_decoder
            )
        else:
            self.embed_scale = c.hidden_size**0.5 if s.get("scale_embedding") else 1.0
            rows = c.max_position_embeddings + spec.position_offset
            self.position_embeddings = nn.Embedding(rows, c.hidden_size)
            self.embedding_norm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        n_layers = s["decoder_layers"] if is_decoder else c.num_hidden_layers
        self.layers = nn.ModuleList(spec.block(c, s, is_decoder) for _ in range(n_layers))
        if spec.positions == "t5_relative":
            self.final_norm = LayerNorm(
                c.hidden_size, c.layer_norm_eps, bias=False, norm_mode="rmsnorm"
            )
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        segments = int(s.get("segment_vocab_size", 0)) if spec.segment_row else 0
        if spec.segment_row:
            self.segment_embeddings = nn.Embedding(segments, c.hidden_size) if segments else None
        self._build_head(s)

    def _build_head(self, settings: dict[str, Any]) -> None:
        """The decoder's LM head (``spec.head``); an encoder's is the word table."""
        c, head = self.config, self.spec.head
        if head == "t5":
            self.tie = bool(settings["tie"])
            self.scale = bool(settings["scale"])
            untied = self.is_decoder and not self.tie
            self.lm_head = Linear(c.hidden_size, c.vocab_size, bias=False) if untied else None
        elif head == "tied_bias":
            self.final_logits_bias = (
                nn.Parameter(torch.zeros(c.vocab_size), requires_grad=False)
                if self.is_decoder
                else None
            )
        else:
            self.final_dense = (
                Linear(c.hidden_size, c.vocab_size, bias=False) if self.is_decoder else None
            )
            self.logit_scale = c.hidden_size**-0.5 if settings.get("logit_scale", True) else 1.0

    # ---- parts -----------------------------------------------------------------------
    def _check_ids(self, token_ids: torch.Tensor) -> None:
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must be [batch, seq_len], got {tuple(token_ids.shape)}")
        vocab = self.word_embeddings.num_embeddings
        if token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= vocab):
            raise ValueError(f"a token id is outside the vocabulary (size {vocab})")

    def embed(self, token_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        """``[B, T]`` ids at positions ``past..`` -> the first layer's input ``[B, T, H]``."""
        self._check_ids(token_ids)
        if self.spec.positions == "t5_relative":
            return self.dropout(self.word_embeddings(token_ids))
        length = token_ids.shape[1]
        offset = self.spec.position_offset
        rows = self.position_embeddings.num_embeddings - offset
        if past + length > rows:
            raise ValueError(
                f"the sequence reaches position {past + length} but the position table has "
                f"{rows} rows ({self.spec.position_rows_key})"
            )
        pos = torch.arange(past, past + length, device=token_ids.device) + offset
        x = self.word_embeddings(token_ids)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        x = x + self.position_embeddings(pos)
        if self.spec.segment_row and self.segment_embeddings is not None:
            x = x + self.segment_embeddings.weight[0]
        return self.dropout(self.embedding_norm(x))

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """After the layers: T5's final RMS norm and dropout; nothing for learned positions."""
        if self.spec.positions == "t5_relative":
            return self.dropout(self.final_norm(x))
        return x

    def _decoder_keep(
        self, token_ids: torch.Tensor, cache: KVCache | None, past: int
    ) -> torch.Tensor | None:
        """The decoder's keys to attend to, ``[B, past + T]`` (None: all, without a cache)."""
        b, length = token_ids.shape
        if self.spec.mask_decoder_padding:
            keep = token_ids.ne(self.pad_token_id)
            if cache is not None and cache.mask is not None:
                keep = torch.cat([cache.mask, keep], 1)
            return keep
        if cache is None:
            return None
        return torch.ones(b, past + length, dtype=torch.bool, device=token_ids.device)

    def _decoder_bias(
        self, x: torch.Tensor, past: int, keep: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The self-attention bias of new positions ``past..`` (None: causal inside the
        attention, which knows the cache)."""
        length = x.shape[1]
        if self.spec.positions == "t5_relative":
            bias = self.relative_bias(length, past + length, offset=past).to(x.dtype)
            if length > 1:
                bias = bias + causal_bias(length, past + length, x.dtype, x.device)
            return bias
        if not self.spec.mask_decoder_padding or keep is None or bool(keep.all()):
            return None
        # the seed masks padded decoder keys (and the causal mask, here explicit)
        allowed = (causal_bias(length, past + length, x.dtype, x.device) == 0)[None, None]
        return to_additive_mask(allowed & keep[:, None, None, :], x.dtype)

    # ---- calls -----------------------------------------------------------------------
    def encode(self, token_ids: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder: ``[B, S]`` ids (+ keep mask) -> ``[B, S, H]``."""
        x = self.embed(token_ids)
        bias = None
        if self.spec.positions == "t5_relative":
            length = token_ids.shape[1]
            bias = self.relative_bias(length, length).to(x.dtype)
        if keep is not None and not bool(keep.bool().all()):
            padding = padding_bias(keep, x.dtype)
            bias = padding if bias is None else bias + padding
        for layer in self.layers:
            x = layer(x, bias)[0]
        return self._finish(x)

    def decode(
        self,
        token_ids: torch.Tensor,
        memory: torch.Tensor | None,
        memory_keep: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Decoder: new ids ``[B, T]`` over ``memory [B, S, H]`` -> hidden ``[B, T, H]``."""
        self._check_ids(token_ids)
        past = 0
        if cache is not None:
            cache.check(token_ids.shape[0], len(self.layers))
            past = cache.seq_len
            if cache.cross is None:
                cache.cross = [None] * len(self.layers)
        keep = self._decoder_keep(token_ids, cache, past)
        if cache is not None:
            cache.mask = keep
        x = self.embed(token_ids, past)
        x = self.run_decoder_layers(
            x, self._decoder_bias(x, past, keep), memory, memory_keep, cache
        )
        return self._finish(x)

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
            memory_bias = padding_bias(memory_keep, x.dtype)
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
        """LM head (``spec.head``): ``[B, T, H]`` -> ``[B, T, V]``."""
        head = self.spec.head
        if head == "t5":
            if self.scale:
                hidden = hidden * self.config.hidden_size**-0.5
            if self.lm_head is not None:
                return self.lm_head(hidden)
            return linear(hidden, self.word_embeddings.weight)
        if head == "tied_bias":
            out = torch.nn.functional.linear(hidden, self.word_embeddings.weight)
            return out + self.final_logits_bias if self.final_logits_bias is not None else out
        if self.final_dense is None:
            raise ValueError("the encoder has no LM head")
        return self.final_dense(hidden) * self.logit_scale

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


class EncoderDecoder(CheckpointMixin, nn.Module):
    """An encoder stack and a decoder stack built from the class's :class:`Seq2SeqSpec`
    (``spec``), with the calls of the module docstring.

    Build options: ``tie_emb_src_tgt_weight`` (one word table for both stacks, where the
    family has two; default ``spec.tie_default``) and the family's ``spec.options``; heads
    (``with_pool`` / ``with_mlm`` / ``with_nsp``) and other applications are refused.
    """

    spec: ClassVar[Seq2SeqSpec]
    vocab_params = (
        "encoder.word_embeddings.weight",
        "decoder.word_embeddings.weight",
        "decoder.lm_head.weight",
    )

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        variant: Any = None,
        tie_emb_src_tgt_weight: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        spec = self.spec
        options = {key: kwargs.pop(key, default) for key, default in spec.options.items()}
        name = check_build(self, config, application, variant, kwargs, spec.model_types)
        tie = spec.tie_default if tie_emb_src_tgt_weight is None else tie_emb_src_tgt_weight
        self.config = config
        self.variant = variant
        self.settings = spec.settings(config, name, options)
        self.tie_emb_src_tgt_weight = tie
        source, target = spec.word_tables(config, tie)
        self.encoder = spec.stack(config, source, False, self.settings)
        self.decoder = spec.stack(config, target, True, self.settings)

    @property
    def model_types(self) -> tuple[str, ...]:
        """The ``model_type`` values a config of this family may name (empty: any)."""
        return self.spec.model_types

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
            raise ValueError(f"{type(self).__name__} takes [encoder_ids, decoder_ids]")
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
