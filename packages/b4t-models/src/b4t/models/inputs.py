"""How a :class:`~b4t.models.transformer.Transformer` reads its call: the seed's input
list, positional tensors or keywords, into one typed :class:`ForwardState`."""

from __future__ import annotations

from typing import Any

import torch

from b4t.models.forward_state import ForwardState

__all__ = [
    "INPUT_KEYWORDS",
    "SEQ_INPUTS",
    "check_segment_ids",
    "parse_inputs",
    "positional_slots",
]

# inputs aligned with the tokens ([B, L]) that a reused prefix cuts
SEQ_INPUTS = ("token_ids", "segment_ids", "position_ids", "attention_mask")
# the keyword inputs every model takes (beside extra_ids and its forward_keywords)
INPUT_KEYWORDS = (
    "token_ids",
    "input_ids",
    "segment_ids",
    "token_type_ids",
    "position_ids",
    "attention_mask",
    "conditional_ids",
)
# the optional positional inputs after token ids, in bert4torch 0.2.5's order
_OPTIONAL_SLOTS = ("segment_ids", "position_ids", "attention_mask", "conditional_ids")


def _model_name(model: Any) -> str:
    return f"model={getattr(model.variant, 'name', type(model).__name__)!r}"


def positional_slots(model: Any) -> list[str]:
    """The optional positional inputs ``model`` takes after the token ids: segment ids
    (``segment_vocab_size > 0``), position ids (``custom_position_ids``), the keep mask
    (``custom_attention_mask``), the condition input (``layer_norm_cond``)."""
    present = (
        getattr(model, "segment_vocab_size", 0) > 0,
        getattr(model, "custom_position_ids", False),
        getattr(model, "custom_attention_mask", False),
        getattr(model, "layer_norm_cond", None) is not None,
    )
    return [name for name, on in zip(_OPTIONAL_SLOTS, present, strict=True) if on]


def _check_counts(model: Any, args: tuple, kwargs: dict[str, Any], slots: list[str]) -> None:
    """TypeError for more positional inputs than slots or an unknown keyword."""
    names = ["token_ids", *slots]
    names += [f"layer_add_embs[{i}] ids" for i in range(getattr(model, "n_add_embs", 0))]
    if len(args) > len(names):
        hint = "" if "segment_ids" in slots else " (segment_vocab_size=0: no segment_ids input)"
        raise TypeError(
            f"{_model_name(model)} takes {len(names)} positional input(s) "
            f"({', '.join(names)}) but {len(args)} were given{hint}"
        )
    unknown = sorted(set(kwargs) - set(model.forward_keywords) - {"extra_ids"})
    if unknown:
        known = ", ".join((*INPUT_KEYWORDS, "extra_ids", *model.forward_keywords))
        raise TypeError(
            f"{_model_name(model)}.forward() got unexpected keyword argument(s) "
            f"{', '.join(unknown)} (accepted: {known})"
        )


def parse_inputs(model: Any, args: tuple, kwargs: dict[str, Any]) -> ForwardState:
    """Normalise list / positional / keyword inputs into ``model.state_type`` (0.2.5's
    order: token ids, the optional slots of :func:`positional_slots`, then one id tensor
    per ``layer_add_embs``). A keyword wins over the positional input of its slot."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    while args and args[-1] is None:  # a trailing None is no input
        args = args[:-1]
    kwargs = dict(kwargs)
    given: dict[str, Any] = {
        "token_ids": kwargs.pop("token_ids", kwargs.pop("input_ids", None)),
        "segment_ids": kwargs.pop("segment_ids", kwargs.pop("token_type_ids", None)),
        "position_ids": kwargs.pop("position_ids", None),
        "attention_mask": kwargs.pop("attention_mask", None),
        "conditional_ids": kwargs.pop("conditional_ids", None),
    }
    rest = list(args)
    if rest:
        first = rest.pop(0)
        given["token_ids"] = first if given["token_ids"] is None else given["token_ids"]
    slots = positional_slots(model)
    _check_counts(model, args, kwargs, slots)
    for name in slots:
        if rest:
            value = rest.pop(0)
            given[name] = value if given[name] is None else given[name]
    if given["token_ids"] is None:
        raise ValueError("no token_ids given (pass [token_ids, segment_ids] or token_ids=...)")
    extra_ids = rest + list(kwargs.pop("extra_ids", []))
    state_type: type[ForwardState] = model.state_type
    undeclared = sorted(set(kwargs) - set(state_type.field_names())) if kwargs else []
    if undeclared:
        raise TypeError(
            f"{_model_name(model)} lists {', '.join(undeclared)} in forward_keywords but its "
            f"state_type {state_type.__name__} has no such field"
        )
    return state_type(extra_ids=extra_ids, **given, **kwargs)


def check_segment_ids(model: Any, token_ids: torch.Tensor, segment_ids: Any) -> None:
    """``segment_ids [B, L]``: token_ids' shape, ids in ``0..rows - 1`` of ``model``'s
    segment table; given to a model without one, only as ``application='unilm'``'s mask
    input (a ValueError naming the problem otherwise)."""
    if segment_ids is None:
        return
    table = model.embeddings.segment_embeddings
    if table is None:
        if model.application != "unilm":
            raise ValueError(
                f"segment_ids given but {_model_name(model)} has no segment embeddings "
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
