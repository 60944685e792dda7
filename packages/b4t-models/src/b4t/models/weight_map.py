"""Weight maps: which checkpoint tensor feeds which b4t parameter.

A weight map is a dict ``{b4t_name: source}``. Names may hold ``{i}``, expanded once per
layer. A source is a checkpoint key (``str``), ``None`` (the parameter is not loaded,
e.g. a tied or fixed table), a :class:`Concat` (several checkpoint tensors
concatenated: the fused QKV projection from separate q, k, v), or a :class:`FirstOf`
(one tensor saved under one of several names). Transforms invert on save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Concat",
    "FirstOf",
    "WeightSource",
    "expand_weight_map",
    "model_weight_map",
    "strip_prefix",
]


@dataclass(frozen=True)
class Concat:
    """Concatenate checkpoint tensors ``keys`` along ``dim`` (split back on save)."""

    keys: tuple[str, ...]
    dim: int = 0

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The checkpoint's tensors (in ``keys`` order) -> the one b4t tensor."""
        return torch.cat(tensors, dim=self.dim)

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """The b4t tensor -> one equal chunk per checkpoint key (in ``keys`` order)."""
        return list(tensor.chunk(len(self.keys), dim=self.dim))

    def format(self, **kw: object) -> Concat:
        """The same source with ``str.format(**kw)`` applied to each key (``{i}``: a layer)."""
        return Concat(tuple(k.format(**kw) for k in self.keys), self.dim)

    def rename(self, fn) -> Concat:  # type: ignore[no-untyped-def]
        """The same source with ``fn`` applied to each key (a prefix added or removed)."""
        return Concat(tuple(fn(k) for k in self.keys), self.dim)


@dataclass(frozen=True)
class FirstOf:
    """The first of ``keys`` the checkpoint holds (the others, if present, are the same
    tensor under an older name and count as used); saved under ``keys[0]``."""

    keys: tuple[str, ...]

    def pick(self, state: dict) -> str | None:
        return next((k for k in self.keys if k in state), None)

    def format(self, **kw: object) -> FirstOf:
        return FirstOf(tuple(k.format(**kw) for k in self.keys))

    def rename(self, fn) -> FirstOf:  # type: ignore[no-untyped-def]
        return FirstOf(tuple(fn(k) for k in self.keys))


WeightSource = str | Concat | FirstOf | None


def expand_weight_map(
    template: dict[str, WeightSource], num_layers: int
) -> dict[str, WeightSource]:
    """Expand ``{i}`` in names and sources for ``i in range(num_layers)``."""
    out: dict[str, WeightSource] = {}
    for name, source in template.items():
        if "{i}" not in name:
            out[name] = source
            continue
        for i in range(num_layers):
            if isinstance(source, str):
                src: WeightSource = source.format(i=i)
            elif isinstance(source, (Concat, FirstOf)):
                src = source.format(i=i)
            else:
                src = None
            out[name.format(i=i)] = src
    return out


def strip_prefix(source: WeightSource, prefix: str) -> WeightSource:
    """Drop ``prefix + '.'`` from the start of a source's keys (checkpoints saved headless)."""

    def fn(key: str) -> str:
        return key[len(prefix) + 1 :] if prefix and key.startswith(prefix + ".") else key

    if isinstance(source, str):
        return fn(source)
    if isinstance(source, (Concat, FirstOf)):
        return source.rename(fn)
    return source


def model_weight_map(model: Any, existing_only: bool = True) -> dict[str, WeightSource]:
    """``{b4t parameter name: checkpoint key | Concat | FirstOf | None}`` of a built
    :class:`~b4t.models.transformer.Transformer` (its variant's weight map expanded per
    layer, with the MLM decoder and shared segment table as built). Only names of
    parameters the model really has, unless ``existing_only=False`` (then parts left out,
    e.g. heads not asked for, too)."""
    if model.variant is None:
        return {name: name for name in model.state_dict()}
    template = model.variant.weight_map
    if callable(template):
        template = template(model.config, model)
    mapping = expand_weight_map(template, model.config.num_hidden_layers)
    if model.mlm is not None and not getattr(model.mlm, "tied", True):
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
    if model.shared_segment_embeddings:
        # segment ids read the word table: the checkpoint's segment table is not used
        src = mapping.pop("embeddings.segment_embeddings.weight", None)
        if src is not None and not existing_only:
            mapping["unused (shared_segment_embeddings).segment_table"] = src
    if not existing_only:
        return mapping
    own = set(model.state_dict())
    return {k: v for k, v in mapping.items() if k in own}
