"""XLNet (``model='xlnet'``): loads transformers' ``XLNetLMHeadModel`` / ``XLNetModel``.

The graph of bert4torch 0.2.5's ``XLNET`` (the content stream) plus XLNet's two-stream
attention: ``model([token_ids, segment_ids], perm_mask=[B, L, L], target_mapping=[B, P,
L])`` runs the query stream from ``mask_emb`` and returns its ``[B, P, H]`` states (and
``[B, P, V]`` logits), as transformers. Relative sinusoid positions over ``K .. -Q+1``
(``attn_type='bi'``, the default) or ``K .. 0`` (``'uni'``, causal), XLNet's segment
term (``[token_ids, segment_ids]``; without segment ids the term is left out, as
transformers does without ``token_type_ids``), per-layer biases (as transformers, whatever
``untie_r`` says), and
post-norm blocks. Padding (``token_pad_ids``, default the config's ``pad_token_id``;
XLNet's is 5) is masked for every query except its own position, as transformers does
with an ``attention_mask``.

Returns the hidden states ``[B, L, H]``, or with ``with_lm=True`` the list ``[hidden,
logits]``; ``logits`` equal transformers' ``XLNetLMHeadModel(...).logits`` (raw scores;
the head ``lm_loss`` is tied to ``word_embedding`` unless the config unties it).
Memory works as in :mod:`b4t.models.variants.transformer_xl` (``mem_len``, ``mems=``).

Generation (``with_lm=True``) follows the b4t decoder protocol as transformers'
``generate()`` drives XLNet: ``model.decode_step(input_ids, past_key_values=state_or_None,
attention_mask=mask)`` appends a dummy token that no other position sees
(``perm_mask``) and predicts it through the query stream (``target_mapping``), returning
``(logits [B, 1, V], XLNetDecodingState)``. As transformers does, later steps re-read
only the last two tokens (and the dummy) over the memory of the earlier positions' layer
inputs (``mems``; XLNet's content stream is bidirectional, so this is transformers'
approximation of a full re-read, not an exact cache). The state holds the ids, the
padding mask and the memory, and follows beams and samples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.transformer_xl import TransformerXL, XLState
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["HeadProjection", "XLNet", "XLNetDecodingState", "xlnet_weight_map"]


@dataclass(frozen=True)
class HeadProjection(Concat):
    """XLNet's per-head projection ``[H, N, d]`` as an ``nn.Linear`` weight.

    ``output=False`` (``q``, ``k``, ``v``, ``r``: ``x @ W.reshape(H, N*d)``): loaded as
    ``W.reshape(H, -1).T``; ``output=True`` (``o``: ``sum_nd a[n, d] W[h, n, d]``):
    ``W.reshape(H, -1)``. Saved back as ``[H, N, d]``.
    """

    heads: int = 1
    output: bool = False

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        w = tensors[0].reshape(tensors[0].shape[0], -1)
        return w.contiguous() if self.output else w.t().contiguous()

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        w = tensor if self.output else tensor.t()
        return [w.reshape(w.shape[0], self.heads, -1).contiguous()]

    def format(self, **kw: object) -> HeadProjection:
        keys = tuple(k.format(**kw) for k in self.keys)
        return HeadProjection(keys, self.dim, self.heads, self.output)

    def rename(self, fn: Any) -> HeadProjection:
        return HeadProjection(tuple(fn(k) for k in self.keys), self.dim, self.heads, self.output)


class XLNetDecodingState:
    """What an XLNet decoding run keeps between steps: every token so far ``ids [B, T]``,
    ``keep [B, T]`` (True = real token) and ``mems``, per layer the ``[B, T, H]`` layer
    inputs of positions ``0 .. T-2`` and of the last call's dummy token. Rows follow the
    beams and samples through :meth:`reorder_cache` (in place) or :meth:`index_select`."""

    def __init__(self, ids: torch.Tensor, keep: torch.Tensor, mems: list[torch.Tensor]) -> None:
        self.ids = ids
        self.keep = keep
        self.mems = mems

    @property
    def seq_len(self) -> int:
        return int(self.ids.shape[1])

    def index_select(self, indices: torch.Tensor) -> XLNetDecodingState:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.ids.device)
        return XLNetDecodingState(
            self.ids.index_select(0, idx),
            self.keep.index_select(0, idx),
            [m.index_select(0, idx) for m in self.mems],
        )

    def reorder_cache(self, indices: torch.Tensor) -> None:
        selected = self.index_select(indices)
        self.ids, self.keep, self.mems = selected.ids, selected.keep, selected.mems


def _from_raw(config: ModelConfig, raw_key: str, field: str, convert: Any = None) -> None:
    """Copy XLNet's own config.json key into a ModelConfig field unless the field's key
    was in the file."""
    value = config.raw.get(raw_key)
    if value is not None and field not in config.raw:
        setattr(config, field, convert(value) if convert else value)


def _checked_past(past: Any, input_ids: torch.Tensor) -> XLNetDecodingState | None:
    """``past_key_values`` of :meth:`XLNet.decode_step`: None or a state of as many rows."""
    if past is not None and not isinstance(past, XLNetDecodingState):
        raise TypeError(
            "past_key_values must be the XLNetDecodingState of a previous call, got "
            f"{type(past).__name__}"
        )
    if past is not None and past.ids.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"the decoding state holds {past.ids.shape[0]} rows but input_ids has "
            f"{input_ids.shape[0]} (a state from another batch?)"
        )
    return past


def _decoding_keep(
    input_ids: torch.Tensor,
    ids: torch.Tensor,
    past: XLNetDecodingState | None,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """``[B, T]`` bool over every token so far from ``attention_mask`` (``[B, T]``, or
    ``[B, n]`` over the new ones after the state's; None: all real)."""
    if attention_mask is None:
        new = torch.ones_like(input_ids, dtype=torch.bool)
        return new if past is None else torch.cat([past.keep, new], 1)
    keep = attention_mask.bool()
    if past is not None and keep.shape == input_ids.shape:
        keep = torch.cat([past.keep, keep], 1)
    if keep.shape != ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} should be "
            f"{tuple(ids.shape)} (every token so far) or {tuple(input_ids.shape)}"
        )
    return keep


def _dummy_query_inputs(
    ids: torch.Tensor, keep: torch.Tensor, start: int, mems: list[torch.Tensor] | None
) -> dict[str, Any]:
    """The keyword inputs of one decoding run: tokens ``start..`` and a dummy token (id 0)
    at the end that no position sees (``perm_mask``), predicted by the query stream
    (``target_mapping``), over ``mems`` (the memory of the tokens before ``start``)."""
    batch = ids.shape[0]
    part = torch.cat([ids[:, start:], ids.new_zeros(batch, 1)], 1)
    width = part.shape[1]
    perm = torch.zeros(batch, width, width, device=ids.device)
    perm[:, :, -1] = 1.0
    mapping = torch.zeros(batch, 1, width, device=ids.device)
    mapping[:, 0, -1] = 1.0
    return dict(
        input_ids=part,
        attention_mask=torch.cat([keep[:, start:], keep.new_ones(batch, 1)], 1),
        perm_mask=perm,
        target_mapping=mapping,
        mems=mems,
        mems_keep=None if mems is None else keep[:, :start],
    )


@dataclass(slots=True, eq=False)
class XLNetState(XLState):
    """:class:`~b4t.models.variants.transformer_xl.XLState` plus XLNet's two streams:
    the inputs ``perm_mask [B, L, L]``, ``target_mapping [B, P, L]``, ``mems_keep [B, M]``
    and the stage values ``query [B, P, H]`` (the query stream), ``keep_query`` (its
    mask), ``layer_inputs`` (each layer's content input), ``content_states [B, L, H]``."""

    mems_keep: torch.Tensor | None = None
    perm_mask: torch.Tensor | None = None
    target_mapping: torch.Tensor | None = None
    keep_query: torch.Tensor | None = None
    query: torch.Tensor | None = None
    layer_inputs: list[torch.Tensor] | None = None
    content_states: torch.Tensor | None = None


class XLNet(TransformerXL):
    """XLNet content stream (see the module docstring)."""

    rel_shift = "xlnet"
    forward_keywords = ("mems", "mems_keep", "perm_mask", "target_mapping")
    state_type = XLNetState
    default_tied = True
    model_types = ("xlnet",)
    vocab_params = ("embeddings.weight", "lm_head.weight", "lm_head.bias")

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        config.extra.setdefault("attn_type", "bi")
        super().__init__(config, **kwargs)
        # the query stream's input (two-stream attention with target_mapping)
        self.mask_emb = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    accepts_logits_to_keep = True  # the protocol call computes the next token only

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The seed-style call (see the module docstring). With ``past_key_values=`` or
        ``use_cache=True`` (deprecated) it runs :meth:`decode_step`, with a
        DeprecationWarning."""
        if "past_key_values" in kwargs or kwargs.get("use_cache"):
            warnings.warn(
                "XLNet(..., past_key_values=/use_cache=) is deprecated: call "
                "model.decode_step(input_ids, past_key_values=, attention_mask=, "
                "logits_to_keep=) for the decoder protocol's (logits, state)",
                DeprecationWarning,
                stacklevel=4,  # forward <- Module._call_impl <- Module.__call__ <- the caller
            )
            kwargs.pop("use_cache", None)
            return self.decode_step(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def decode_step(
        self,
        input_ids: torch.Tensor,
        past_key_values: XLNetDecodingState | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, XLNetDecodingState]:
        """The decoder protocol: new ids ``[B, n]`` (the prompt first, then one token per
        step) -> next-token ``logits [B, 1, V]`` and the state for the next call.

        ``attention_mask`` is ``[B, T]`` over every token so far (or ``[B, n]`` over the new
        ones); 0 marks padding. ``logits_to_keep`` is accepted for the protocol (the
        signature of :meth:`b4t.models.decoder.CausalLM.decode_step`); only the next
        token's logits are ever computed, whatever it says.
        """
        if self.lm_head is None:
            raise ValueError("XLNet generation needs the LM head: build with with_lm=True")
        past = _checked_past(past_key_values, input_ids)
        ids = input_ids if past is None else torch.cat([past.ids, input_ids], 1)
        keep = _decoding_keep(input_ids, ids, past, attention_mask)
        # after the first call, the last two tokens are re-read over the memory of the
        # positions before them (transformers' prepare_inputs_for_generation)
        start = 0 if past is None else past.seq_len - 1
        mems = None if past is None else [m[:, :-2] for m in past.mems]
        run = self.parse_inputs((), _dummy_query_inputs(ids, keep, start, mems))
        run = self.apply_main_layers(self.apply_embeddings(run))
        logits = self.apply_final_layers(run)[1]
        new_mems = [
            h.detach() if m is None else torch.cat([m, h.detach()], 1)
            for m, h in zip(mems or [None] * len(run.layer_inputs), run.layer_inputs)
        ]
        return logits, XLNetDecodingState(ids, keep, new_mems)

    def normalise_config(self, config: ModelConfig, name: str) -> None:
        super().normalise_config(config, name)
        _from_raw(config, "d_inner", "intermediate_size", int)
        _from_raw(config, "ff_activation", "hidden_act")
        _from_raw(config, "dropout", "hidden_dropout_prob", float)
        _from_raw(config, "dropout", "attention_probs_dropout_prob", float)

    def check_attn_type(self, name: str) -> None:
        if self.attn_type not in ("bi", "uni"):
            raise ValueError(
                f"model={name!r}: attn_type must be 'bi' or 'uni', got {self.attn_type!r}"
            )

    def position_sequence(self, qlen: int, klen: int, device: torch.device) -> torch.Tensor:
        """``K .. -Q+1`` (``'bi'``) or ``K .. 0`` (``'uni'``), clamped to ``±clamp_len``."""
        end = -qlen if self.attn_type == "bi" else -1
        pos = torch.arange(klen, end, -1, device=device)
        if self.clamp_len > 0:
            pos = pos.clamp(-self.clamp_len, self.clamp_len)
        return pos

    def keep_mask(self, state: XLNetState, qlen: int, mlen: int) -> torch.Tensor | None:
        """The content stream's ``[B, 1, Q, K]`` bool mask: memory and real tokens are
        visible, padding (and ``perm_mask [B, Q, Q]``, 1 = hidden) only to itself; ``'uni'``
        adds the causal limit. None when nothing is masked. The query stream's mask (the
        same without the own-position exception) goes to ``state.keep_query``."""
        token_ids = state.token_ids
        given = state.attention_mask
        real = token_ids.ne(self.token_pad_ids) if given is None else given.bool()
        perm = state.perm_mask
        causal = super().keep_mask(state, qlen, mlen) if self.attn_type == "uni" else None
        state.keep_query = None
        mem_keep_given = state.mems_keep
        if (
            causal is None
            and perm is None
            and bool(real.all())
            and (mem_keep_given is None or bool(mem_keep_given.all()))
        ):
            return None
        batch, device = token_ids.shape[0], token_ids.device
        mem_keep = state.mems_keep
        if mem_keep is None:
            mem_keep = real.new_ones(batch, mlen)
        keys = torch.cat([mem_keep.bool(), real], dim=1)  # [B, K]
        blocked = ~keys[:, None, None, :]
        if perm is not None:
            if tuple(perm.shape) != (batch, qlen, qlen):
                raise ValueError(
                    f"perm_mask must be [batch, seq_len, seq_len] = {(batch, qlen, qlen)}, "
                    f"got {tuple(perm.shape)}"
                )
            hidden = torch.cat([perm.new_zeros(batch, qlen, mlen), perm], dim=-1).bool()
            blocked = blocked | hidden[:, None]
        if causal is not None:
            blocked = blocked | ~causal
        i = torch.arange(qlen, device=device)[:, None]
        j = torch.arange(qlen + mlen, device=device)[None, :]
        state.keep_query = ~blocked
        return ~blocked | (j == i + mlen)[None, None]

    def apply_embeddings(self, state: XLNetState) -> XLNetState:
        """Also the query stream: ``mask_emb`` once per row of ``target_mapping``."""
        state = super().apply_embeddings(state)
        mapping = state.target_mapping
        state.query = None
        if mapping is not None:
            batch, qlen = state.token_ids.shape
            if mapping.dim() != 3 or mapping.shape[0] != batch or mapping.shape[2] != qlen:
                raise ValueError(
                    f"target_mapping must be [batch, num_predict, seq_len] with batch {batch} "
                    f"and seq_len {qlen}, got {tuple(mapping.shape)}"
                )
            hidden = state.hidden_states
            query = self.mask_emb.to(hidden.dtype).expand(batch, mapping.shape[1], -1)
            state.query = self.dropout(query)
            state.target_mapping = mapping.to(hidden.dtype)
        return state

    def apply_main_layers(self, state: XLNetState) -> XLNetState:
        """Two streams when ``target_mapping`` is given: the hidden states returned are
        then the query stream's ``[B, P, H]`` (one per predicted token), as transformers."""
        if state.query is None:
            return super().apply_main_layers(state)
        hidden, query, mems = state.hidden_states, state.query, state.mems
        layer_inputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            layer_inputs.append(hidden)
            hidden, query = layer.forward_two_stream(
                hidden,
                query,
                state.target_mapping,
                state.pos_emb,
                state.keep,
                state.keep_query,
                state.seg_mat,
                None if mems is None else mems[i],
            )
        if self.mem_len > 0:
            self.mems = self.next_mems(mems, layer_inputs)
        state.layer_inputs = layer_inputs  # each layer's content input (decode_step's mems)
        state.content_states = self.dropout(hidden)
        state.hidden_states = self.dropout(query)
        state.encoded_layers = None
        return state


def xlnet_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' XLNet names under ``transformer.`` (and the head ``lm_loss``)."""
    n = config.num_attention_heads
    att = "transformer.layer.{i}.rel_attn"
    mapping: dict[str, WeightSource] = {
        "embeddings.weight": "transformer.word_embedding.weight",
        "mask_emb": "transformer.mask_emb",
        "layers.{i}.layerNorm1.weight": f"{att}.layer_norm.weight",
        "layers.{i}.layerNorm1.bias": f"{att}.layer_norm.bias",
        "layers.{i}.feedForward.intermediate.weight": "transformer.layer.{i}.ff.layer_1.weight",
        "layers.{i}.feedForward.intermediate.bias": "transformer.layer.{i}.ff.layer_1.bias",
        "layers.{i}.feedForward.output.weight": "transformer.layer.{i}.ff.layer_2.weight",
        "layers.{i}.feedForward.output.bias": "transformer.layer.{i}.ff.layer_2.bias",
        "layers.{i}.layerNorm2.weight": "transformer.layer.{i}.ff.layer_norm.weight",
        "layers.{i}.layerNorm2.bias": "transformer.layer.{i}.ff.layer_norm.bias",
        "lm_head.weight": "lm_loss.weight",
        "lm_head.bias": "lm_loss.bias",
    }
    for name in ("q", "k", "v", "r", "o"):
        mapping[f"layers.{{i}}.multiHeadAttention.{name}.weight"] = HeadProjection(
            (f"{att}.{name}",), heads=n, output=name == "o"
        )
    for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
        mapping[f"layers.{{i}}.multiHeadAttention.{name}"] = f"{att}.{name}"
    return mapping


register_variant(
    Variant(
        name="xlnet",
        prefix="transformer",
        weight_map=xlnet_weight_map,
        preset={"type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 5},
        model_cls=XLNet,
        optional_keys=(r"^lm_loss\.weight$",),
        description="XLNet content stream (relative positions, segment term; HF XLNetLMHeadModel)",
    )
)
