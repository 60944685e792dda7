"""Find the embedding a perturbation goes into, by (sub)name.

bert4torch matches ``emb_name in parameter_name``; so do we, but a name that
matches nothing is an error listing the names that could have been meant.
"""

from __future__ import annotations

import torch
from torch import nn


def _candidates(model: nn.Module) -> list[str]:
    """Names of parameters owned by ``nn.Embedding`` modules or containing ``emb``."""
    names: list[str] = []
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            prefix = f"{module_name}." if module_name else ""
            names.extend(prefix + n for n, _ in module.named_parameters(recurse=False))
    for name, _ in model.named_parameters():
        if "emb" in name.lower() and name not in names:
            names.append(name)
    return names


def find_embedding_parameters(model: nn.Module, emb_name: str) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters of ``model`` whose name contains ``emb_name``.

    Raises:
        ValueError: no trainable parameter matches; the message lists candidates.
    """
    if not isinstance(emb_name, str) or not emb_name:
        raise TypeError(f"emb_name must be a non-empty str, got {emb_name!r}")
    found = [(n, p) for n, p in model.named_parameters() if p.requires_grad and emb_name in n]
    if not found:
        raise ValueError(
            f"no trainable parameter of {type(model).__name__} has {emb_name!r} in its name; "
            f"embedding candidates: {_candidates(model) or '(none)'}"
        )
    return found


def find_embedding_module(model: nn.Module, emb_name: str) -> tuple[str, nn.Module]:
    """The first module whose qualified name contains ``emb_name`` (for output perturbation).

    Prefers an exact last-component match (``...word_embeddings``) over a substring match.

    Raises:
        ValueError: no module matches; the message lists candidates.
    """
    if not isinstance(emb_name, str) or not emb_name:
        raise TypeError(f"emb_name must be a non-empty str, got {emb_name!r}")
    named = [(n, m) for n, m in model.named_modules() if n]
    for name, module in named:
        if name.split(".")[-1] == emb_name or name == emb_name:
            return name, module
    for name, module in named:
        if emb_name in name:
            return name, module
    modules = [n for n, m in named if isinstance(m, nn.Embedding) or "emb" in n.lower()]
    raise ValueError(
        f"no module of {type(model).__name__} has {emb_name!r} in its name; "
        f"embedding candidates: {modules or '(none)'}"
    )


def restore_backup(model: nn.Module, backup: dict[str, torch.Tensor], emb_name: str | None) -> None:
    """Copy the values an attack saved in ``backup`` (``{parameter name: tensor}``) back.

    ``emb_name=None`` restores every saved parameter (bert4torch's default ``'emb'``
    would also match position / segment embeddings that were never backed up); a name
    restores the matching parameters, each of which must have been saved.
    """
    if emb_name is None:
        params = dict(model.named_parameters())
        for name, saved in backup.items():
            params[name].data.copy_(saved)
        return
    for name, param in find_embedding_parameters(model, emb_name):
        if name not in backup:
            raise RuntimeError(f"restore() before attack(): no backup for {name!r}")
        param.data.copy_(backup[name])
