"""Weight maps: which checkpoint tensor feeds which b4t parameter.

A weight map is a dict ``{b4t_name: source}``. Names may hold ``{i}``, expanded once per
layer. A source is a checkpoint key (``str``), ``None`` (the parameter is not loaded,
e.g. a tied or fixed table), a :class:`Concat` (several checkpoint tensors
concatenated: the fused QKV projection from separate q, k, v), or a :class:`FirstOf`
(one tensor saved under one of several names). Transforms invert on save.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Concat", "FirstOf", "WeightSource", "expand_weight_map", "strip_prefix"]


@dataclass(frozen=True)
class Concat:
    """Concatenate checkpoint tensors ``keys`` along ``dim`` (split back on save)."""

    keys: tuple[str, ...]
    dim: int = 0

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(tensors, dim=self.dim)

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(tensor.chunk(len(self.keys), dim=self.dim))

    def format(self, **kw: object) -> Concat:
        return Concat(tuple(k.format(**kw) for k in self.keys), self.dim)

    def rename(self, fn) -> Concat:  # type: ignore[no-untyped-def]
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
