"""Activation functions by name, as in bert4torch / transformers configs (``hidden_act``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["ACT2FN", "gelu", "gelu_new", "get_activation", "relu", "silu", "swish", "tanh"]


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, ``x * Phi(x)`` (the erf form BERT uses). Any shape."""
    return F.gelu(x)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (GPT-2, ALBERT's ``gelu_new``). Any shape."""
    return F.gelu(x, approximate="tanh")


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``, also called SiLU. Any shape."""
    return F.silu(x)


silu = swish


def relu(x: torch.Tensor) -> torch.Tensor:
    """Rectified linear unit. Any shape."""
    return F.relu(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Hyperbolic tangent. Any shape."""
    return torch.tanh(x)


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "gelu_python": _gelu_python,
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_new,
    "gelu_fast": _gelu_fast,
    "quick_gelu": _quick_gelu,
    "swish": swish,
    "silu": silu,
    "relu": relu,
    "tanh": tanh,
    "sigmoid": _sigmoid,
    "linear": _linear,
}


def get_activation(name: str | Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """Return the activation function called ``name`` (a callable passes through).

    Raises ``ValueError`` naming the unknown activation and the known ones.
    """
    if callable(name):
        return name
    key = str(name).lower()
    if key not in ACT2FN:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACT2FN))}")
    return ACT2FN[key]
