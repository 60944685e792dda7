"""FGM: fast gradient method on the embedding (Miyato et al. 2017, bert4torch ``FGM``).

    r_adv = epsilon * g / ||g||_2,   g = d loss / d E

``attack`` adds ``r_adv`` to every matching embedding matrix ``E`` (backing it
up first); ``restore`` puts the exact backed-up values back. Typical loop::

    loss.backward()
    fgm.attack(epsilon=1.0, emb_name="word_embeddings")
    model_loss(batch).backward()   # gradient of the adversarial loss adds up
    fgm.restore(emb_name="word_embeddings")
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.adversarial._embedding import find_embedding_parameters, restore_backup


class FGM:
    """Fast gradient method perturbation of an embedding matrix.

    Args:
        model: the module holding the embedding.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.backup: dict[str, torch.Tensor] = {}

    def attack(self, epsilon: float = 1.0, emb_name: str = "word_embeddings", **_: Any) -> None:
        """Move each matching embedding ``E`` [vocab, hidden] by ``epsilon * grad / ||grad||``.

        A parameter without a gradient, or with a zero / non-finite gradient norm,
        is backed up but left where it is.
        """
        for name, param in find_embedding_parameters(self.model, emb_name):
            self.backup[name] = param.data.clone()
            if param.grad is None:
                continue
            norm = torch.linalg.vector_norm(param.grad.float())
            if norm != 0 and torch.isfinite(norm):
                param.data.add_((epsilon * param.grad.float() / norm).to(param.dtype))

    def restore(self, emb_name: str | None = None, **_: Any) -> None:
        """Put back the exact values saved by ``attack`` (``emb_name=None``: every
        parameter it moved; a name: the matching ones, each of which must have been
        attacked)."""
        restore_backup(self.model, self.backup, emb_name)
        self.backup = {}
