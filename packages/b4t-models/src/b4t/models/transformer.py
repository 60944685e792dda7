"""The config-driven transformer: embeddings -> main layers -> final layers.

One class covers the BERT family; a variant subclasses it only where the graph differs
(see :mod:`b4t.models.registry`). Checkpoint loading lives in :mod:`b4t.models.loading`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from b4t.layers import (
    Embeddings,
    LayerNorm,
    MultiHeadAttention,
    TransformerBlock,
    attention_mask,
)
from b4t.layers.rotary import RotaryAttention
from b4t.models.config import ModelConfig
from b4t.models.heads import MlmHead, Pooler
from b4t.models.kv_cache import KVCache
from b4t.models.prefix_reuse import (
    Merger,
    Premise,
    extend_outputs,
    reuse_or_run,
    select_and_extend,
    select_rows,
)
from b4t.models.weight_map import FirstOf, WeightSource, expand_weight_map

__all__ = ["SkippedLayer", "Transformer", "hierarchical_positions"]


def hierarchical_positions(table: torch.Tensor, size: int, alpha: float = 0.4) -> torch.Tensor:
    """Extend a learned position table ``[n, E]`` to ``[size, E]`` (hierarchical decomposition).

    With ``u = (table - alpha * table[0]) / (1 - alpha)``, position ``p`` gets
    ``alpha * u[p // n] + (1 - alpha) * u[p % n]`` (Su, 2020; bert4torch's
    ``hierarchical_position``); the first ``n`` rows equal ``table``.
    """
    n = table.shape[0]
    if size > n * n:
        raise ValueError(f"hierarchical_position extends {n} positions to at most {n * n}")
    u = (table - alpha * table[:1]) / (1 - alpha)
    pos = torch.arange(size, device=table.device)
    return alpha * u[pos // n] + (1 - alpha) * u[pos % n]


def _conditional_size(module: nn.Module | None) -> int | None:
    """Width of the condition ``layer_norm_cond`` produces (its weight's second dim, as 0.2.5)."""
    if module is None:
        return None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(
            "layer_norm_cond must be a module with a 2-D weight (nn.Embedding, nn.Linear), "
            f"got {type(module).__name__}"
        )
    return int(weight.shape[1])


def _head_activation(flag: bool | str, default: str) -> str:
    """``True`` -> the head's default activation; a string names one (``'linear'``: none)."""
    return default if flag is True else str(flag)


APPLICATIONS = ("encoder", "lm", "unilm")


class SkippedLayer(nn.Module):
    """A layer left out by ``keep_hidden_layers``: returns its input unchanged.

    ``forward(x [B, L, H], ...)`` -> ``(x, None, None)``, the block protocol.
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[Any, None, None]:
        return x, None, None


class _EmbeddingNorm(LayerNorm):
    """The embedding LayerNorm of a conditional model: takes its ``cond`` from the model.

    :class:`b4t.layers.Embeddings` calls its norm with one argument; the model sets
    ``pending_cond`` for the duration of one embedding call.
    """

    pending_cond: torch.Tensor | None = None

    def forward(self, x: Any, cond: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, cond if cond is not None else self.pending_cond)


class Transformer(nn.Module):
    """BERT-family encoder with optional pool / NSP / MLM heads.

    Call it with the seed's list ``model([token_ids, segment_ids, *more])``, with
    positional tensors, or with keywords (``token_ids``/``input_ids``,
    ``segment_ids``/``token_type_ids``, ``attention_mask``, ``position_ids``,
    ``conditional_ids``, ``extra_ids``). Positional inputs follow bert4torch 0.2.5's
    order: token ids, segment ids (if ``segment_vocab_size > 0``), position ids (if
    ``custom_position_ids``), the ``[B, L]`` keep mask (if ``custom_attention_mask``),
    the ``layer_norm_cond`` input (if any), then one id tensor per ``layer_add_embs``.

    Returns the hidden states ``[B, L, H]`` (with ``output_all_encoded_layers`` the list
    of ``L + 1`` tensors: the embedding output first, then each layer's); with heads,
    the list ``[hidden_states, pooled [B, H], mlm_scores [B, L, V], nsp_scores [B, 2]]``
    holding only the parts asked for, in that order.

    Build options with bert4torch 0.2.5's meanings: ``with_pool`` (True: tanh, or an
    activation name, ``'linear'`` for none), ``with_mlm`` (True: logits, or an
    activation name such as ``'softmax'``), ``with_nsp`` (turns the pooler on),
    ``keep_hidden_layers`` (indices of layers to keep; the others pass their input
    through), ``layer_norm_cond`` (a module mapping the extra input to the condition of
    every LayerNorm: conditional LayerNorm), ``shared_segment_embeddings`` (segment ids
    looked up in the word table), ``token_pad_ids`` (the id masked as padding; default
    the config's ``pad_token_id``), ``is_dropout`` (dropout inside the feed-forward),
    ``tie_emb_prj_weight`` (True: the MLM decoder is the word-embedding table; by
    default, as 0.2.5, it is its own ``mlm.decoder.weight``, loaded from the checkpoint's
    decoder or, where the file keeps it tied, a copy of the embeddings), ``hierarchical_position``
    (extend a learned position table by hierarchical decomposition at load time, alpha
    0.4 for ``True``), ``attention_scale`` (False: scores not divided by
    ``sqrt(head_size)``; plain and rotary attention only). ``residual_attention_scores``
    and ``sequence_length`` are accepted and, as in 0.2.5, change nothing.
    """

    # the class of the main stack's layers (TransformerBlock's arguments; GPT2-ML's order)
    block_cls: type[nn.Module] = TransformerBlock
    # keyword inputs of forward() beyond the common ones (token_ids, segment_ids, ...)
    forward_keywords: tuple[str, ...] = ("task_type_ids",)
    # b4t parameter names that are indexed by the vocabulary (keep_tokens, compound_tokens)
    vocab_params: tuple[str, ...] = (
        "embeddings.word_embeddings.weight",
        "mlm.bias",
        "mlm.decoder.weight",
    )

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        segment_vocab_size: int | None = None,
        with_pool: bool | str = False,
        with_nsp: bool = False,
        with_mlm: bool | str = False,
        output_all_encoded_layers: bool = False,
        layer_add_embs: Sequence[nn.Module] | nn.Module | None = None,
        gradient_checkpoint: bool = False,
        variant: Any = None,
        custom_position_ids: bool = False,
        custom_attention_mask: bool = False,
        shared_segment_embeddings: bool = False,
        layer_norm_cond: nn.Module | None = None,
        keep_hidden_layers: Sequence[int] | None = None,
        hierarchical_position: bool | float | None = None,
        token_pad_ids: int | None = None,
        is_dropout: bool = False,
        tie_emb_prj_weight: bool | None = None,
        residual_attention_scores: bool = False,
        sequence_length: int | None = None,
        attention_scale: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.attention_scale = attention_scale
        if kwargs:
            name = getattr(variant, "name", type(self).__name__)
            raise TypeError(
                f"unknown keyword argument(s) for model={name!r}: {', '.join(sorted(kwargs))} "
                "(neither a build option nor a ModelConfig field)"
            )
        application = str(application).lower()
        if application not in APPLICATIONS:
            raise ValueError(f"unknown application={application!r}; use one of {APPLICATIONS}")
        self.config = config
        self.variant = variant
        self.application = application
        self._prefix_reusable: bool | None = None  # found at the first reusable call
        self.segment_vocab_size = (
            config.type_vocab_size if segment_vocab_size is None else segment_vocab_size
        )
        self.with_pool = with_pool or with_nsp
        self.with_nsp = with_nsp
        self.with_mlm = with_mlm
        self.output_all_encoded_layers = output_all_encoded_layers
        self.gradient_checkpoint = gradient_checkpoint
        self.custom_position_ids = custom_position_ids
        self.custom_attention_mask = custom_attention_mask
        self.shared_segment_embeddings = shared_segment_embeddings
        self.token_pad_ids = config.pad_token_id if token_pad_ids is None else token_pad_ids
        self.is_dropout = is_dropout
        self.residual_attention_scores = residual_attention_scores  # no effect, as in 0.2.5
        self.sequence_length = sequence_length  # no effect, as in 0.2.5
        self.hierarchical_position = hierarchical_position
        # 0.2.5's default: the MLM decoder is its own weight, loaded from the checkpoint's
        # decoder (or, where the file stores it tied, the word embeddings) and trained
        # apart; tie_emb_prj_weight=True shares the embedding table instead
        self.tie_word_embeddings = bool(tie_emb_prj_weight)
        n_layers = config.num_hidden_layers
        self.keep_hidden_layers = (
            set(range(n_layers)) if keep_hidden_layers is None else set(keep_hidden_layers)
        )
        bad = sorted(i for i in self.keep_hidden_layers if not 0 <= int(i) < n_layers)
        if bad:
            raise ValueError(f"keep_hidden_layers holds {bad}, outside 0..{n_layers - 1}")
        if config.share_layers and keep_hidden_layers is not None:
            raise ValueError("keep_hidden_layers needs unshared layers (not model='albert')")
        self.layer_norm_cond = layer_norm_cond
        self.conditional_size = _conditional_size(layer_norm_cond)
        self.n_add_embs = (
            1
            if isinstance(layer_add_embs, nn.Module)
            and not isinstance(layer_add_embs, nn.ModuleList)
            else len(layer_add_embs or [])
        )

        self.embeddings = self.build_embeddings(layer_add_embs)
        if self.conditional_size and getattr(self.embeddings, "layer_norm", None) is not None:
            old = self.embeddings.layer_norm
            self.embeddings.layer_norm = _EmbeddingNorm(
                old.hidden_size,
                old.eps,
                self.conditional_size,
                weight=old.weight is not None,
                bias=old.bias is not None,
                norm_mode=old.norm_mode,
            )
        word = getattr(self.embeddings, "word_embeddings", None)
        if isinstance(word, nn.Embedding) and 0 <= self.token_pad_ids < word.num_embeddings:
            # as 0.2.5 (nn.Embedding(padding_idx=token_pad_ids)): the padding row gets no
            # gradient; its loaded values are kept
            word.padding_idx = self.token_pad_ids
        if shared_segment_embeddings:
            self.embeddings.segment_embeddings = self.embeddings.word_embeddings
        n_unique = 1 if config.share_layers else n_layers
        self.layers = nn.ModuleList(
            self.build_layer(i) if i in self.keep_hidden_layers else SkippedLayer()
            for i in range(n_unique)
        )
        if not attention_scale:
            self._unscale_attention()
        # application='lm' without padding: SDPA's causal path (is_causal), no mask tensor,
        # where every layer's attention runs MultiHeadAttention.forward (which honours it)
        atts = [getattr(layer, "attention", None) for layer in self.layers]
        atts = [a for a in atts if a is not None]
        self.causal_sdpa = (
            application == "lm"
            and bool(atts)
            and all(
                isinstance(a, MultiHeadAttention) and type(a).forward is MultiHeadAttention.forward
                for a in atts
            )
        )
        if self.causal_sdpa:
            for att in atts:
                att.is_causal = True
        if is_dropout:
            for layer in self.layers:
                ffn = getattr(layer, "ffn", None)
                if ffn is not None:
                    ffn.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pooler = (
            Pooler(config.hidden_size, _head_activation(with_pool or True, "tanh"))
            if self.with_pool
            else None
        )
        self.nsp = nn.Linear(config.hidden_size, 2) if with_nsp else None
        self.mlm = (
            MlmHead(
                config.hidden_size,
                config.embedding_dim,
                config.vocab_size,
                config.mlm_hidden_act or config.hidden_act,
                config.layer_norm_eps,
                tied=self.tie_word_embeddings,
                activation=_head_activation(with_mlm, "linear"),
                conditional_size=self.conditional_size,
            )
            if with_mlm
            else None
        )

    # ---- construction hooks ------------------------------------------------------------
    def build_embeddings(self, layer_add_embs: Any = None) -> nn.Module:
        """The embedding stage; override for other position schemes."""
        c = self.config
        return Embeddings(
            c.vocab_size,
            c.embedding_dim,
            c.hidden_size,
            max_position=c.max_position_embeddings,
            segment_vocab_size=0 if self.shared_segment_embeddings else self.segment_vocab_size,
            dropout_rate=c.hidden_dropout_prob,
            layer_norm_eps=c.layer_norm_eps,
            pad_token_id=c.pad_token_id,
            position_type=c.position_type,
            roberta_positions=c.roberta_positions,
            layer_add_embs=layer_add_embs,
            task_type_vocab_size=(
                int(c.extra.get("task_type_vocab_size", 3)) if c.extra.get("use_task_id") else 0
            ),
        )

    def build_layer(self, index: int, **overrides: Any) -> nn.Module:
        """Layer ``index`` of the main stack; subclasses pass ``attention_cls=`` etc."""
        c = self.config
        kwargs: dict[str, Any] = dict(
            hidden_size=c.hidden_size,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            hidden_act=c.hidden_act,
            dropout_rate=c.hidden_dropout_prob,
            attention_dropout=c.attention_probs_dropout_prob,
            layer_norm_eps=c.layer_norm_eps,
            pre_norm=c.pre_norm,
            is_gated=c.is_gated,
            bias=c.bias,
            norm_mode=c.norm_mode,
            attention_head_size=c.attention_head_size,
        )
        if getattr(self, "conditional_size", None):
            kwargs["conditional_size"] = self.conditional_size
        kwargs.update(overrides)
        return self.block_cls(**kwargs)

    def _unscale_attention(self) -> None:
        """``attention_scale=False`` (0.2.5's option): scores are not divided by
        ``sqrt(head_size)``. Every layer's attention must take a ``scale`` (b4t's
        :class:`~b4t.layers.MultiHeadAttention` family), else the option is refused."""
        for layer in self.layers:
            if isinstance(layer, SkippedLayer):
                continue
            attention = getattr(layer, "attention", None)
            own = getattr(type(attention), "attention_scores", None)
            if not isinstance(attention, MultiHeadAttention) or (
                own is not MultiHeadAttention.attention_scores
            ):
                raise ValueError(
                    f"attention_scale=False is not supported by {self._model_name()} "
                    f"(its {type(attention).__name__} scales its scores its own way)"
                )
            attention.scale = 1.0

    def layer_sequence(self) -> list[nn.Module]:
        """The layers in call order (ALBERT repeats its shared layer)."""
        if len(self.layers) == self.config.num_hidden_layers:
            return list(self.layers)
        return [self.layers[i % len(self.layers)] for i in range(self.config.num_hidden_layers)]

    def layer_kwargs(self, state: dict[str, Any]) -> dict[str, Any]:
        """Extra keywords for every layer (relative-position tables etc.); default none."""
        return {}

    # ---- forward -----------------------------------------------------------------------
    def parse_inputs(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Normalise list / positional / keyword inputs into one dict (the seed's order)."""
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        while args and args[-1] is None:  # a trailing None is no input
            args = args[:-1]
        state: dict[str, Any] = {}
        token_ids = kwargs.pop("token_ids", kwargs.pop("input_ids", None))
        segment_ids = kwargs.pop("segment_ids", kwargs.pop("token_type_ids", None))
        position_ids = kwargs.pop("position_ids", None)
        keep = kwargs.pop("attention_mask", None)
        cond_input = kwargs.pop("conditional_ids", None)
        rest = list(args)
        if rest:
            first = rest.pop(0)
            token_ids = first if token_ids is None else token_ids
        slots = [
            ("segment", getattr(self, "segment_vocab_size", 0) > 0),
            ("position", getattr(self, "custom_position_ids", False)),
            ("mask", getattr(self, "custom_attention_mask", False)),
            ("cond", getattr(self, "layer_norm_cond", None) is not None),
        ]
        slot_names = ["token_ids"] + [
            name
            for (slot, present), name in zip(
                slots,
                ("segment_ids", "position_ids", "attention_mask", "conditional_ids"),
                strict=True,
            )
            if present
        ]
        n_extra = getattr(self, "n_add_embs", 0)
        slot_names += [f"layer_add_embs[{i}] ids" for i in range(n_extra)]
        if len(args) > len(slot_names):
            hint = "" if slots[0][1] else " (segment_vocab_size=0: no segment_ids input)"
            raise TypeError(
                f"{self._model_name()} takes {len(slot_names)} positional input(s) "
                f"({', '.join(slot_names)}) but {len(args)} were given{hint}"
            )
        unknown = sorted(set(kwargs) - set(self.forward_keywords) - {"extra_ids"})
        if unknown:
            known = ", ".join((*_INPUT_KEYWORDS, "extra_ids", *self.forward_keywords))
            raise TypeError(
                f"{self._model_name()}.forward() got unexpected keyword argument(s) "
                f"{', '.join(unknown)} (accepted: {known})"
            )
        for slot, present in slots:
            if not present or not rest:
                continue
            value = rest.pop(0)
            if slot == "segment":
                segment_ids = value if segment_ids is None else segment_ids
            elif slot == "position":
                position_ids = value if position_ids is None else position_ids
            elif slot == "mask":
                keep = value if keep is None else keep
            else:
                cond_input = value if cond_input is None else cond_input
        if token_ids is None:
            raise ValueError("no token_ids given (pass [token_ids, segment_ids] or token_ids=...)")
        state["token_ids"] = token_ids
        state["segment_ids"] = segment_ids
        state["extra_ids"] = rest + list(kwargs.pop("extra_ids", []))
        state["attention_mask"] = keep
        state["position_ids"] = position_ids
        state["conditional_ids"] = cond_input
        state.update(kwargs)
        return state

    def _model_name(self) -> str:
        return f"model={getattr(self.variant, 'name', type(self).__name__)!r}"

    def forward(self, inputs: Any = None, *args: Any, **kwargs: Any) -> Any:
        """bert4torch's ``forward(inputs)``: the list ``[token_ids, segment_ids, ...]``, or
        the tensors positionally, or keywords (see the class docstring)."""
        if inputs is not None:
            args = (inputs, *args)
        state = self.parse_inputs(args, kwargs)
        if not self.reuses_prefixes(state):
            return self.run_from(state, None, 0)
        return self.reuse_prefix(state, self.merge_outputs)

    def reuse_prefix(self, state: dict[str, Any], merge: Merger) -> Any:
        """:meth:`run_from` through the active prefix store (:func:`reuse_or_run`): over the
        positions its last call did not have when this call extends it."""
        return reuse_or_run(
            self,
            [state[k] for k in _SEQ_KEYS] + list(state["extra_ids"]),
            [state["conditional_ids"]],
            lambda cache, past: self.run_from(state, cache, past),
            merge,
            self.config.num_hidden_layers,
            premise=self.prefix_premise(state),
        )

    def prefix_premise(self, state: dict[str, Any]) -> Premise | None:
        """The mask's part of prefix reuse's premise for this call (None: causal, always
        holds). ``unilm``: query ``i`` sees key ``j`` iff ``cumsum(s)[j] <= cumsum(s)[i]``
        (:func:`b4t.layers.masks.unilm_mask`), so no position before ``past`` sees one
        from ``past`` on iff ``cumsum(s)`` grows at ``past`` in every row (the first new
        token is a target token)."""
        if self.application != "unilm":
            return None
        segment_ids = state["segment_ids"]

        def premise(past: int) -> bool:
            if segment_ids is None or past < 1:
                return False  # one bidirectional segment: every position sees the new ones
            c = torch.cumsum(segment_ids.long(), dim=1)
            return bool((c[:, past:] > c[:, past - 1 : past]).all())

        return premise

    def run_from(self, state: dict[str, Any], cache: KVCache | None, past: int) -> Any:
        """The three stages; with ``cache``, the layers and heads run for positions
        ``past..`` only (embeddings and mask are built for the whole sequence, then cut),
        the keys/values of positions ``..past`` coming from ``cache``."""
        state = self.apply_embeddings(state)
        if cache is not None:
            keep = state["attention_mask"]
            if keep is None:
                keep = state["token_ids"].ne(self.token_pad_ids)
            cache.mask = keep.bool()
            state["cache"] = cache
            if past:
                state["hidden_states"] = state["hidden_states"][:, past:]
                mask = state["mask"]
                if mask is not None and mask.shape[-2] > 1:
                    state["mask"] = mask[:, :, past:]
        state = self.apply_main_layers(state)
        return self.apply_final_layers(state)

    def reuses_prefixes(self, state: dict[str, Any]) -> bool:
        """Whether this call may reuse a decoding step's prefix (:mod:`b4t.models.prefix_reuse`):
        a causal application (``lm`` / ``unilm``), a graph that takes the KV cache
        (:meth:`prefix_graph_reusable`), and only inputs it knows how to cut."""
        if self.application not in ("lm", "unilm") or set(state) - _STATE_KEYS:
            return False
        if self._prefix_reusable is None:
            self._prefix_reusable = self.prefix_graph_reusable()
        return self._prefix_reusable

    def prefix_graph_reusable(self) -> bool:
        """Transformer's own stages and plain or rotary attention in every layer."""
        cls = type(self)
        stages = ("apply_embeddings", "apply_main_layers", "apply_final_layers")
        return all(
            getattr(cls, name) is getattr(Transformer, name)
            for name in (*stages, "layer_kwargs", "run_from", "parse_inputs")
        ) and all(
            type(layer) is SkippedLayer
            or (
                type(layer) is TransformerBlock
                and type(layer.attention) in (MultiHeadAttention, RotaryAttention)
            )
            for layer in self.layers
        )

    def merge_outputs(
        self, old: Any, new: Any, parents: torch.Tensor | None, capacity: int | None = None
    ) -> Any:
        """Outputs of a reused prefix: ``old`` (the last call's, rows ``parents``) with
        ``new`` (positions ``past..``) appended; pooled and NSP outputs (from the first
        position, which never sees a later one) are the old ones."""
        if self.pooler is None and self.mlm is None and self.nsp is None:
            return extend_outputs(old, new, parents, capacity)
        merged = [extend_outputs(old[0], new[0], parents, capacity)]
        k = 1
        for head, is_seq in ((self.pooler, False), (self.mlm, True), (self.nsp, False)):
            if head is None:
                continue
            if is_seq:
                merged.append(select_and_extend(old[k], new[k], parents, capacity))
            else:
                merged.append(select_rows(old[k], parents))
            k += 1
        return merged

    def check_segment_ids(self, token_ids: torch.Tensor, segment_ids: Any) -> None:
        """``segment_ids [B, L]``: token_ids' shape, ids in ``0..rows - 1`` of the segment
        table; given to a model without one, only as ``application='unilm'``'s mask input."""
        if segment_ids is None:
            return
        table = self.embeddings.segment_embeddings
        if table is None:
            if self.application != "unilm":
                raise ValueError(
                    f"segment_ids given but {self._model_name()} has no segment embeddings "
                    "(segment_vocab_size=0), so they would be ignored: build with "
                    "segment_vocab_size=N to use them"
                )
            return
        if segment_ids.shape != token_ids.shape:
            raise ValueError(
                f"segment_ids shape {tuple(segment_ids.shape)} differs from token_ids "
                f"shape {tuple(token_ids.shape)}"
            )
        n_seg = table.num_embeddings
        if segment_ids.numel():
            low, high = int(segment_ids.min()), int(segment_ids.max())
            if low < 0 or high >= n_seg:
                raise ValueError(
                    f"segment id {low if low < 0 else high} in segment_ids is outside the "
                    f"segment vocabulary (size {n_seg}: ids 0..{n_seg - 1})"
                )

    def apply_embeddings(self, state: dict[str, Any]) -> dict[str, Any]:
        """Stage 1: embeddings, the condition of conditional LayerNorms, the attention mask."""
        token_ids: torch.Tensor = state["token_ids"]
        self.embeddings.check_inputs(token_ids)
        segment_ids = state["segment_ids"]
        self.check_segment_ids(token_ids, segment_ids)
        cond = None
        if self.layer_norm_cond is not None:
            if state.get("conditional_ids") is None:
                raise ValueError(
                    "this model has layer_norm_cond: pass its input after the ids "
                    "(model([token_ids, segment_ids, cond_input])) or conditional_ids=..."
                )
            cond = self.layer_norm_cond(state["conditional_ids"])
        state["cond"] = cond
        extra_ids = state["extra_ids"]
        if len(extra_ids) != self.n_add_embs:
            raise ValueError(
                f"{self._model_name()} has {self.n_add_embs} layer_add_embs but "
                f"{len(extra_ids)} extra id tensors were given"
            )
        norm = getattr(self.embeddings, "layer_norm", None)
        if isinstance(norm, _EmbeddingNorm):
            norm.pending_cond = cond
        try:
            hidden = self.embeddings(
                token_ids,
                segment_ids,
                state["position_ids"],
                extra_ids,
                state.get("task_type_ids"),
            )
        finally:
            if isinstance(norm, _EmbeddingNorm):
                norm.pending_cond = None
        keep = state["attention_mask"]
        if keep is None:
            keep = token_ids.ne(self.token_pad_ids)
        keep = keep.bool()
        if self.application == "encoder" and bool(keep.all()):
            keep = None
        state["hidden_states"] = hidden
        state["mask"] = (
            None
            if self.causal_sdpa and bool(keep.all())
            else attention_mask(
                keep, self.application, segment_ids, token_ids.shape[1], hidden.dtype
            )
        )
        return state

    def apply_main_layers(self, state: dict[str, Any]) -> dict[str, Any]:
        """Stage 2: the transformer blocks.

        ``state["encoded_layers"]`` is the list of ``L + 1`` hidden states (the embedding
        output first) when ``output_all_encoded_layers``, else None.
        """
        hidden = state["hidden_states"]
        mask = state["mask"]
        extra = self.layer_kwargs(state)
        if state.get("cond") is not None:
            extra["cond"] = state["cond"]
        all_layers = [hidden] if self.output_all_encoded_layers else None
        cache: KVCache | None = state.get("cache")
        use_ckpt = self.gradient_checkpoint and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layer_sequence()):
            if cache is not None:
                hidden = layer(hidden, mask, past_key_value=cache.layers[i], **extra)[0]
            elif use_ckpt:
                hidden = activation_checkpoint(layer, hidden, mask, use_reentrant=False, **extra)[0]
            else:
                hidden = layer(hidden, mask, **extra)[0]
            if all_layers is not None:
                all_layers.append(hidden)
        state["hidden_states"] = hidden
        state["encoded_layers"] = all_layers
        return state

    def apply_final_layers(self, state: dict[str, Any]) -> Any:
        """Stage 3: pool / MLM / NSP heads."""
        hidden = state["hidden_states"]
        first: Any = state["encoded_layers"] if self.output_all_encoded_layers else hidden
        outputs: list[Any] = [first]
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(hidden)
            outputs.append(pooled)
        if self.mlm is not None:
            outputs.append(
                self.mlm(hidden, self.embeddings.word_embeddings.weight, state.get("cond"))
            )
        if self.nsp is not None:
            outputs.append(self.nsp(pooled))
        return outputs if len(outputs) > 1 else first

    # ---- loading hooks -------------------------------------------------------------------
    def tied_parameters(self) -> dict[str, str]:
        """``{b4t name: b4t name}`` of weight-map entries this model holds as another
        parameter (the tied MLM decoder is the word embedding table). A checkpoint tensor
        for the first must equal the loaded second."""
        if self.mlm is None or not getattr(self.mlm, "tied", False):
            return {}
        return {
            "mlm.decoder.weight": "embeddings.word_embeddings.weight",
            "mlm.decoder.bias": "mlm.bias",
        }

    def transform_loaded(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Change a checkpoint tensor on its way in (``hierarchical_position``)."""
        if name == "embeddings.position_embeddings.weight" and self.hierarchical_position:
            size = self.embeddings.position_embeddings.num_embeddings
            alpha = 0.4 if self.hierarchical_position is True else float(self.hierarchical_position)
            return hierarchical_positions(tensor, size, alpha)
        return tensor

    # ---- weights -----------------------------------------------------------------------
    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Without b4t-trainer: refuse the trainer's ``compile(loss=..., optimizer=...)``.

        With b4t-trainer installed the built model is a trainer and this method is
        replaced by ``b4t.trainer.BaseModel.compile`` (see
        :mod:`b4t.models.trainer_surface`). Without it, trainer arguments raise an
        ImportError saying to install b4t-trainer; keyword-only torch arguments
        (``model.compile(mode=...)``) still go to ``nn.Module.compile``.
        """
        trainer_words = {"loss", "optimizer", "scheduler", "metrics", "clip_grad_norm"}
        if args or trainer_words & set(kwargs):
            from b4t.models.trainer_surface import TRAINER_MISSING

            raise ImportError(TRAINER_MISSING)
        super().compile(**kwargs)

    def variable_mapping(self, existing_only: bool = True) -> dict[str, WeightSource]:
        """``{b4t parameter name: checkpoint key | Concat | None}`` for this model.

        Only names of parameters this model really has are returned, unless
        ``existing_only=False`` (then parts left out, e.g. heads not asked for, too).
        """
        if self.variant is None:
            return {name: name for name in self.state_dict()}
        template = self.variant.weight_map
        if callable(template):
            template = template(self.config, self)
        mapping = expand_weight_map(template, self.config.num_hidden_layers)
        if self.mlm is not None and not getattr(self.mlm, "tied", True):
            # an untied head's bias is its decoder's (transformers' untied layout), and
            # older files keep it under the tied name only
            dec_bias = mapping.pop("mlm.decoder.bias", None)
            bias = mapping.get("mlm.bias")
            if isinstance(dec_bias, str) and isinstance(bias, str):
                mapping["mlm.bias"] = FirstOf((dec_bias, bias))
            # a file saved tied has no decoder weight: start from the embeddings
            emb = mapping.get("embeddings.word_embeddings.weight")
            dec = mapping.get("mlm.decoder.weight")
            if isinstance(emb, str):
                mapping["mlm.decoder.weight"] = FirstOf((dec, emb)) if isinstance(dec, str) else emb
        if self.shared_segment_embeddings:
            # segment ids read the word table: the checkpoint's segment table is not used
            src = mapping.pop("embeddings.segment_embeddings.weight", None)
            if src is not None and not existing_only:
                mapping["unused (shared_segment_embeddings).segment_table"] = src
        if not existing_only:
            return mapping
        own = set(self.state_dict())
        return {k: v for k, v in mapping.items() if k in own}

    def load_weights(
        self,
        path: str | Path | Sequence[str | Path] | dict[str, torch.Tensor],
        strict: bool = True,
        prefix: str | None = None,
        *,
        mapping: dict[str, WeightSource] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a checkpoint (file, folder, index or state dict); see :func:`load_into`.

        bert4torch's order ``(path, strict, prefix)`` (``prefix=''``, the checkpoint
        layout, is the only prefix); ``mapping=`` is keyword only: ``None`` is the
        checkpoint layout (the weight map), ``{}`` b4t's own parameter names.
        """
        from b4t.models.loading import load_into

        _check_prefix(prefix)
        return load_into(self, path, mapping=mapping, strict=strict, **kwargs)

    def save_weights(
        self,
        path: str | Path,
        prefix: str | None = None,
        *,
        mapping: dict[str, WeightSource] | None = None,
    ) -> Path:
        """Write the weights (bert4torch's order ``(path, prefix)``; ``mapping=`` is keyword
        only): ``mapping=None`` the checkpoint layout (loads in transformers),
        ``mapping={}`` b4t's own names. See :func:`save_from`."""
        from b4t.models.loading import save_from

        _check_prefix(prefix)
        return save_from(self, path, mapping=mapping)

    def save_pretrained(
        self, path: str | Path, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """The checkpoint layout, explicitly: a folder with ``model.safetensors`` (and
        ``config.json``) that transformers loads, or one ``.safetensors`` / ``.bin`` file.
        (With b4t-trainer installed, ``save_weights(path)`` writes bert4torch 0.2.5's
        single state-dict file instead.)"""
        return Transformer.save_weights(self, path, mapping=mapping)


# inputs aligned with the tokens ([B, L]) that a reused prefix cuts, and every state key
# a reusable call may carry
_SEQ_KEYS = ("token_ids", "segment_ids", "position_ids", "attention_mask")
_INPUT_KEYWORDS = (
    "token_ids",
    "input_ids",
    "segment_ids",
    "token_type_ids",
    "position_ids",
    "attention_mask",
    "conditional_ids",
)
_STATE_KEYS = frozenset((*_SEQ_KEYS, "extra_ids", "conditional_ids"))


def _check_prefix(prefix: str | None) -> None:
    if prefix not in (None, ""):
        raise ValueError(
            f"prefix={prefix!r}: a built b4t model has no sub-model to prefix; prefix='' "
            "(the checkpoint layout) is the default here"
        )
