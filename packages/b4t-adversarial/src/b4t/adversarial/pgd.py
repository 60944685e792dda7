"""PGD: projected gradient descent on the embedding (Madry et al. 2018, bert4torch ``PGD``).

Each of ``K`` steps moves the embedding by ``alpha * g / ||g||_2`` and projects
the total perturbation ``r = E - E_0`` back onto the ball ``||r||_2 <= epsilon``::

    r <- r * epsilon / ||r||   if ||r|| > epsilon

The parameter gradients are backed up before the first step (``backup_grad``)
and put back before the last adversarial backward (``restore_grad``), so only
the last adversarial loss adds to the real gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.adversarial._embedding import find_embedding_parameters, restore_backup


class PGD:
    """K-step projected gradient attack on an embedding matrix.

    Args:
        model: the module holding the embedding.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.emb_backup: dict[str, torch.Tensor] = {}
        self.grad_backup: dict[str, torch.Tensor | None] = {}

    def attack(
        self,
        epsilon: float = 1.0,
        alpha: float = 0.3,
        emb_name: str = "word_embeddings",
        is_first_attack: bool = False,
        **_: Any,
    ) -> None:
        """One ascent step ``alpha * grad / ||grad||`` projected onto the ``epsilon`` ball."""
        for name, param in find_embedding_parameters(self.model, emb_name):
            if is_first_attack or name not in self.emb_backup:
                self.emb_backup[name] = param.data.clone()
            if param.grad is None:
                continue
            norm = torch.linalg.vector_norm(param.grad.float())
            if norm != 0 and torch.isfinite(norm):
                param.data.add_((alpha * param.grad.float() / norm).to(param.dtype))
                param.data.copy_(self.project(name, param.data, epsilon))

    def project(
        self,
        param_name: str | None = None,
        param_data: torch.Tensor | None = None,
        epsilon: float | None = None,
        *,
        name: str | None = None,
        data: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Clip the perturbation ``param_data - E_0`` [vocab, hidden] of the backed-up
        parameter ``param_name`` to L2 norm ``epsilon`` (``name=`` / ``data=`` are b4t
        0.1's keywords)."""
        param_name = _one("param_name", param_name, "name", name)
        param_data = _one("param_data", param_data, "data", data)
        if epsilon is None:
            raise TypeError("project() missing the argument epsilon")
        base = self.emb_backup[param_name]
        r = param_data - base
        norm = torch.linalg.vector_norm(r.float())
        if norm > epsilon:
            r = (r.float() * (epsilon / norm)).to(r.dtype)
        return base + r

    def restore(self, emb_name: str | None = None, **_: Any) -> None:
        """Put back the exact values saved by ``attack`` (``emb_name=None``: every
        parameter it moved; a name: the matching ones, each of which must have been
        attacked)."""
        restore_backup(self.model, self.emb_backup, emb_name)
        self.emb_backup = {}

    def backup_grad(self) -> None:
        """Save a copy of every trainable parameter's gradient (``None`` included)."""
        self.grad_backup = {
            name: (None if p.grad is None else p.grad.clone())
            for name, p in self.model.named_parameters()
            if p.requires_grad
        }

    def zero_grad(self) -> None:
        """Drop every trainable parameter's gradient (between attack steps)."""
        for p in self.model.parameters():
            if p.requires_grad:
                p.grad = None

    def restore_grad(self) -> None:
        """Put back the gradients saved by ``backup_grad``."""
        for name, p in self.model.named_parameters():
            if p.requires_grad and name in self.grad_backup:
                p.grad = self.grad_backup[name]
        self.grad_backup = {}


def _one(seed_name: str, seed_value: Any, b4t_name: str, b4t_value: Any) -> Any:
    """The one of bert4torch's and b4t's spellings of an argument that was given."""
    if (seed_value is None) == (b4t_value is None):
        raise TypeError(f"project() takes {seed_name} (or {b4t_name}=) exactly once")
    return b4t_value if seed_value is None else seed_value
