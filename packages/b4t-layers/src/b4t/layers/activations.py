"""Activation functions by name, as in bert4torch / transformers configs (``hidden_act``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "ACT2FN",
    "UnknownActivationError",
    "gelu",
    "gelu_fast",
    "gelu_new",
    "get_activation",
    "linear_act",
    "mish",
    "quick_gelu",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "swish",
    "tanh",
]


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
"""The same function as :func:`swish` (``x * sigmoid(x)``), under transformers' name."""


def relu(x: torch.Tensor) -> torch.Tensor:
    """Rectified linear unit. Any shape."""
    return F.relu(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Hyperbolic tangent. Any shape."""
    return torch.tanh(x)


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """Tanh GELU with the constant ``sqrt(2/pi)`` rounded to ``0.7978845608``. Any shape."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(1.702 x)`` (CLIP's fast GELU). Any shape."""
    return x * torch.sigmoid(1.702 * x)


def mish(x: torch.Tensor) -> torch.Tensor:
    """``x * tanh(softplus(x))`` (Misra 2019). Any shape."""
    return F.mish(x)


def linear_act(x: torch.Tensor) -> torch.Tensor:
    """The identity (``'linear'``). Any shape."""
    return x


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Logistic sigmoid. Any shape."""
    return torch.sigmoid(x)


def softmax(x: Any, axis: int = -1) -> Any:
    """Softmax over ``axis`` (the last by default; bert4torch's ``'softmax'``, e.g.
    ``with_mlm='softmax'``). A tensor gives a tensor; a numpy array (or a list) a numpy
    array, as bert4torch's ``snippets.softmax`` does. Any shape."""
    if isinstance(x, torch.Tensor):
        return torch.softmax(x, dim=axis)
    import numpy as np

    x = np.asarray(x)
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "gelu_python": _gelu_python,
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_new,
    "gelu_fast": gelu_fast,
    "quick_gelu": quick_gelu,
    "mish": mish,
    "swish": swish,
    "silu": silu,
    "relu": relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "linear": linear_act,
    "softmax": softmax,
}
"""Activation functions by the names configs use (``hidden_act``), as transformers names them."""


class UnknownActivationError(KeyError, ValueError):
    """An activation name not in :data:`ACT2FN`.

    A ``KeyError`` as bert4torch raises, and a ``ValueError`` as b4t 0.1 raised, so
    code catching either keeps working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_UNSET: Any = object()


def get_activation(
    activation_string: str | Callable[[torch.Tensor], torch.Tensor] = _UNSET,
    *,
    name: str | Callable[[torch.Tensor], torch.Tensor] = _UNSET,
) -> Callable:
    """Return the activation function called ``activation_string`` (a callable passes
    through); ``name=`` is b4t 0.1's keyword for it.

    Names are case-insensitive. Raises :class:`UnknownActivationError` (a ``KeyError``
    and a ``ValueError``) naming the unknown activation and the known ones.
    """
    if (activation_string is _UNSET) == (name is _UNSET):
        raise TypeError("get_activation() takes the name once: activation_string (or name=)")
    if activation_string is not _UNSET:
        name = activation_string
    if callable(name):
        return name
    key = str(name).lower()
    if key not in ACT2FN:
        raise UnknownActivationError(
            f"unknown activation {name!r}; known: {', '.join(sorted(ACT2FN))}"
        )
    return ACT2FN[key]
