"""The config-driven transformer: embeddings -> main layers -> final layers.

One class covers the BERT family; a variant subclasses it only where the graph differs
(see :mod:`b4t.models.registry`). The stages hand each other a typed
:class:`~b4t.models.forward_state.ForwardState` (``state_type``); inputs are read by
:mod:`b4t.models.inputs`; checkpoint loading lives in :mod:`b4t.models.loading`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from b4t.layers import (
    Embeddings,
    MultiHeadAttention,
    TransformerBlock,
    attention_mask,
)
from b4t.layers.rotary import RotaryAttention
from b4t.models import inputs
from b4t.models.config import ModelConfig
from b4t.models.forward_state import ForwardState
from b4t.models.heads import MlmHead, Pooler
from b4t.models.inputs import SEQ_INPUTS
from b4t.models.kv_cache import KVCache
from b4t.models.prefix_reuse import (
    PREFIX_STAGES,
    Merger,
    Premise,
    merge_head_outputs,
    reuse_or_run,
    unilm_premise,
)
from b4t.models.transformer_parts import (
    APPLICATIONS,
    EmbeddingNorm,
    SkippedLayer,
    checked_application,
    conditional_size,
    count_modules,
    head_activation,
    hierarchical_positions,
    kept_layers,
    refuse_unknown_options,
    unscale_attention,
)
from b4t.models.weight_map import WeightSource, model_weight_map

__all__ = ["APPLICATIONS", "SkippedLayer", "Transformer", "hierarchical_positions"]


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
    # keyword inputs of forward() beyond the common ones (token_ids, segment_ids, ...);
    # each is a field of state_type
    forward_keywords: tuple[str, ...] = ("task_type_ids",)
    # the typed state the forward stages hand each other (a subclass declares its own
    # ForwardState subclass when its stages need more names)
    state_type: ClassVar[type[ForwardState]] = ForwardState
    # b4t parameter names that are indexed by the vocabulary (keep_tokens, compound_tokens)
    vocab_params: tuple[str, ...] = (
        "embeddings.word_embeddings.weight",
        "mlm.bias",
        "mlm.decoder.weight",
    )
    # Prefix reuse (b4t.models.prefix_reuse): this class's stages can run the positions
    # past.. of a causal call over a KV cache (run_from), so a seed-style decoding step
    # that re-reads the whole sequence runs its new tokens only (application 'lm' /
    # 'unilm', inside a PrefixStore, and only where every layer takes the cache:
    # layers_take_kv_cache). Each class that overrides one of PREFIX_STAGES states its
    # own value; one that does not is given False by __init_subclass__.
    prefix_reuse: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that overrides a stage prefix reuse runs (:data:`PREFIX_STAGES`)
        without stating ``prefix_reuse`` in its own body does not reuse prefixes: the
        reuse premise (the stages take the cache and cut the inputs) is not known to
        hold for its stages."""
        super().__init_subclass__(**kwargs)
        if "prefix_reuse" not in cls.__dict__ and any(s in cls.__dict__ for s in PREFIX_STAGES):
            cls.prefix_reuse = False

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
        refuse_unknown_options(kwargs, getattr(variant, "name", type(self).__name__))
        self.config, self.variant = config, variant
        self.application = checked_application(application)
        self._prefix_layers_ok: bool | None = None  # found at the first reusable call
        self.segment_vocab_size = (
            config.type_vocab_size if segment_vocab_size is None else segment_vocab_size
        )
        self.with_pool, self.with_nsp, self.with_mlm = with_pool or with_nsp, with_nsp, with_mlm
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
        self.keep_hidden_layers = kept_layers(config, keep_hidden_layers)
        self.layer_norm_cond = layer_norm_cond
        self.conditional_size = conditional_size(layer_norm_cond)
        self.n_add_embs = count_modules(layer_add_embs)
        self.embeddings = self._embedding_stage(layer_add_embs)
        self.layers = self._layer_stage(attention_scale, is_dropout)
        self.pooler, self.nsp, self.mlm = self._heads()

    # ---- construction ------------------------------------------------------------------
    def _embedding_stage(self, layer_add_embs: Any) -> nn.Module:
        """:meth:`build_embeddings` with the build options applied: a conditional norm,
        the padding row without gradient, segment ids read from the word table."""
        embeddings = self.build_embeddings(layer_add_embs)
        norm = getattr(embeddings, "layer_norm", None)
        if self.conditional_size and norm is not None:
            embeddings.layer_norm = EmbeddingNorm.replacing(norm, self.conditional_size)
        word = getattr(embeddings, "word_embeddings", None)
        if isinstance(word, nn.Embedding) and 0 <= self.token_pad_ids < word.num_embeddings:
            # as 0.2.5 (nn.Embedding(padding_idx=token_pad_ids)): the padding row gets no
            # gradient; its loaded values are kept
            word.padding_idx = self.token_pad_ids
        if self.shared_segment_embeddings:
            embeddings.segment_embeddings = embeddings.word_embeddings
        return embeddings

    def _layer_stage(self, attention_scale: bool, is_dropout: bool) -> nn.ModuleList:
        """The main stack (one shared layer for ALBERT), with the attention options."""
        n_layers = self.config.num_hidden_layers
        n_unique = 1 if self.config.share_layers else n_layers
        layers = nn.ModuleList(
            self.build_layer(i) if i in self.keep_hidden_layers else SkippedLayer()
            for i in range(n_unique)
        )
        if not attention_scale:
            unscale_attention(layers, self._model_name())
        # application='lm' without padding: SDPA's causal path (is_causal), no mask tensor,
        # where every layer's attention runs MultiHeadAttention.forward (which honours it)
        atts = [getattr(layer, "attention", None) for layer in layers]
        atts = [a for a in atts if a is not None]
        self.causal_sdpa = (
            self.application == "lm"
            and bool(atts)
            and all(
                isinstance(a, MultiHeadAttention) and type(a).forward is MultiHeadAttention.forward
                for a in atts
            )
        )
        for att in atts if self.causal_sdpa else ():
            att.is_causal = True
        for layer in layers if is_dropout else ():
            ffn = getattr(layer, "ffn", None)
            if ffn is not None:
                ffn.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        return layers

    def _heads(self) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None]:
        """The pooler (also for NSP), the NSP classifier and the MLM head asked for."""
        c = self.config
        pooler = (
            Pooler(c.hidden_size, head_activation(self.with_pool or True, "tanh"))
            if self.with_pool
            else None
        )
        nsp = nn.Linear(c.hidden_size, 2) if self.with_nsp else None
        if not self.with_mlm:
            return pooler, nsp, None
        mlm = MlmHead(
            c.hidden_size,
            c.embedding_dim,
            c.vocab_size,
            c.mlm_hidden_act or c.hidden_act,
            c.layer_norm_eps,
            tied=self.tie_word_embeddings,
            activation=head_activation(self.with_mlm, "linear"),
            conditional_size=self.conditional_size,
        )
        return pooler, nsp, mlm

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

    def layer_sequence(self) -> list[nn.Module]:
        """The layers in call order (ALBERT repeats its shared layer)."""
        if len(self.layers) == self.config.num_hidden_layers:
            return list(self.layers)
        return [self.layers[i % len(self.layers)] for i in range(self.config.num_hidden_layers)]

    def layer_kwargs(self, state: ForwardState) -> dict[str, Any]:
        """Extra keywords for every layer (relative-position tables etc.); default none."""
        return {}

    # ---- forward -----------------------------------------------------------------------
    def parse_inputs(self, args: tuple, kwargs: dict[str, Any]) -> ForwardState:
        """Normalise list / positional / keyword inputs into one :attr:`state_type`
        (the seed's order; see :func:`b4t.models.inputs.parse_inputs`)."""
        return inputs.parse_inputs(self, args, kwargs)

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

    # ---- prefix reuse ------------------------------------------------------------------
    def reuses_prefixes(self, state: ForwardState) -> bool:
        """Whether this call may reuse a decoding step's prefix (:mod:`b4t.models.prefix_reuse`):
        a causal application (``lm`` / ``unilm``), a class that states :attr:`prefix_reuse`,
        layers that take the KV cache (:meth:`layers_take_kv_cache`), and only inputs it
        knows how to cut (none of the :attr:`forward_keywords`)."""
        if self.application not in ("lm", "unilm") or not type(self).prefix_reuse:
            return False
        if state.given(self.forward_keywords):
            return False
        if self._prefix_layers_ok is None:
            self._prefix_layers_ok = self.layers_take_kv_cache()
        return self._prefix_layers_ok

    def layers_take_kv_cache(self) -> bool:
        """Whether every layer runs new positions over a KV cache: plain or rotary
        attention in b4t's :class:`~b4t.layers.TransformerBlock` (or a skipped layer)."""
        return all(
            type(layer) is SkippedLayer
            or (
                type(layer) is TransformerBlock
                and type(layer.attention) in (MultiHeadAttention, RotaryAttention)
            )
            for layer in self.layers
        )

    def prefix_graph_reusable(self) -> bool:
        """:attr:`prefix_reuse` of this class and :meth:`layers_take_kv_cache`."""
        return type(self).prefix_reuse and self.layers_take_kv_cache()

    def merge_outputs(
        self, old: Any, new: Any, parents: torch.Tensor | None, capacity: int | None = None
    ) -> Any:
        """Outputs of a reused prefix: ``old`` (the last call's, rows ``parents``) with
        ``new`` (positions ``past..``) appended; pooled and NSP outputs (from the first
        position, which never sees a later one) are the old ones."""
        heads = ((self.pooler, False), (self.mlm, True), (self.nsp, False))
        along = [seq for head, seq in heads if head is not None]
        return merge_head_outputs(old, new, parents, capacity, along)

    def reuse_prefix(self, state: ForwardState, merge: Merger) -> Any:
        """:meth:`run_from` through the active prefix store (:func:`reuse_or_run`): over the
        positions its last call did not have when this call extends it."""
        return reuse_or_run(
            self,
            [state[k] for k in SEQ_INPUTS] + list(state.extra_ids),
            [state.conditional_ids],
            lambda cache, past: self.run_from(state, cache, past),
            merge,
            self.config.num_hidden_layers,
            premise=self.prefix_premise(state),
        )

    def prefix_premise(self, state: ForwardState) -> Premise | None:
        """The mask's part of prefix reuse's premise for this call: None (causal, always
        holds), or for ``unilm`` :func:`~b4t.models.prefix_reuse.unilm_premise`."""
        if self.application != "unilm":
            return None
        return unilm_premise(state.segment_ids)

    def run_from(self, state: ForwardState, cache: KVCache | None, past: int) -> Any:
        """The three stages; with ``cache``, the layers and heads run for positions
        ``past..`` only (embeddings and mask are built for the whole sequence, then cut),
        the keys/values of positions ``..past`` coming from ``cache``."""
        state = self.apply_embeddings(state)
        if cache is not None:
            keep = state.attention_mask
            if keep is None:
                keep = state.token_ids.ne(self.token_pad_ids)
            cache.mask = keep.bool()
            state.cache = cache
            if past:
                state.hidden_states = state.hidden_states[:, past:]
                mask = state.mask
                if mask is not None and mask.shape[-2] > 1:
                    state.mask = mask[:, :, past:]
        state = self.apply_main_layers(state)
        return self.apply_final_layers(state)

    # ---- stages ------------------------------------------------------------------------
    def check_segment_ids(self, token_ids: torch.Tensor, segment_ids: Any) -> None:
        """``segment_ids [B, L]``: token_ids' shape, ids in ``0..rows - 1`` of the segment
        table; given to a model without one, only as ``application='unilm'``'s mask input
        (see :func:`b4t.models.inputs.check_segment_ids`)."""
        inputs.check_segment_ids(self, token_ids, segment_ids)

    def _condition(self, state: ForwardState) -> torch.Tensor | None:
        """The conditional LayerNorms' condition from ``conditional_ids`` (None without
        ``layer_norm_cond``)."""
        if self.layer_norm_cond is None:
            return None
        if state.conditional_ids is None:
            raise ValueError(
                "this model has layer_norm_cond: pass its input after the ids "
                "(model([token_ids, segment_ids, cond_input])) or conditional_ids=..."
            )
        return self.layer_norm_cond(state.conditional_ids)

    def _embed(self, state: ForwardState) -> torch.Tensor:
        """The embedding module's output ``[B, L, H]`` (its norm conditioned on ``cond``)."""
        extra_ids = state.extra_ids
        if len(extra_ids) != self.n_add_embs:
            raise ValueError(
                f"{self._model_name()} has {self.n_add_embs} layer_add_embs but "
                f"{len(extra_ids)} extra id tensors were given"
            )
        norm = getattr(self.embeddings, "layer_norm", None)
        if isinstance(norm, EmbeddingNorm):
            norm.pending_cond = state.cond
        try:
            return self.embeddings(
                state.token_ids,
                state.segment_ids,
                state.position_ids,
                extra_ids,
                state.task_type_ids,
            )
        finally:
            if isinstance(norm, EmbeddingNorm):
                norm.pending_cond = None

    def apply_embeddings(self, state: ForwardState) -> ForwardState:
        """Stage 1: embeddings, the condition of conditional LayerNorms, the attention mask."""
        token_ids: torch.Tensor = state.token_ids
        self.embeddings.check_inputs(token_ids)
        segment_ids = state.segment_ids
        self.check_segment_ids(token_ids, segment_ids)
        state.cond = self._condition(state)
        hidden = self._embed(state)
        keep = state.attention_mask
        if keep is None:
            keep = token_ids.ne(self.token_pad_ids)
        keep = keep.bool()
        if self.application == "encoder" and bool(keep.all()):
            keep = None
        state.hidden_states = hidden
        state.mask = (
            None
            if self.causal_sdpa and bool(keep.all())
            else attention_mask(
                keep, self.application, segment_ids, token_ids.shape[1], hidden.dtype
            )
        )
        return state

    def apply_main_layers(self, state: ForwardState) -> ForwardState:
        """Stage 2: the transformer blocks.

        ``state.encoded_layers`` is the list of ``L + 1`` hidden states (the embedding
        output first) when ``output_all_encoded_layers``, else None.
        """
        hidden = state.hidden_states
        mask = state.mask
        extra = self.layer_kwargs(state)
        if state.cond is not None:
            extra["cond"] = state.cond
        all_layers = [hidden] if self.output_all_encoded_layers else None
        cache: KVCache | None = state.cache
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
        state.hidden_states = hidden
        state.encoded_layers = all_layers
        return state

    def apply_final_layers(self, state: ForwardState) -> Any:
        """Stage 3: pool / MLM / NSP heads."""
        hidden = state.hidden_states
        first: Any = state.encoded_layers if self.output_all_encoded_layers else hidden
        outputs: list[Any] = [first]
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(hidden)
            outputs.append(pooled)
        if self.mlm is not None:
            outputs.append(self.mlm(hidden, self.embeddings.word_embeddings.weight, state.cond))
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
        return model_weight_map(self, existing_only)

    def load_weights(
        self,
        path: str | Path | Sequence[str | Path] | dict[str, torch.Tensor],
        strict: bool = True,
        prefix: str | None = None,
        *,
        mapping: dict[str, WeightSource] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a checkpoint (file, folder, index or state dict); see
        :func:`b4t.models.loading.load_into`.

        bert4torch's order ``(path, strict, prefix)`` (``prefix=''``, the checkpoint
        layout, is the only prefix); ``mapping=`` is keyword only: ``None`` is the
        checkpoint layout (the weight map), ``{}`` b4t's own parameter names.
        """
        from b4t.models.loading import check_prefix, load_into

        check_prefix(prefix)
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
        ``mapping={}`` b4t's own names. See :func:`b4t.models.loading.save_from`."""
        from b4t.models.loading import check_prefix, save_from

        check_prefix(prefix)
        return save_from(self, path, mapping=mapping)

    def save_pretrained(
        self, path: str | Path, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """The checkpoint layout, explicitly: a folder with ``model.safetensors`` (and
        ``config.json``) that transformers loads, or one ``.safetensors`` / ``.bin`` file.
        (With b4t-trainer installed, ``save_weights(path)`` writes bert4torch 0.2.5's
        single state-dict file instead.)"""
        return Transformer.save_weights(self, path, mapping=mapping)
