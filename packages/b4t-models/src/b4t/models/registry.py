"""The variant registry: ``model=`` names -> preset + weight map (+ model class).

A variant is data, not a class per model. To add one (``nezha``, ``roformer``, ...) drop a
module into ``b4t/models/variants/``; every module there is imported when ``b4t.models``
is imported, and registers itself::

    # b4t/models/variants/my_model.py
    from b4t.models.registry import Variant, register_variant
    from b4t.models.variants.bert import bert_weight_map

    register_variant(Variant(
        name="my_model",
        prefix="bert",                          # the HF base-model prefix
        preset={"position_type": "none"},       # ModelConfig overrides
        weight_map=bert_weight_map("bert"),     # {b4t name: checkpoint key | Concat | None}
        model_cls=MyTransformer,                # optional Transformer subclass
    ))

``weight_map`` is either a dict (``{i}`` templated) or a callable ``(config, model) ->
dict`` when the map depends on the config. A subclass of
:class:`b4t.models.transformer.Transformer` changes only what differs: override
``build_layer`` (e.g. pass ``attention_cls=`` a :class:`b4t.layers.MultiHeadAttention`
subclass with relative-position hooks), ``build_embeddings``, ``layer_kwargs`` (compute
a position table once per forward and hand it to every layer) or
``apply_final_layers``. ``optional_keys`` are regexes of checkpoint keys that may stay
unused without a strict-load error (buffers, heads b4t does not implement); a key the
weight map names for a part the model was built without is never an error. ``resolve``
picks among layouts (``roberta``: BERT layout or Facebook's) from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b4t.models.weight_map import WeightSource

if TYPE_CHECKING:
    from b4t.models.config import ModelConfig
    from b4t.models.transformer import Transformer

__all__ = ["VARIANTS", "Variant", "get_variant", "register_variant", "variant_names"]

WeightMapFn = Callable[["ModelConfig", "Transformer"], dict[str, WeightSource]]


@dataclass(frozen=True)
class Variant:
    """One ``model=`` name: how to build it and how its checkpoints are laid out."""

    name: str
    prefix: str
    weight_map: dict[str, WeightSource] | WeightMapFn
    preset: dict[str, Any] = field(default_factory=dict)
    model_cls: type | None = None
    optional_keys: tuple[str, ...] = ()
    description: str = ""
    # (checkpoint state or None, raw config dict) -> the variant to build: for names
    # that cover several checkpoint layouts (roberta), chosen from the checkpoint's keys
    resolve: Callable[[dict[str, Any] | None, dict[str, Any]], Variant] | None = None


VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant, *aliases: str) -> Variant:
    """Add ``variant`` (and optional alias names) to the table; re-registering replaces."""
    for name in (variant.name, *aliases):
        VARIANTS[name.lower()] = variant
    return variant


def variant_names() -> list[str]:
    """Every registered ``model=`` name, sorted."""
    return sorted(VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name`` (case-insensitive); ValueError listing the known names."""
    try:
        return VARIANTS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown model={name!r}; registered: {', '.join(variant_names())}"
        ) from None
