"""VAT: virtual adversarial training on the embedding output (Miyato et al. 2018).

Follows bert4torch's ``VAT`` (one power iteration)::

    r0      ~ N(0, 1) * noise_var                     (same shape as the embedding output)
    d       = grad_r KL_batchmean(p(x) || p(x + r0))   at r = r0
    r_adv   = project(r0 + adv_step_size * d)
              (l2: v / (||v||_last + noise_gamma), l1: sign(v), inf: v / (max|v| + noise_gamma))
    L_vat   = adv_alpha * [KL_sum(sg(p(x)) || p(x + r_adv)) + KL_sum(sg(p(x + r_adv)) || p(x))]

where ``p = softmax(logits)`` and ``sg`` stops the gradient. The perturbed
forward passes see ``sg(E(x)) + r`` in place of the output ``E(x)`` of the module
named ``emb_name`` (bert4torch feeds ``embed.detach() + noise``), put there by a
forward hook that lives only for that pass, so any model works without accepting
embeddings as input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from b4t.adversarial._embedding import find_embedding_module

NORM_TYPES = ("l2", "l1", "inf")


def select_output(output: Any, index: int | str | None = 0) -> torch.Tensor:
    """Pick the logits from a model output: a tensor, a list/tuple (by index) or a dict (by key).

    ``index`` 0 (or ``None``) on a single-tensor output returns the tensor; any other
    index there is an error (it would silently pick nothing).
    """
    if isinstance(output, torch.Tensor):
        if index not in (0, None):
            raise ValueError(
                f"output_index (rank) {index!r} was given, but the model returns a single tensor "
                f"of shape {tuple(output.shape)}; it only picks an item of a tuple/list/dict "
                "output (leave it at 0)"
            )
        return output
    if index is None:
        index = 0
    if isinstance(output, (list, tuple)):
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"output_index {index!r} must be an int for a {type(output).__name__}")
        if not -len(output) <= index < len(output):
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
        output_index: which item of a tuple/list (or key of a dict) output holds the logits;
            bert4torch's name for it is ``rank`` (either keyword works).
        track: keep a forward hook on the embedding module that records its output shape
            on every clean forward (bert4torch's by-hand use: ``logits = model(x)`` then
            ``virtual_adversarial_training(x, logits)``); release it with :meth:`remove`.
            With ``track=False`` no hook outlives a call.
        **kwargs: other keys of bert4torch's ``adversarial`` dict (``epsilon``, ``K``) are
            accepted and unused, as in bert4torch.
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
        output_index: int | str | None = None,
        track: bool = True,
        **kwargs: Any,
    ) -> None:
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        rank = kwargs.pop("rank", None)
        if rank is not None and output_index is not None and rank != output_index:
            raise ValueError(
                f"rank={rank!r} and output_index={output_index!r} name the same setting; "
                "give one of them"
            )
        self.model = model
        self.noise_var = noise_var
        self.noise_gamma = noise_gamma
        self.adv_step_size = adv_step_size
        self.adv_alpha = adv_alpha
        self.norm_type = norm_type
        self.output_index: int | str = next((i for i in (output_index, rank) if i is not None), 0)
        self.emb_module_name, self.emb_module = find_embedding_module(model, emb_name)
        self._last_shape: torch.Size | None = None
        self.embed: torch.Tensor | None = None
        self._handle: Any = None
        if track:
            self._handle = self.emb_module.register_forward_hook(self.hook)

    def hook(self, module: nn.Module, fea_in: Any, fea_out: Any) -> None:
        """bert4torch's forward hook on the embedding module: keeps its output (detached) as
        ``self.embed`` [batch, seq, hidden] and its shape for the next VAT loss."""
        if isinstance(fea_out, torch.Tensor):
            self.embed = fea_out.detach()
            self._last_shape = fea_out.shape

    _track = hook

    def forward_(self, train_X: Any, new_embed: torch.Tensor) -> Any:
        """The model's output on ``train_X`` with ``new_embed`` [batch, seq, hidden] in place
        of the embedding module's output (bert4torch feeds it as the first input; here a
        forward hook puts it there, so any model works). A list ``train_X`` is spread over
        ``forward`` as in :meth:`virtual_adversarial_training`."""

        def replace(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor) or output.shape != new_embed.shape:
                raise RuntimeError(
                    f"new_embed of shape {tuple(new_embed.shape)} does not fit the output of "
                    f"{self.emb_module_name!r} ({getattr(output, 'shape', type(output).__name__)})"
                )
            return new_embed.to(output.dtype)

        handle = self.emb_module.register_forward_hook(replace)
        try:
            return self._model_forward(train_X)
        finally:
            handle.remove()

    def _model_forward(self, train_X: Any) -> Any:
        if isinstance(train_X, (list, tuple)) and _takes_several(self.model):
            return self.model(*train_X)
        return self.model(train_X)

    @staticmethod
    def kl(inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        """``KL(softmax(targets) || softmax(inputs))`` over the last axis (float32)."""
        return kl_logits(inputs, targets, reduction)

    @staticmethod
    def adv_project(grad: torch.Tensor, norm_type: str = "inf", eps: float = 1e-6) -> torch.Tensor:
        """bert4torch's ``VAT.adv_project`` (its default ``norm_type='inf'``); see
        :func:`adv_project`."""
        return adv_project(grad, norm_type, eps)

    def remove(self) -> None:
        """Remove the tracking forward hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def run_clean(self, forward: Callable[[], Any]) -> tuple[Any, torch.Size]:
        """Run ``forward`` unperturbed; return its output and the embedding output's shape."""
        captured: list[torch.Size] = []
        handle = self.emb_module.register_forward_hook(
            lambda m, i, o: captured.append(o.shape) if isinstance(o, torch.Tensor) else None
        )
        try:
            output = forward()
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"the forward pass never ran the module {self.emb_module_name!r}")
        return output, captured[0]

    def _embedding_shape(self, forward: Callable[[], Any]) -> torch.Size:
        with torch.no_grad():
            return self.run_clean(forward)[1]

    def _perturbed(self, forward: Callable[[], Any], noise: torch.Tensor) -> torch.Tensor:
        """``forward`` with the embedding output replaced by ``sg(output) + noise``."""

        def hook(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor) or output.shape != noise.shape:
                raise RuntimeError(
                    f"VAT noise of shape {tuple(noise.shape)} does not fit the output of "
                    f"{self.emb_module_name!r} ({getattr(output, 'shape', type(output).__name__)})"
                )
            # bert4torch feeds ``embed.detach() + noise``: no gradient into the embedding here
            return output.detach() + noise.to(output.dtype)

        handle = self.emb_module.register_forward_hook(hook)
        try:
            return select_output(forward(), self.output_index)
        finally:
            handle.remove()

    def adversarial_loss(
        self,
        forward: Callable[[], Any],
        logits: torch.Tensor,
        embed_shape: Sequence[int] | None = None,
    ) -> torch.Tensor | None:
        """The VAT loss for ``logits`` [batch, ..., classes] of the clean input.

        ``forward`` re-runs the model on the same input (it must reach the
        embedding module); it is called twice with the perturbation hooked in
        (three times if ``embed_shape`` is not given and no tracked clean forward
        since the last call recorded the embedding output's shape). Returns ``None`` when the
        KL gradient is not finite (bert4torch's "gradient vanished" exit).
        """
        if embed_shape is not None:
            shape = torch.Size(embed_shape)
        elif self._last_shape is not None:
            shape = self._last_shape
        else:
            shape = self._embedding_shape(forward)
        self._last_shape = self.embed = None
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

        return self.adversarial_loss(lambda: self._model_forward(train_X), logits)


def _takes_several(model: nn.Module) -> bool:
    """bert4torch's rule: unpack a list input when ``forward`` names two or more arguments."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in params) >= 2
