"""VAT: virtual adversarial training on the embedding output (Miyato et al. 2018).

Follows bert4torch's ``VAT`` (one power iteration)::

    r0      ~ N(0, 1) * noise_var                     (same shape as the embedding output)
    d       = grad_r KL_batchmean(p(x) || p(x + r0))   at r = r0
    r_adv   = project(r0 + adv_step_size * d)
              (l2: v / (||v||_last + noise_gamma), l1: sign(v), inf: v / (max|v| + noise_gamma))
    L_vat   = adv_alpha * [KL_sum(sg(p(x)) || p(x + r_adv)) + KL_sum(sg(p(x + r_adv)) || p(x))]

where ``p = softmax(logits)`` and ``sg`` stops the gradient. The perturbation
is added to the *output* of the module named ``emb_name`` through a forward
hook, so any model works without accepting embeddings as input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial._embedding import find_embedding_module

NORM_TYPES = ("l2", "l1", "inf")


def select_output(output: Any, index: int | str = 0) -> torch.Tensor:
    """Pick the logits from a model output: a tensor, a list/tuple (by index) or a dict (by key)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)):
        if not isinstance(index, int) or not -len(output) <= index < len(output):
            raise IndexError(
                f"output_index {index!r} is out of range for a model output of {len(output)} items"
            )
        return select_output(output[index], 0)
    if isinstance(output, dict):
        if index not in output:
            raise KeyError(f"output_index {index!r} not in model output keys {list(output)}")
        return select_output(output[index], 0)
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def kl_logits(inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``KL(softmax(targets) || softmax(inputs))`` over the last axis, in float32."""
    return F.kl_div(
        F.log_softmax(inputs.float(), dim=-1),
        F.softmax(targets.float(), dim=-1),
        reduction=reduction,
    )


def adv_project(grad: torch.Tensor, norm_type: str = "l2", eps: float = 1e-6) -> torch.Tensor:
    """Normalise a perturbation [..., hidden] per position (bert4torch ``adv_project``)."""
    if norm_type == "l2":
        return grad / (torch.linalg.vector_norm(grad, dim=-1, keepdim=True) + eps)
    if norm_type == "l1":
        return grad.sign()
    if norm_type == "inf":
        return grad / (grad.abs().amax(dim=-1, keepdim=True) + eps)
    raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")


class VAT:
    """Virtual adversarial loss on the output of the embedding module ``emb_name``.

    Args:
        model: the model; its module whose name contains ``emb_name`` gets perturbed.
        emb_name: (sub)name of the embedding module.
        noise_var: scale of the initial Gaussian noise.
        noise_gamma: epsilon in the projection's denominator.
        adv_step_size: step along the KL gradient.
        adv_alpha: weight of the returned loss.
        norm_type: ``'l2'``, ``'l1'`` or ``'inf'``.
        output_index: which item of a tuple/list (or key of a dict) output holds the logits.
    """

    def __init__(
        self,
        model: nn.Module,
        emb_name: str = "word_embeddings",
        noise_var: float = 1e-5,
        noise_gamma: float = 1e-6,
        adv_step_size: float = 1e-3,
        adv_alpha: float = 1,
        norm_type: str = "l2",
        output_index: int | str = 0,
        **_: Any,
    ) -> None:
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        self.model = model
        self.noise_var = noise_var
        self.noise_gamma = noise_gamma
        self.adv_step_size = adv_step_size
        self.adv_alpha = adv_alpha
        self.norm_type = norm_type
        self.output_index = output_index
        self.emb_module_name, self.emb_module = find_embedding_module(model, emb_name)
        self._noise: torch.Tensor | None = None
        self._last_shape: torch.Size | None = None
        self._handle = self.emb_module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if self._noise is None:
            if isinstance(output, torch.Tensor):
                self._last_shape = output.shape
            return None
        if not isinstance(output, torch.Tensor) or output.shape != self._noise.shape:
            raise RuntimeError(
                f"VAT noise of shape {tuple(self._noise.shape)} does not fit the output of "
                f"{self.emb_module_name!r} ({getattr(output, 'shape', type(output).__name__)})"
            )
        return output + self._noise.to(output.dtype)

    def remove(self) -> None:
        """Remove the forward hook from the embedding module."""
        self._handle.remove()

    def _embedding_shape(self, forward: Callable[[], Any]) -> torch.Size:
        captured: list[torch.Tensor] = []
        handle = self.emb_module.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            with torch.no_grad():
                forward()
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"the forward pass never ran the module {self.emb_module_name!r}")
        return captured[0].shape

    def _perturbed(self, forward: Callable[[], Any], noise: torch.Tensor) -> torch.Tensor:
        self._noise = noise
        try:
            return select_output(forward(), self.output_index)
        finally:
            self._noise = None

    def adversarial_loss(
        self,
        forward: Callable[[], Any],
        logits: torch.Tensor,
        embed_shape: Sequence[int] | None = None,
    ) -> torch.Tensor | None:
        """The VAT loss for ``logits`` [batch, ..., classes] of the clean input.

        ``forward`` re-runs the model on the same input (it must reach the
        embedding module); it is called twice with the perturbation hooked in
        (three times if ``embed_shape`` is not given and no clean forward pass
        since the last call recorded the embedding output's shape). Returns ``None`` when the
        KL gradient is not finite (bert4torch's "gradient vanished" exit).
        """
        if embed_shape is not None:
            shape = torch.Size(embed_shape)
        elif self._last_shape is not None:
            shape = self._last_shape
        else:
            shape = self._embedding_shape(forward)
        self._last_shape = None
        noise = torch.randn(shape, device=logits.device, dtype=torch.float32) * self.noise_var
        noise.requires_grad_()
        adv_logits = self._perturbed(forward, noise)
        probe = kl_logits(adv_logits, logits.detach(), reduction="batchmean")
        (delta_grad,) = torch.autograd.grad(probe, noise)
        if not torch.isfinite(torch.linalg.vector_norm(delta_grad)):
            return None
        noise = adv_project(
            noise.detach() + self.adv_step_size * delta_grad, self.norm_type, self.noise_gamma
        )
        adv_logits = self._perturbed(forward, noise.detach())
        forward_kl = kl_logits(adv_logits, logits.detach())
        backward_kl = kl_logits(logits, adv_logits.detach())
        return (forward_kl + backward_kl) * self.adv_alpha

    def virtual_adversarial_training(
        self, train_X: Any, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """bert4torch's entry point: re-run ``model(*train_X)`` (or ``model(train_X)``)."""

        def forward() -> Any:
            if isinstance(train_X, (list, tuple)):
                return self.model(*train_X)
            return self.model(train_X)

        return self.adversarial_loss(forward, logits)
