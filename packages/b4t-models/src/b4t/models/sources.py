"""Weight sources beyond :class:`b4t.models.weight_map.Concat`.

* :class:`Transposed`: one checkpoint tensor stored as ``[in, out]`` (GPT-2's and
  OpenAI GPT's ``Conv1D``), transposed to ``nn.Linear``'s ``[out, in]`` on load and back
  on save.
* :class:`SplitConcat`: several tensors of different sizes concatenated (the fused
  q/k/v projection of grouped-query attention), split back by ``sizes`` on save.

Both subclass ``Concat``, so the loader and the writer treat them as any other
multi-key source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from b4t.models.weight_map import Concat

__all__ = ["Flattened", "SplitConcat", "Transposed", "transposed"]


@dataclass(frozen=True)
class Transposed(Concat):
    """The single checkpoint tensor ``keys[0]``, transposed (2-D)."""

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return tensors[0].t().contiguous()

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor.t().contiguous()]

    def format(self, **kw: object) -> Transposed:
        return Transposed(tuple(k.format(**kw) for k in self.keys), self.dim)

    def rename(self, fn: Callable[[str], str]) -> Transposed:
        return Transposed(tuple(fn(k) for k in self.keys), self.dim)


def transposed(key: str) -> Transposed:
    """``Transposed((key,))``."""
    return Transposed((key,))


@dataclass(frozen=True)
class SplitConcat(Concat):
    """``keys`` concatenated along ``dim``; saved back as parts of ``sizes`` rows."""

    sizes: tuple[int, ...] = ()

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if sum(self.sizes) != tensor.shape[self.dim]:
            raise ValueError(
                f"cannot split a tensor of {tensor.shape[self.dim]} rows into {self.sizes} "
                f"for {self.keys}"
            )
        return list(tensor.split(list(self.sizes), dim=self.dim))

    def format(self, **kw: object) -> SplitConcat:
        return SplitConcat(tuple(k.format(**kw) for k in self.keys), self.dim, self.sizes)

    def rename(self, fn: Callable[[str], str]) -> SplitConcat:
        return SplitConcat(tuple(fn(k) for k in self.keys), self.dim, self.sizes)


@dataclass(frozen=True)
class Flattened(Concat):
    """The single checkpoint tensor ``keys[0]`` (e.g. BART's ``final_logits_bias [1, V]``)
    flattened to 1-D; saved back with a leading dimension of 1."""

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return tensors[0].reshape(-1)

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor.reshape(1, -1)]

    def format(self, **kw: object) -> Flattened:
        return Flattened(tuple(k.format(**kw) for k in self.keys), self.dim)

    def rename(self, fn: Callable[[str], str]) -> Flattened:
        return Flattened(tuple(fn(k) for k in self.keys), self.dim)
