"""Small parts of :class:`~b4t.models.transformer.Transformer`: the skipped layer, the
conditional embedding norm, the hierarchical position table and option helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from b4t.layers import LayerNorm, MultiHeadAttention
from b4t.models.config import ModelConfig

__all__ = [
    "APPLICATIONS",
    "EmbeddingNorm",
    "SkippedLayer",
    "checked_application",
    "conditional_size",
    "count_modules",
    "head_activation",
    "hierarchical_positions",
    "kept_layers",
    "refuse_unknown_options",
    "unscale_attention",
]

APPLICATIONS = ("encoder", "lm", "unilm")


def hierarchical_positions(table: torch.Tensor, size: int, alpha: float = 0.4) -> torch.Tensor:
    """Extend a learned position table ``[n, E]`` to ``[size, E]`` (hierarchical decomposition).

    With ``u = (table - alpha * table[0]) / (1 - alpha)``, position ``p`` gets
    ``alpha * u[p // n] + (1 - alpha) * u[p % n]`` (Su, 2020; bert4torch's
    ``hierarchical_position``); the first ``n`` rows equal ``table``.
    """
    n = table.shape[0]
    if size > n * n:
        raise ValueError(f"hierarchical_position extends {n} positions to at most {n * n}")
    u = (table - alpha * table[:1]) / (1 - alpha)
    pos = torch.arange(size, device=table.device)
    return alpha * u[pos // n] + (1 - alpha) * u[pos % n]


def conditional_size(module: nn.Module | None) -> int | None:
    """Width of the condition ``layer_norm_cond`` produces (its weight's second dim, as 0.2.5)."""
    if module is None:
        return None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(
            "layer_norm_cond must be a module with a 2-D weight (nn.Embedding, nn.Linear), "
            f"got {type(module).__name__}"
        )
    return int(weight.shape[1])


def head_activation(flag: bool | str, default: str) -> str:
    """``True`` -> the head's default activation; a string names one (``'linear'``: none)."""
    return default if flag is True else str(flag)


def checked_application(application: str) -> str:
    """``application`` lower-cased; ValueError unless it is one of :data:`APPLICATIONS`."""
    application = str(application).lower()
    if application not in APPLICATIONS:
        raise ValueError(f"unknown application={application!r}; use one of {APPLICATIONS}")
    return application


def count_modules(modules: Sequence[nn.Module] | nn.Module | None) -> int:
    """How many modules ``layer_add_embs`` holds (one module, a list, or None)."""
    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList):
        return 1
    return len(modules or [])


class SkippedLayer(nn.Module):
    """A layer left out by ``keep_hidden_layers``: returns its input unchanged.

    ``forward(x [B, L, H], ...)`` -> ``(x, None, None)``, the block protocol.
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[Any, None, None]:
        """``(x, None, None)``: the input passed through."""
        return x, None, None


class EmbeddingNorm(LayerNorm):
    """The embedding LayerNorm of a conditional model: takes its ``cond`` from the model.

    :class:`b4t.layers.Embeddings` calls its norm with one argument; the model sets
    ``pending_cond`` for the duration of one embedding call.
    """

    pending_cond: torch.Tensor | None = None

    def forward(self, x: Any, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The norm of ``x [..., H]`` with ``cond`` or, when None, the model's pending one."""
        return super().forward(x, cond if cond is not None else self.pending_cond)

    @classmethod
    def replacing(cls, old: LayerNorm, cond_size: int) -> EmbeddingNorm:
        """A conditional norm with ``old``'s shape and options (its weights start fresh)."""
        return cls(
            old.hidden_size,
            old.eps,
            cond_size,
            weight=old.weight is not None,
            bias=old.bias is not None,
            norm_mode=old.norm_mode,
        )


def kept_layers(config: ModelConfig, keep_hidden_layers: Sequence[int] | None) -> set[int]:
    """``keep_hidden_layers`` as a set (default every layer), checked against the stack."""
    n_layers = config.num_hidden_layers
    kept = set(range(n_layers)) if keep_hidden_layers is None else set(keep_hidden_layers)
    bad = sorted(i for i in kept if not 0 <= int(i) < n_layers)
    if bad:
        raise ValueError(f"keep_hidden_layers holds {bad}, outside 0..{n_layers - 1}")
    if config.share_layers and keep_hidden_layers is not None:
        raise ValueError("keep_hidden_layers needs unshared layers (not model='albert')")
    return kept


def unscale_attention(layers: Sequence[nn.Module], model_name: str) -> None:
    """``attention_scale=False`` (0.2.5's option): scores are not divided by
    ``sqrt(head_size)``. Every layer's attention must take a ``scale`` (b4t's
    :class:`~b4t.layers.MultiHeadAttention` family), else the option is refused."""
    for layer in layers:
        if isinstance(layer, SkippedLayer):
            continue
        attention = getattr(layer, "attention", None)
        own = getattr(type(attention), "attention_scores", None)
        if not isinstance(attention, MultiHeadAttention) or (
            own is not MultiHeadAttention.attention_scores
        ):
            raise ValueError(
                f"attention_scale=False is not supported by {model_name} "
                f"(its {type(attention).__name__} scales its scores its own way)"
            )
        attention.scale = 1.0


def refuse_unknown_options(kwargs: dict[str, Any], model_name: str) -> None:
    """TypeError naming the keyword arguments no build option or config field takes."""
    if kwargs:
        raise TypeError(
            f"unknown keyword argument(s) for model={model_name!r}: "
            f"{', '.join(sorted(kwargs))} (neither a build option nor a ModelConfig field)"
        )
