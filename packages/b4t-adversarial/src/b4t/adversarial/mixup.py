"""Mixup (Zhang et al. 2018) and manifold mixup (Verma et al. 2019).

With ``lam ~ Beta(alpha, alpha)`` and a random permutation ``pi`` of the batch::

    x~ = lam * x + (1 - lam) * x[pi]           (inputs, or a hidden layer's output)
    L  = lam * loss(f(x~), y) + (1 - lam) * loss(f(x~), y[pi])

which, for cross-entropy, equals the loss against the mixed soft target
``lam * onehot(y) + (1 - lam) * onehot(y[pi])``. ``MixUp.sample`` draws
``lam`` and ``pi`` once per batch; ``mix`` mixes tensors, ``mix_loss`` mixes
losses and ``manifold(module)`` mixes a module's output during a forward pass
(manifold mixup at the embedding or any hidden layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class MixUp:
    """Mixup / manifold mixup helper.

    Args:
        alpha: Beta distribution parameter (> 0).
        generator: optional ``torch.Generator`` for reproducible draws.
    """

    def __init__(self, alpha: float = 1.0, generator: torch.Generator | None = None) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.generator = generator
        self.lam: float = 1.0
        self.perm_index: torch.Tensor | None = None

    def sample(self, batch_size: int) -> tuple[float, torch.Tensor]:
        """Draw ``lam`` and a permutation [batch_size] for the next batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Beta(a, a) via two Gammas, so the optional generator controls it.
        concentration = torch.full((2,), self.alpha)
        g = torch._standard_gamma(concentration, generator=self.generator)
        self.lam = float(g[0] / g.sum())
        self.perm_index = torch.randperm(batch_size, generator=self.generator)
        return self.lam, self.perm_index

    def _perm(self, x: torch.Tensor) -> torch.Tensor:
        if self.perm_index is None:
            raise RuntimeError("call sample(batch_size) before mixing")
        if x.shape[0] != self.perm_index.numel():
            raise ValueError(
                f"tensor batch axis {x.shape[0]} != sampled batch size {self.perm_index.numel()}"
            )
        return x[self.perm_index.to(x.device)]

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """``lam * x + (1 - lam) * x[perm]`` for a floating ``x`` [batch, ...]."""
        if not x.is_floating_point():
            raise TypeError(
                f"cannot mix a {x.dtype} tensor; mix embeddings (manifold) or one-hot targets"
            )
        return self.lam * x + (1.0 - self.lam) * self._perm(x)

    def mix_target(self, y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        """Mixed soft targets [batch, ..., C]: class ids are one-hot encoded first."""
        if not y.is_floating_point():
            if num_classes is None:
                raise ValueError("num_classes is needed to one-hot encode integer targets")
            y = torch.nn.functional.one_hot(y.long(), num_classes).float()
        return self.mix(y)

    def mix_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y_pred: Any, y: Any
    ) -> torch.Tensor:
        """``lam * loss_fn(y_pred, y) + (1 - lam) * loss_fn(y_pred, y[perm])``."""
        return self.lam * loss_fn(y_pred, y) + (1.0 - self.lam) * loss_fn(y_pred, self._perm(y))

    @contextmanager
    def manifold(self, module: nn.Module) -> Iterator[MixUp]:
        """Mix ``module``'s (first) output tensor in every forward inside the block."""

        def hook(mod: nn.Module, inputs: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor):
                return self.mix(output)
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                return (self.mix(output[0]), *output[1:])
            raise TypeError(f"cannot mix an output of type {type(output).__name__}")

        handle = module.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()
