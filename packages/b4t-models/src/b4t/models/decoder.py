"""Decoder-only language models (GPT, GPT-2, GPT2-ML, LLaMA) with b4t's KV cache.

:class:`CausalLM` is the config-driven :class:`~b4t.models.transformer.Transformer`
with a causal mask, an LM head tied to the word embeddings (or its own ``lm_head``)
and an incremental path through a :class:`~b4t.models.kv_cache.KVCache`. It is called
two ways:

* the seed's way, ``model([token_ids, segment_ids])`` or ``model(token_ids)``: returns
  ``final_activation(logits)`` ``[B, L, V]`` (softmax probabilities by default, as
  bert4torch 0.2.5's GPT / GPT2 / GPT2_ML; ``final_activation='linear'`` for logits).
  Keys equal to ``pad_token_id`` are masked, as in the seed;
* the b4t decoder protocol (what :class:`b4t.generation.SeqGeneration` calls),
  ``model.decode_step(input_ids, past_key_values=cache_or_None, attention_mask=mask)``:
  returns ``(logits [B, new, V], cache)``. ``attention_mask`` is ``[B, past + new]`` (1 =
  real token, 0 = left padding); positions count real tokens only (``cumsum - 1``). Pass
  ``logits_to_keep=1`` to compute the LM head for the last position only. (Calling
  ``model(..., past_key_values=...)`` still runs it, with a DeprecationWarning.)

Without padding the layers take SDPA's causal path (``is_causal``) with no mask tensor.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from b4t.layers import LayerNorm, get_activation
from b4t.layers.attention import causal_bias
from b4t.layers.linear import Linear, linear
from b4t.layers.packed import PackedLinear, pack_linears
from b4t.models.config import ModelConfig
from b4t.models.forward_state import DecoderState
from b4t.models.kv_cache import KVCache
from b4t.models.prefix_reuse import extend_outputs
from b4t.models.transformer import Transformer

__all__ = ["CausalLM", "final_activation_fn"]


def final_activation_fn(name: str | Callable | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``'softmax'`` (over the vocabulary), ``'linear'``/None, or any b4t activation name."""
    if name is None:
        return get_activation("linear")
    if isinstance(name, str) and name.lower() == "softmax":
        return lambda x: torch.softmax(x, dim=-1)
    if isinstance(name, str) and name.lower() == "log_softmax":
        return lambda x: torch.log_softmax(x, dim=-1)
    return get_activation(name)


class CausalLM(Transformer):
    """A decoder-only LM: embeddings -> causal blocks -> (final norm) -> LM head.

    Class attributes a variant sets: ``embedding_norm`` (LayerNorm after the embedding
    sum, GPT2-ML), ``final_norm`` (norm before the head: GPT-2, LLaMA), ``model_types``
    (the ``config.json`` ``model_type`` values this variant accepts).

    Extra keyword arguments (beyond :class:`Transformer`'s):
        final_activation: applied to the logits of a seed-style call (default softmax).
        tie_word_embeddings: head weight = word embeddings (default from the config,
            else True).
        shared_segment_embeddings: segment ids are looked up in the word table
            (OpenAI GPT's token types, CDial-GPT) instead of a segment table.
    """

    embedding_norm = False
    final_norm = False
    model_types: tuple[str, ...] = ()
    vocab_params = ("embeddings.word_embeddings.weight", "lm_head.weight")
    accepts_logits_to_keep = True  # b4t.generation computes only the last position's logits
    state_type = DecoderState
    # the decoder's own stages run positions past.. over the KV cache (run_from), in any
    # layers (layers_take_kv_cache): seed-style decoding steps reuse their prefix
    prefix_reuse = True

    def __init__(
        self,
        config: ModelConfig,
        application: str = "lm",
        segment_vocab_size: int | None = None,
        with_pool: bool = False,
        with_nsp: bool = False,
        with_mlm: bool = False,
        final_activation: str | Callable | None = "softmax",
        tie_word_embeddings: bool | None = None,
        shared_segment_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        name = getattr(kwargs.get("variant"), "name", type(self).__name__)
        for flag, value in (
            ("with_pool", with_pool),
            ("with_nsp", with_nsp),
            ("with_mlm", with_mlm),
        ):
            if value:
                raise TypeError(f"model={name!r} is a decoder LM and takes no {flag} head")
        if application not in ("encoder", "lm"):
            raise ValueError(
                f"model={name!r} is always causal; application={application!r} is not supported"
            )
        self.normalise_config(config, name)
        if segment_vocab_size is None:
            # the seed's default is the config's type_vocab_size (0 in the GPT-2 / LLaMA
            # presets); an explicit value is kept, as in 0.2.5 (2 builds a 2-row table)
            segment_vocab_size = config.type_vocab_size
        if shared_segment_embeddings:
            # segment ids index the word table; a positive size keeps their input slot
            segment_vocab_size = segment_vocab_size or config.vocab_size
            kwargs["shared_segment_embeddings"] = True
        super().__init__(config, application="lm", segment_vocab_size=segment_vocab_size, **kwargs)
        self.final_activation = final_activation_fn(final_activation)
        if tie_word_embeddings is None:
            tie_word_embeddings = bool(config.raw.get("tie_word_embeddings", True))
        self.tie_word_embeddings = tie_word_embeddings
        self.norm = self.build_final_norm() if self.final_norm else None
        self.lm_head = (
            None
            if tie_word_embeddings
            else Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.packed_head: PackedLinear | None = None  # set by pack_for_decoding

    # ---- construction --------------------------------------------------------------
    def normalise_config(self, config: ModelConfig, name: str) -> None:
        """Check ``model_type`` and read the variant's own config.json keys (override)."""
        model_type = config.raw.get("model_type")
        if self.model_types and model_type and model_type not in self.model_types:
            raise ValueError(
                f"{config.source} is a {model_type!r} config but this is {name!r} "
                f"(accepts model_type {', '.join(self.model_types)}): wrong model= for the "
                "checkpoint?"
            )

    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        emb = super().build_embeddings(layer_add_embs)
        if not self.embedding_norm:
            emb.layer_norm = None
        return emb

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        attention_kwargs = dict(overrides.pop("attention_kwargs", None) or {})
        attention_kwargs.setdefault("is_causal", True)
        return super().build_layer(index, attention_kwargs=attention_kwargs, **overrides)

    def build_final_norm(self) -> nn.Module:
        c = self.config
        return LayerNorm(
            c.hidden_size, c.layer_norm_eps, bias=c.norm_mode != "rmsnorm", norm_mode=c.norm_mode
        )

    # ---- forward -------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The seed-style call: ``model([token_ids, segment_ids])`` or ``model(token_ids)``
        -> ``final_activation(logits)`` ``[B, L, V]`` (``logits_to_keep=k``: the last ``k``
        positions only). The decoder protocol is :meth:`decode_step`; called here with
        ``past_key_values=`` or ``use_cache=True`` (deprecated) it still runs that step,
        with a DeprecationWarning."""
        if "past_key_values" in kwargs or kwargs.get("use_cache"):
            warnings.warn(
                f"{type(self).__name__}(..., past_key_values=/use_cache=) is deprecated: call "
                "model.decode_step(input_ids, past_key_values=, attention_mask=, "
                "logits_to_keep=) for the decoder protocol's (logits, cache)",
                DeprecationWarning,
                stacklevel=4,  # forward <- Module._call_impl <- Module.__call__ <- the caller
            )
            cache = kwargs.pop("past_key_values", None)
            use_cache = kwargs.pop("use_cache", True)
            keep = int(kwargs.pop("logits_to_keep", 0) or 0)
            return self._protocol_step(self.parse_inputs(args, kwargs), cache, keep, use_cache)
        kwargs.pop("use_cache", None)
        logits_to_keep = int(kwargs.pop("logits_to_keep", 0) or 0)
        state = self.parse_inputs(args, kwargs)
        if not logits_to_keep and self.reuses_prefixes(state):
            return self.reuse_prefix(state, extend_outputs)
        hidden = self.apply_main_layers(self.apply_embeddings(state)).hidden_states
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.final_activation(self.lm_logits(hidden))

    def decode_step(
        self,
        input_ids: torch.Tensor,
        past_key_values: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, KVCache]:
        """The b4t decoder protocol (what :mod:`b4t.generation` calls): the new tokens
        ``input_ids [B, new]`` over the cache of the earlier ones -> ``(logits [B, new, V],
        cache)`` (raw logits; ``logits_to_keep=k``: the last ``k`` positions only).

        ``past_key_values``: the :class:`~b4t.models.kv_cache.KVCache` a previous step
        returned (None: a new one). ``attention_mask``: ``[B, past + new]`` (or ``[B,
        new]`` over a cache that holds its mask) with 1 = real token, 0 = left padding;
        positions count real tokens only (``cumsum - 1``); None: every token is real.
        """
        state = self.parse_inputs((input_ids,), {"attention_mask": attention_mask})
        return self._protocol_step(state, past_key_values, int(logits_to_keep or 0), True)

    def _protocol_step(
        self, state: DecoderState, cache: Any, logits_to_keep: int, use_cache: bool
    ) -> tuple[torch.Tensor, KVCache | None]:
        """:meth:`decode_step` over parsed inputs (``use_cache=False``: no new cache)."""
        if cache is None and use_cache:
            cache = KVCache(self.config.num_hidden_layers)
        elif cache is not None and not isinstance(cache, KVCache):
            raise TypeError(
                f"past_key_values must be a b4t KVCache (from a previous call), got "
                f"{type(cache).__name__}"
            )
        state.cache = cache
        state.protocol = True
        hidden = self.apply_main_layers(self.apply_embeddings(state)).hidden_states
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.lm_logits(hidden), cache

    def run_from(self, state: DecoderState, cache: KVCache | None, past: int) -> Any:
        """A seed-style call (``final_activation(logits)``); with ``cache``, over the
        positions ``past..`` only, the earlier ones' keys/values coming from ``cache``."""
        if past:
            state = state.copy()
            for key in ("token_ids", "segment_ids", "position_ids"):
                if state[key] is not None:
                    state[key] = state[key][:, past:]
            state.extra_ids = [ids[:, past:] for ids in state.extra_ids]
            # attention_mask stays whole: [B, past + new] is what _keep_mask takes
        state.cache = cache
        state.protocol = False
        state = self.apply_main_layers(self.apply_embeddings(state))
        return self.final_activation(self.lm_logits(state.hidden_states))

    def layers_take_kv_cache(self) -> bool:
        """Every layer of a decoder LM takes the KV cache (any block type)."""
        return True

    def pack_for_decoding(self, rows: int = 8) -> list[str]:
        """Pack the model's linear layers for oneDNN's CPU matmul, in place, for decoding
        several rows per step (a batch, beams, a serving scheduler); return the names.

        :func:`b4t.layers.pack_linears` on the layers, and a packed copy of a tied LM
        head's table (``packed_head``, not part of the state dict). Same weights, same
        state dict; inference only. Pack once the weights are final:
        :func:`b4t.layers.unpack_linears` undoes it (drops the head copy) before training.
        """
        names = pack_linears(self, rows)
        if self.lm_head is None:
            table = self.embeddings.word_embeddings.weight
            self.packed_head = PackedLinear(table, None, rows, persistent=False)
            names.append("packed_head")
        return names

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: ``[B, L, H]`` -> ``[B, L, V]`` logits."""
        if self.norm is not None:
            hidden = self.norm(hidden)
        if self.packed_head is not None and not (torch.is_grad_enabled() and hidden.requires_grad):
            return self.packed_head(hidden)
        weight = self.embeddings.word_embeddings.weight if self.lm_head is None else None
        return linear(hidden, weight) if weight is not None else self.lm_head(hidden)

    def _keep_mask(self, state: DecoderState, past: int) -> torch.Tensor | None:
        """``[B, past + L]`` bool of real tokens, or None when nothing is padding."""
        token_ids: torch.Tensor = state.token_ids
        b, length = token_ids.shape
        cache: KVCache | None = state.cache
        mask = state.attention_mask
        if mask is not None:
            mask = mask.bool()
            if mask.shape == (b, length) and past:
                if cache is None or cache.mask is None:
                    raise ValueError("attention_mask covers only the new tokens and no cache mask")
                mask = torch.cat([cache.mask, mask], 1)
            if mask.shape != (b, past + length):
                raise ValueError(
                    f"attention_mask shape {tuple(mask.shape)} should be {(b, past + length)} "
                    f"(batch, cached {past} + new {length} tokens)"
                )
        else:  # protocol: every new token is real; the seed's rule: pad_token_id is masked
            new = (
                torch.ones(b, length, dtype=torch.bool, device=token_ids.device)
                if state.protocol
                else token_ids.ne(self.config.pad_token_id)
            )
            prev = cache.mask if cache is not None and cache.mask is not None else None
            mask = new if prev is None else torch.cat([prev, new], 1)
        return mask

    def positions(self, keep: torch.Tensor, past: int, length: int, protocol: bool) -> torch.Tensor:
        """``[B, L]`` position ids of the new tokens (cumsum of real tokens in protocol calls)."""
        if protocol and not bool(keep.all()):
            return (keep.long().cumsum(1) - 1).clamp(min=0)[:, past:]
        pos = torch.arange(past, past + length, device=keep.device)
        return pos.unsqueeze(0).expand(keep.shape[0], length)

    def embed(self, state: DecoderState, position_ids: torch.Tensor) -> torch.Tensor:
        """Word + segment + position embeddings (+ norm), dropout: ``[B, L, H]``."""
        emb = self.embeddings
        token_ids = state.token_ids
        x = emb.word_embeddings(token_ids)
        segment_ids = state.segment_ids
        if emb.segment_embeddings is not None:  # the word table itself when shared
            if segment_ids is None:
                x = x + emb.segment_embeddings.weight[0]
            else:
                x = x + emb.segment_embeddings(segment_ids)
        if emb.position_embeddings is not None:
            x = x + emb.position_embeddings(position_ids)
        if emb.layer_add_embs is not None:
            for module, ids in zip(emb.layer_add_embs, state.extra_ids, strict=True):
                x = x + module(ids)
        if emb.layer_norm is not None:
            x = emb.layer_norm(x)
        return emb.dropout(x)

    def check_positions(self, position_ids: torch.Tensor) -> None:
        """ValueError when a position is outside the position table."""
        table = self.embeddings.position_embeddings
        limit = table.num_embeddings if table is not None else None
        if limit is not None and position_ids.numel() and int(position_ids.max()) >= limit:
            raise ValueError(
                f"the sequence reaches position {int(position_ids.max()) + 1} but the position "
                f"table has {limit} rows (max_position_embeddings): prompt plus generated "
                "tokens are too long"
            )

    def apply_embeddings(self, state: DecoderState) -> DecoderState:
        """Stage 1 of a decoder: checks, the keep mask over cache and new tokens, position
        ids, the embeddings of the new tokens and the causal (+ padding) mask."""
        token_ids: torch.Tensor = state.token_ids
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must be [batch, seq_len], got {tuple(token_ids.shape)}")
        b, length = token_ids.shape
        cache: KVCache | None = state.cache
        past = 0
        if cache is not None:
            cache.check(b, self.config.num_hidden_layers)
            past = cache.seq_len
        if token_ids.numel() and (
            int(token_ids.min()) < 0 or int(token_ids.max()) >= self.config.vocab_size
        ):
            bad = int(token_ids.max()) if int(token_ids.max()) >= 0 else int(token_ids.min())
            raise ValueError(
                f"token id {bad} is outside the vocabulary (size {self.config.vocab_size})"
            )
        keep = self._keep_mask(state, past)
        position_ids = state.position_ids
        if position_ids is None:
            position_ids = self.positions(keep, past, length, state.protocol)
        self.check_positions(position_ids)
        state.position_ids = position_ids
        state.hidden_states = self.embed(state, position_ids)
        if cache is not None:
            cache.mask = keep
        if bool(keep.all()):
            state.mask = None  # SDPA's causal path (or nothing to mask for one new token)
        else:
            causal = causal_bias(length, past + length, torch.float32, keep.device) == 0
            allowed = causal[None, None] & keep[:, None, None, :]
            bias = torch.zeros(allowed.shape, dtype=state.hidden_states.dtype, device=keep.device)
            state.mask = bias.masked_fill_(~allowed, torch.finfo(bias.dtype).min)
        return state
