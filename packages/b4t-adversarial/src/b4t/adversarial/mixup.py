"""Mixup (Zhang et al. 2018) and manifold mixup (Verma et al. 2019).

With ``lam ~ Beta(alpha, alpha)`` and a random permutation ``pi`` of the batch::

    x~ = lam * x + (1 - lam) * x[pi]           (inputs, or a hidden layer's output)
    L  = lam * loss(f(x~), y) + (1 - lam) * loss(f(x~), y[pi])

which, for cross-entropy, equals the loss against the mixed soft target
``lam * onehot(y) + (1 - lam) * onehot(y[pi])``.

bert4torch's API (``layers.MixUp``)::

    mixup = MixUp(method='encoder', alpha=1.0, layer_mix=None)
    y_pred = mixup.encode(model, [token_ids, segment_ids])   # draws lam and pi, mixes
    loss = mixup(criterion, y_pred, y_true)                    # the mixed loss

``method`` says where the batch is mixed: ``'encoder'`` (the model's output),
``'embed'`` (the embedding stage's output; the model must expose
``apply_embeddings`` / ``apply_main_layers`` / ``apply_final_layers``),
``'hidden'`` (the output of transformer layer ``layer_mix``, drawn uniformly
when ``None``) or ``None`` (``encode`` returns ``[output, output[pi]]`` and the
caller mixes). Without a ``generator`` the draws use bert4torch's sources in its
order: ``numpy.random.beta``, then ``torch.randperm``, then ``random.randint``
for ``layer_mix``, so the same seeds give the same mix as bert4torch.

The lower-level helpers (``sample``, ``mix``, ``mix_target``, ``mix_loss``,
``manifold(module)``) mix any tensors or any module's output.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

METHODS = ("encoder", "embed", "hidden", None)


class MixUp(nn.Module):
    """Mixup / manifold mixup, with bert4torch's ``encode`` / ``forward`` API.

    Args:
        method: ``'encoder'``, ``'embed'``, ``'hidden'`` or ``None`` (see the module doc).
        alpha: Beta distribution parameter (> 0).
        layer_mix: for ``'hidden'``, the layer whose output is mixed; ``None`` draws one
            of ``0 .. num_layers`` per batch (``num_layers`` itself mixes nothing, as in
            bert4torch).
        generator: optional ``torch.Generator``; then ``lam``, the permutation and
            ``layer_mix`` are all drawn from it (reproducible without global seeds).
    """

    def __init__(
        self,
        method: str | None = "encoder",
        alpha: float = 1.0,
        layer_mix: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if layer_mix is not None and (isinstance(layer_mix, bool) or layer_mix < 0):
            raise ValueError(f"layer_mix must be None or an int >= 0, got {layer_mix!r}")
        self.method = method
        self.alpha = float(alpha)
        self.layer_mix = layer_mix
        self.generator = generator
        self.lam: float = 1.0
        self.perm_index: torch.Tensor | None = None
        self._batch = 0

    # ------------------------------------------------------------ draws and mixing
    def sample(self, batch_size: int) -> tuple[float, torch.Tensor]:
        """Draw ``lam`` and a permutation [batch_size] for the next batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.generator is None:  # bert4torch's sources, in its order
            self.lam = float(np.random.beta(self.alpha, self.alpha))
            self.perm_index = torch.randperm(batch_size)
        else:  # Beta(a, a) via two Gammas, so the generator controls it
            concentration = torch.full((2,), self.alpha)
            g = torch._standard_gamma(concentration, generator=self.generator)
            self.lam = float(g[0] / g.sum())
            self.perm_index = torch.randperm(batch_size, generator=self.generator)
        return self.lam, self.perm_index

    def _perm(self, x: torch.Tensor) -> torch.Tensor:
        if self.perm_index is None:
            raise RuntimeError("call sample(batch_size) (or encode) before mixing")
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

    def forward(
        self,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        y_pred: Any,
        y_true: Any,
    ) -> torch.Tensor:
        """bert4torch's mixed loss: ``lam * criterion(y_pred, y) + (1-lam) * criterion(y_pred,
        y[perm])`` with the draws of the last ``encode``."""
        return self.mix_loss(criterion, y_pred, y_true)

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

    # ------------------------------------------------------------ bert4torch's encode
    def _mix_any(self, value: Any) -> Any:
        """bert4torch's rule for an output: floats are mixed, integer ids keep the larger
        id (``torch.max``), ``None`` and non-tensors stay; lists/tuples item by item."""
        if value is None or not isinstance(value, (torch.Tensor, list, tuple)):
            return value
        if isinstance(value, (list, tuple)):
            return [self._mix_any(v) for v in value]
        if value.dim() == 0 or value.shape[0] != self._batch:
            return value  # broadcast over the batch (e.g. a causal mask [1, 1, L, L])
        if not value.requires_grad and not value.is_floating_point():
            return torch.max(value, self._perm(value))
        return self.lam * value + (1.0 - self.lam) * self._perm(value)

    def get_perm(self, inputs: Any) -> Any:
        """``inputs`` [batch, ...] in the drawn order ``inputs[perm]``; a list/tuple item by
        item (non-tensors as they are), as bert4torch's ``get_perm``."""
        if isinstance(inputs, torch.Tensor):
            return self._perm(inputs)
        if isinstance(inputs, (list, tuple)):
            return [self._perm(v) if isinstance(v, torch.Tensor) else v for v in inputs]
        return inputs

    _permuted = get_perm

    def mix_up(self, output: Any, output1: Any) -> Any:
        """bert4torch's ``mix_up``: ``lam * output + (1 - lam) * output1`` for a tensor; for a
        list/tuple item by item, where ``None`` stays and integer ids without gradient keep
        the larger id (``torch.max``)."""
        if isinstance(output, torch.Tensor):
            return self.lam * output + (1.0 - self.lam) * output1
        if not isinstance(output, (list, tuple)):
            raise ValueError(
                f"mix_up takes a tensor or a list of them, got {type(output).__name__}"
            )
        mixed = []
        for a, b in zip(output, output1, strict=True):
            if a is None:
                mixed.append(a)
            elif not a.requires_grad and a.dtype in (torch.long, torch.int):
                mixed.append(torch.max(a, b))
            else:
                mixed.append(self.lam * a + (1.0 - self.lam) * b)
        return mixed

    def encode(self, model: nn.Module, inputs: Any) -> Any:
        """Draw ``lam`` / the permutation for this batch and run ``model`` with mixup.

        ``inputs`` is the model's input list ``[token_ids, segment_ids, ...]`` (or a tensor);
        ``model(inputs)`` is called as bert4torch does. Returns the (mixed) output, or
        ``[output, output[perm]]`` for ``method=None``.
        """
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if not isinstance(first, torch.Tensor):
            raise TypeError(
                f"inputs must be a tensor or a list whose first item is a tensor, got "
                f"{type(first).__name__}"
            )
        self._batch = int(first.shape[0])
        self.sample(self._batch)
        if self.method is None:
            output = model(inputs)
            return [output, self._permuted(output)]
        if self.method == "encoder":
            return self._mix_any(model(inputs))
        if self.method == "embed":
            return self._encode_embed(model, inputs)
        return self._encode_hidden(model, inputs)

    def _encode_embed(self, model: nn.Module, inputs: Any) -> Any:
        stages = ("apply_embeddings", "apply_main_layers", "apply_final_layers")
        missing = [s for s in stages if not callable(getattr(model, s, None))]
        if missing:
            raise TypeError(
                f"method='embed' needs a model with {', '.join(stages)}; "
                f"{type(model).__name__} lacks {missing}"
            )
        parse = getattr(model, "parse_inputs", None)
        if callable(parse):  # b4t models: the stages pass a state dict
            state = model.apply_embeddings(parse((inputs,), {}))
            for key in ("hidden_states", "mask"):
                state[key] = self._mix_any(state.get(key))
        else:  # bert4torch-style stages pass a list
            state = self._mix_any(model.apply_embeddings(inputs))
        return model.apply_final_layers(model.apply_main_layers(state))

    def _layers(self, model: nn.Module) -> list[nn.Module]:
        if callable(getattr(model, "layer_sequence", None)):
            return list(model.layer_sequence())
        layers = getattr(model, "encoderLayer", None)
        if isinstance(layers, nn.ModuleList):
            return list(layers)
        raise TypeError(
            f"method='hidden' needs a model with layer_sequence() or encoderLayer; "
            f"{type(model).__name__} has neither"
        )

    def _draw_layer(self, num_layers: int) -> int:
        if self.layer_mix is not None:
            return self.layer_mix
        if self.generator is not None:
            return int(torch.randint(0, num_layers + 1, (1,), generator=self.generator))
        return random.randint(0, num_layers)  # bert4torch's draw: 0 .. num_layers

    def _encode_hidden(self, model: nn.Module, inputs: Any) -> Any:
        layers = self._layers(model)
        layer_mix = self._draw_layer(len(layers))
        if layer_mix >= len(layers):
            if layer_mix > len(layers):
                warnings.warn(
                    f"layer_mix={layer_mix} but the model has {len(layers)} layers: "
                    "nothing is mixed",
                    stacklevel=3,
                )
            return model(inputs)
        calls = {"n": 0}

        def after(module: nn.Module, args: Any, output: Any) -> Any:
            index = calls["n"]
            calls["n"] += 1
            if index != layer_mix:
                return None
            if isinstance(output, torch.Tensor):
                return self._mix_any(output)
            return type(output)([self._mix_any(output[0]), *output[1:]])

        def before(module: nn.Module, args: Any) -> Any:
            # layers after the mixed one also see the mixed attention mask (bert4torch mixes
            # every item of the layer inputs)
            if calls["n"] <= layer_mix or len(args) < 2:
                return None
            return (args[0], self._mix_any(args[1]), *args[2:])

        handles = []
        try:
            for module in dict.fromkeys(layers):  # ALBERT repeats one module: hook it once
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after))
            return model(inputs)
        finally:
            for handle in handles:
                handle.remove()
