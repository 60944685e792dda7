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

from b4t.layers import Embeddings, TransformerBlock, attention_mask
from b4t.models.config import ModelConfig
from b4t.models.heads import MlmHead, Pooler
from b4t.models.weight_map import WeightSource, expand_weight_map

__all__ = ["Transformer"]

APPLICATIONS = ("encoder", "lm", "unilm")


class Transformer(nn.Module):
    """BERT-family encoder with optional pool / NSP / MLM heads.

    Call it with the seed's list ``model([token_ids, segment_ids, *extra_ids])``, with
    positional tensors, or with keywords (``token_ids``/``input_ids``,
    ``segment_ids``/``token_type_ids``, ``attention_mask``, ``position_ids``).
    Returns the hidden states ``[B, L, H]`` (a list per layer with
    ``output_all_encoded_layers``); with heads, the list
    ``[hidden_states, pooled [B, H], mlm_scores [B, L, V], nsp_scores [B, 2]]`` holding
    only the parts asked for, in that order.
    """

    # b4t parameter names that are indexed by the vocabulary (keep_tokens, compound_tokens)
    vocab_params: tuple[str, ...] = ("embeddings.word_embeddings.weight", "mlm.bias")

    def __init__(
        self,
        config: ModelConfig,
        application: str = "encoder",
        segment_vocab_size: int | None = 2,
        with_pool: bool = False,
        with_nsp: bool = False,
        with_mlm: bool = False,
        output_all_encoded_layers: bool = False,
        layer_add_embs: Sequence[nn.Module] | nn.Module | None = None,
        gradient_checkpoint: bool = False,
        variant: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            name = getattr(variant, "name", type(self).__name__)
            raise TypeError(
                f"unknown keyword argument(s) for model={name!r}: {', '.join(sorted(kwargs))} "
                "(neither a build option nor a ModelConfig field)"
            )
        if application not in APPLICATIONS:
            raise ValueError(f"unknown application={application!r}; use one of {APPLICATIONS}")
        self.config = config
        self.variant = variant
        self.application = application
        self.segment_vocab_size = (
            config.type_vocab_size if segment_vocab_size is None else segment_vocab_size
        )
        self.with_pool = with_pool or with_nsp
        self.with_nsp = with_nsp
        self.with_mlm = with_mlm
        self.output_all_encoded_layers = output_all_encoded_layers
        self.gradient_checkpoint = gradient_checkpoint

        self.embeddings = self.build_embeddings(layer_add_embs)
        n_unique = 1 if config.share_layers else config.num_hidden_layers
        self.layers = nn.ModuleList(self.build_layer(i) for i in range(n_unique))
        self.pooler = Pooler(config.hidden_size) if self.with_pool else None
        self.nsp = nn.Linear(config.hidden_size, 2) if with_nsp else None
        self.mlm = (
            MlmHead(
                config.hidden_size,
                config.embedding_dim,
                config.vocab_size,
                config.mlm_hidden_act or config.hidden_act,
                config.layer_norm_eps,
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
            segment_vocab_size=self.segment_vocab_size,
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
        kwargs.update(overrides)
        return TransformerBlock(**kwargs)

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
        """Normalise list / positional / keyword inputs into one dict."""
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        state: dict[str, Any] = {}
        token_ids = kwargs.pop("token_ids", kwargs.pop("input_ids", None))
        segment_ids = kwargs.pop("segment_ids", kwargs.pop("token_type_ids", None))
        if args:
            token_ids = args[0] if token_ids is None else token_ids
            if len(args) > 1:
                segment_ids = args[1] if segment_ids is None else segment_ids
        if token_ids is None:
            raise ValueError("no token_ids given (pass [token_ids, segment_ids] or token_ids=...)")
        state["token_ids"] = token_ids
        state["segment_ids"] = segment_ids
        state["extra_ids"] = list(args[2:]) + list(kwargs.pop("extra_ids", []))
        state["attention_mask"] = kwargs.pop("attention_mask", None)
        state["position_ids"] = kwargs.pop("position_ids", None)
        state.update(kwargs)
        return state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        state = self.parse_inputs(args, kwargs)
        state = self.apply_embeddings(state)
        state = self.apply_main_layers(state)
        return self.apply_final_layers(state)

    def apply_embeddings(self, state: dict[str, Any]) -> dict[str, Any]:
        """Stage 1: embeddings and the attention mask."""
        token_ids: torch.Tensor = state["token_ids"]
        self.embeddings.check_inputs(token_ids)
        segment_ids = state["segment_ids"]
        if segment_ids is not None and self.embeddings.segment_embeddings is not None:
            if segment_ids.shape != token_ids.shape:
                raise ValueError(
                    f"segment_ids shape {tuple(segment_ids.shape)} differs from token_ids "
                    f"shape {tuple(token_ids.shape)}"
                )
            n_seg = self.embeddings.segment_embeddings.num_embeddings
            if segment_ids.numel() and int(segment_ids.max()) >= n_seg:
                raise ValueError(
                    f"segment id {int(segment_ids.max())} is outside the segment vocabulary "
                    f"(size {n_seg})"
                )
        hidden = self.embeddings(
            token_ids,
            segment_ids,
            state["position_ids"],
            state["extra_ids"],
            state.get("task_type_ids"),
        )
        keep = state["attention_mask"]
        if keep is None:
            keep = token_ids.ne(self.config.pad_token_id)
        keep = keep.bool()
        if self.application == "encoder" and bool(keep.all()):
            keep = None
        state["hidden_states"] = hidden
        state["mask"] = attention_mask(
            keep, self.application, segment_ids, token_ids.shape[1], hidden.dtype
        )
        return state

    def apply_main_layers(self, state: dict[str, Any]) -> dict[str, Any]:
        """Stage 2: the transformer blocks."""
        hidden = state["hidden_states"]
        mask = state["mask"]
        extra = self.layer_kwargs(state)
        all_layers = [] if self.output_all_encoded_layers else None
        use_ckpt = self.gradient_checkpoint and self.training and torch.is_grad_enabled()
        for layer in self.layer_sequence():
            if use_ckpt:
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
            outputs.append(self.mlm(hidden, self.embeddings.word_embeddings.weight))
        if self.nsp is not None:
            outputs.append(self.nsp(pooled))
        return outputs if len(outputs) > 1 else first

    # ---- weights -----------------------------------------------------------------------
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
        if not existing_only:
            return mapping
        own = set(self.state_dict())
        return {k: v for k, v in mapping.items() if k in own}

    def load_weights(
        self,
        path: str | Path | Sequence[str | Path] | dict[str, torch.Tensor],
        mapping: dict[str, WeightSource] | None = None,
        strict: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Load a checkpoint (file, folder, index or state dict); see :func:`load_into`."""
        from b4t.models.loading import load_into

        return load_into(self, path, mapping=mapping, strict=strict, **kwargs)

    def save_weights(
        self, path: str | Path, mapping: dict[str, WeightSource] | None = None
    ) -> Path:
        """Write the weights back in the checkpoint layout; see :func:`save_from`."""
        from b4t.models.loading import save_from

        return save_from(self, path, mapping=mapping)
