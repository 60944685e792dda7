"""Transformer-XL (``model='transformer_xl'``) in bert4torch 0.2.5's checkpoint layout.

Relative sinusoid positions with learned biases (``r_w_bias``, ``r_r_bias``),
an optional memory of earlier segments, an optional adaptive input embedding, and a
causal mask. Checkpoint names are the ones 0.2.5's ``Transformer_XL`` holds (and loads
one to one): ``embeddings.weight`` (or ``embeddings.emb_layers.{j}.weight`` /
``embeddings.emb_projs.{j}`` with ``adaptive_embedding=True``),
``encoderLayer.{i}.multiHeadAttention.{q,k,v,r,o}.weight`` and ``.r_w_bias`` /
``.r_r_bias`` (per layer: 0.2.5's layers hold copies of the biases even without
``untie_r``, and read only those; its model-level ``r_w_bias`` / ``r_r_bias`` are unused),
``encoderLayer.{i}.layerNorm1/2``, ``encoderLayer.{i}.feedForward.intermediateDense /
outputDense``, ``dense`` (``with_lm=True``).

Memory: ``out = model([token_ids], mems=model.mems)`` attends to the stored hidden
states of the previous call (one ``[B, M, H]`` tensor per layer, at most ``mem_len``
positions, kept in ``model.mems`` after every call when ``mem_len > 0``). Without
``mems`` a call starts with no memory.

Build options (keyword or config key): ``mem_len`` (0), ``same_length`` (False),
``clamp_len`` (-1), ``untie_r`` (accepted, no effect, as in 0.2.5), ``pre_lnorm``
(False), ``adaptive_embedding`` (False) with ``cutoffs``, ``div_val``,
``sample_softmax``, ``with_lm`` (False: an untied ``dense`` head; the call then returns
``[hidden, logits]``), ``attn_type`` (``0``/``'uni'``, causal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from b4t.layers import AdaptiveEmbedding
from b4t.layers.linear import linear
from b4t.layers.xlnet import XlnetLayer, XlnetPositionsEncoding
from b4t.models.config import ModelConfig
from b4t.models.forward_state import ForwardState
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.weight_map import WeightSource

__all__ = ["LmHead", "TransformerXL", "transformer_xl_weight_map"]

# build options of the XL family: (name, default); read from the keywords, else config.json
XL_OPTIONS: dict[str, Any] = {
    "mem_len": 0,
    "same_length": False,
    "clamp_len": -1,
    "untie_r": False,
    "pre_lnorm": False,
    "adaptive_embedding": False,
    "cutoffs": (),
    "div_val": 1,
    "sample_softmax": False,
    "with_lm": False,
    "attn_type": 0,
    "bi_data": False,
}


class LmHead(nn.Module):
    """``logits = hidden @ W.T + bias``; ``W`` is this module's ``weight`` or, tied, the
    word table handed to ``forward(hidden [B, L, H], tied_weight [V, H] | None)``."""

    def __init__(self, hidden_size: int, vocab_size: int, tied: bool) -> None:
        super().__init__()
        self.tied = tied
        self.weight = None if tied else nn.Parameter(torch.zeros(vocab_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(
        self, hidden: torch.Tensor, tied_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        weight = self.weight if self.weight is not None else tied_weight
        return linear(hidden, weight, self.bias)


@dataclass(slots=True, eq=False)
class XLState(ForwardState):
    """:class:`ForwardState` of the XL models: ``mems`` (per layer ``[B, M, H]``, the
    memory), ``mlen`` (M), ``pos_emb [M + L, H]`` (the relative position table),
    ``seg_mat [B, L, M + L]`` (1 where two segments differ, None without segment ids),
    ``keep [B | 1, 1, L, M + L]`` (bool, the attention mask; None: nothing masked)."""

    mems: list[torch.Tensor] | None = None
    mlen: int = 0
    pos_emb: torch.Tensor | None = None
    seg_mat: torch.Tensor | None = None
    keep: torch.Tensor | None = None


class TransformerXL(Transformer):
    """Transformer-XL encoder stack; returns ``[B, L, H]`` (``[hidden, logits]`` with
    ``with_lm``). Inputs: ``model([token_ids])`` (``[token_ids, segment_ids]`` when a
    segment vocabulary is configured), keywords ``mems=`` and ``attention_mask=``.
    """

    forward_keywords: tuple[str, ...] = ("mems",)
    state_type = XLState
    prefix_reuse = False  # its stages run with a memory of their own, not the KV cache

    rel_shift = "transformer_xl"
    default_tied = False
    model_types: tuple[str, ...] = ("transfo-xl", "transformer_xl")
    # keep_tokens / compound_tokens select rows of these (0.2.5 refuses them here)
    vocab_params: tuple[str, ...] = ("embeddings.weight", "lm_head.weight", "lm_head.bias")

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        name = getattr(kwargs.get("variant"), "name", type(self).__name__)
        self.normalise_config(config, name)
        opts = {k: kwargs.pop(k, config.extra.get(k, v)) for k, v in XL_OPTIONS.items()}
        for flag in ("with_pool", "with_nsp", "with_mlm"):
            if kwargs.get(flag):
                raise TypeError(f"model={name!r} takes no {flag} head (use with_lm=True)")
        tie = kwargs.pop("tie_emb_prj_weight", None)
        self._opts = opts  # read by build_embeddings / build_layer during super().__init__
        super().__init__(config, **kwargs)
        self.mem_len = int(opts["mem_len"] or 0)
        self.same_length = bool(opts["same_length"])
        self.clamp_len = int(opts["clamp_len"] if opts["clamp_len"] is not None else -1)
        self.attn_type = opts["attn_type"]
        if opts["bi_data"]:
            raise ValueError(f"model={name!r}: bi_data=True (pre-training only) is not supported")
        self.check_attn_type(name)
        self.pos_embeddings = XlnetPositionsEncoding(config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        if tie is None:
            tie = bool(config.raw.get("tie_word_embeddings", self.default_tied))
        if tie and opts["adaptive_embedding"]:
            raise ValueError("a tied LM head needs a plain embedding (adaptive_embedding=False)")
        self.with_lm = bool(opts["with_lm"])
        self.lm_head = (
            LmHead(config.hidden_size, config.vocab_size, tied=tie) if self.with_lm else None
        )
        self.mems: list[torch.Tensor] | None = None

    # ---- config ------------------------------------------------------------------------
    def normalise_config(self, config: ModelConfig, name: str) -> None:
        """Refuse another architecture's config.json (its ``model_type``)."""
        model_type = config.raw.get("model_type")
        if model_type and model_type not in self.model_types:
            raise ValueError(
                f"{config.source} is a {model_type!r} config but this is model={name!r} "
                f"(accepts model_type {', '.join(self.model_types)}): wrong model= for the "
                "checkpoint?"
            )

    def check_attn_type(self, name: str) -> None:
        if self.attn_type not in (0, "uni"):
            raise ValueError(f"model={name!r} is causal: attn_type must be 0 or 'uni'")

    # ---- construction ------------------------------------------------------------------
    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        c, opts = self.config, self._opts
        if layer_add_embs:
            raise ValueError("layer_add_embs is not supported by the XL models")
        if opts["adaptive_embedding"]:
            return AdaptiveEmbedding(
                c.vocab_size,
                c.embedding_dim,
                c.hidden_size,
                list(opts["cutoffs"] or []),
                int(opts["div_val"]),
                opts["sample_softmax"],
            )
        if c.embedding_dim != c.hidden_size:
            raise ValueError(
                f"embedding_size {c.embedding_dim} != hidden_size {c.hidden_size} needs "
                "adaptive_embedding=True (its projection)"
            )
        return nn.Embedding(c.vocab_size, c.hidden_size)

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        c = self.config
        return XlnetLayer(
            c.hidden_size,
            c.num_attention_heads,
            c.hidden_dropout_prob,
            c.attention_probs_dropout_prob,
            c.intermediate_size,
            c.hidden_act,
            pre_lnorm=bool(self._opts["pre_lnorm"]),
            layer_norm_eps=c.layer_norm_eps,
            segment_vocab_size=self.segment_vocab_size,
            own_biases=True,
            rel_shift=self.rel_shift,
        )

    # ---- forward -----------------------------------------------------------------------
    def position_sequence(self, qlen: int, klen: int, device: torch.device) -> torch.Tensor:
        """Relative distances of the position table rows: ``K-1 .. 0``."""
        pos = torch.arange(klen - 1, -1, -1, device=device)
        return pos.clamp(max=self.clamp_len) if self.clamp_len > 0 else pos

    def keep_mask(self, state: XLState, qlen: int, mlen: int) -> torch.Tensor | None:
        """``[1, 1, Q, K]`` bool: query ``i`` (key ``mlen + i``) sees the memory and the keys
        up to itself; with ``same_length`` every query sees the same number of keys, the
        ``mem_len`` up to itself while ``K > mem_len`` (Transformer-XL's formula)."""
        klen = qlen + mlen
        device = state.token_ids.device
        i = torch.arange(qlen, device=device)[:, None]
        j = torch.arange(klen, device=device)[None, :]
        keep = j <= i + mlen
        if self.same_length:
            span = klen - self.mem_len
            shift = qlen - span if span > 0 else qlen
            keep = keep & (j > i - shift)
        return keep[None, None]

    def apply_embeddings(self, state: XLState) -> XLState:
        """Stage 1: checks, the memory, the embeddings, relative positions, segments, mask."""
        token_ids: torch.Tensor = state.token_ids
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must be [batch, seq_len], got {tuple(token_ids.shape)}")
        if token_ids.numel() and int(token_ids.max()) >= self.config.vocab_size:
            raise ValueError(
                f"token id {int(token_ids.max())} is outside the vocabulary "
                f"(size {self.config.vocab_size})"
            )
        batch, qlen = token_ids.shape
        mems = state.mems
        if mems is not None:
            mems = list(mems)
            if len(mems) < self.config.num_hidden_layers:
                raise ValueError(
                    f"mems holds {len(mems)} tensors, the model has "
                    f"{self.config.num_hidden_layers} layers"
                )
            if mems[0].shape[0] != batch:
                raise ValueError(
                    f"mems are for a batch of {mems[0].shape[0]}, token_ids for {batch}"
                )
        mlen = mems[0].shape[1] if mems else 0
        state.mems, state.mlen = mems, mlen
        hidden = self.dropout(self.embeddings(token_ids))
        pos = self.position_sequence(qlen, qlen + mlen, token_ids.device)
        state.pos_emb = self.dropout(self.pos_embeddings(pos).to(hidden.dtype))
        segment_ids = state.segment_ids
        seg_mat = None
        if segment_ids is not None and self.segment_vocab_size > 0:
            if segment_ids.shape != token_ids.shape:
                raise ValueError(
                    f"segment_ids shape {tuple(segment_ids.shape)} differs from token_ids "
                    f"shape {tuple(token_ids.shape)}"
                )
            past = segment_ids.new_zeros(batch, mlen)
            all_ids = torch.cat([past, segment_ids], dim=1)
            seg_mat = (segment_ids[:, :, None] != all_ids[:, None, :]).long()
        state.seg_mat = seg_mat
        state.keep = self.keep_mask(state, qlen, mlen)
        state.hidden_states = hidden
        return state

    def apply_main_layers(self, state: XLState) -> XLState:
        """Stage 2: the layers over the memory (which they update when ``mem_len > 0``)."""
        hidden = state.hidden_states
        mems = state.mems
        layer_inputs: list[torch.Tensor] = []
        all_layers = [hidden] if self.output_all_encoded_layers else None
        use_ckpt = self.gradient_checkpoint and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            layer_inputs.append(hidden)
            args = (
                hidden,
                state.seg_mat,
                state.pos_emb,
                state.keep,
                None if mems is None else mems[i],
            )
            hidden = (
                activation_checkpoint(layer, *args, use_reentrant=False)
                if use_ckpt
                else layer(*args)
            )
            if all_layers is not None:
                all_layers.append(hidden)
        if self.mem_len > 0:
            self.mems = self.next_mems(mems, layer_inputs)
        hidden = self.dropout(hidden)
        if all_layers is not None:
            all_layers[-1] = hidden
        state.hidden_states = hidden
        state.encoded_layers = all_layers
        return state

    def next_mems(
        self, mems: list[torch.Tensor] | None, layer_inputs: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Each layer's input of this call after its memory, the last ``mem_len`` steps."""
        out = []
        for i, h in enumerate(layer_inputs):
            full = h if mems is None else torch.cat([mems[i].to(h.dtype), h], dim=1)
            out.append(full[:, -self.mem_len :].detach())
        return out

    def apply_final_layers(self, state: XLState) -> Any:
        """Stage 3: the hidden states, with ``with_lm`` also the logits."""
        hidden = state.hidden_states
        first = state.encoded_layers if self.output_all_encoded_layers else hidden
        if self.lm_head is None:
            return first
        tied = self.embeddings.weight if self.lm_head.tied else None
        return [first, self.lm_head(hidden, tied)]

    # ---- loading -----------------------------------------------------------------------
    def tied_parameters(self) -> dict[str, str]:
        if self.lm_head is not None and self.lm_head.tied:
            return {"lm_head.weight": "embeddings.weight"}
        return {}


def transformer_xl_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """bert4torch 0.2.5's own ``Transformer_XL`` parameter names."""
    mapping: dict[str, WeightSource] = {}
    for name in model.embeddings.state_dict():
        mapping[f"embeddings.{name}"] = f"embeddings.{name}"
    seed = "encoderLayer.{i}"
    att = f"{seed}.multiHeadAttention"
    for name in ("q", "k", "v", "r", "o"):
        mapping[f"layers.{{i}}.multiHeadAttention.{name}.weight"] = f"{att}.{name}.weight"
    for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
        mapping[f"layers.{{i}}.multiHeadAttention.{name}"] = f"{att}.{name}"
    for b4t, src in (
        ("layerNorm1", "layerNorm1"),
        ("layerNorm2", "layerNorm2"),
        ("feedForward.intermediate", "feedForward.intermediateDense"),
        ("feedForward.output", "feedForward.outputDense"),
    ):
        for p in ("weight", "bias"):
            mapping[f"layers.{{i}}.{b4t}.{p}"] = f"{seed}.{src}.{p}"
    mapping["lm_head.weight"] = "dense.weight"
    mapping["lm_head.bias"] = "dense.bias"
    return mapping


register_variant(
    Variant(
        name="transformer_xl",
        prefix="",
        weight_map=transformer_xl_weight_map,
        preset={"type_vocab_size": 0, "layer_norm_eps": 1e-12},
        model_cls=TransformerXL,
        # 0.2.5 also holds model-level r_w_bias / r_r_bias that no layer reads
        optional_keys=(r"(^|\.)inv_freq$", r"^r_[wrs]_bias$"),
        description="Transformer-XL (relative positions, memory, adaptive embedding; "
        "bert4torch 0.2.5's layout)",
    ),
    "transfo_xl",
)
