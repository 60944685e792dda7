"""Activations by name."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers import get_activation


def test_known_activations_by_formula() -> None:
    x = torch.linspace(-3, 3, 13)
    erf_gelu = x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    torch.testing.assert_close(get_activation("gelu")(x), erf_gelu)
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(get_activation("gelu_new")(x), tanh_gelu)
    torch.testing.assert_close(get_activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(get_activation("RELU")(x), x.clamp(min=0))
    assert get_activation(torch.tanh) is torch.tanh


def test_unknown_activation_is_named() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelux'"):
        get_activation("gelux")
