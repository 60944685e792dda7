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

    def project(self, name: str, data: torch.Tensor, epsilon: float) -> torch.Tensor:
        """Clip the perturbation ``data - E_0`` [vocab, hidden] to L2 norm ``epsilon``."""
        base = self.emb_backup[name]
        r = data - base
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
