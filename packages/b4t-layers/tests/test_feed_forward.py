"""PositionWiseFeedForward plain and gated, against formulas written with raw tensors."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers import PositionWiseFeedForward


def _erf_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def test_plain_and_gated_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.double)
    w1, b1 = torch.randn(16, 8, dtype=torch.double), torch.randn(16, dtype=torch.double)
    w2, b2 = torch.randn(8, 16, dtype=torch.double), torch.randn(8, dtype=torch.double)
    ffn = PositionWiseFeedForward(8, 16, hidden_act="gelu").double()
    ffn.load_state_dict(
        {"intermediate.weight": w1, "intermediate.bias": b1, "output.weight": w2, "output.bias": b2}
    )
    expected = _erf_gelu(x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(ffn(x), expected)

    wg = torch.randn(16, 8, dtype=torch.double)
    gated = PositionWiseFeedForward(8, 16, hidden_act="silu", is_gated=True, bias=False).double()
    assert gated.intermediate.bias is None
    gated.load_state_dict({"intermediate.weight": w1, "gate.weight": wg, "output.weight": w2})
    h = x @ w1.T
    expected = ((h * torch.sigmoid(h)) * (x @ wg.T)) @ w2.T
    torch.testing.assert_close(gated(x), expected)


def test_seed_positional_order_and_names() -> None:
    """bert4torch's order (hidden, inner, dropout_rate, hidden_act, is_dropout) and names."""
    torch.manual_seed(1)
    ffn = PositionWiseFeedForward(4, 6, 0.3, "relu", True)
    assert ffn.dropout is not None and ffn.dropout.p == 0.3
    assert PositionWiseFeedForward(4, 6, 0.3, "relu").dropout is None  # is_dropout off
    w1, w2 = torch.randn(6, 4), torch.randn(4, 6)
    ffn.load_state_dict(
        {
            "intermediateDense.weight": w1,
            "intermediateDense.bias": torch.zeros(6),
            "outputDense.weight": w2,
            "outputDense.bias": torch.zeros(4),
        }
    )
    x = torch.randn(2, 4)
    torch.testing.assert_close(ffn.eval()(x), (x @ w1.T).clamp(min=0) @ w2.T)
    with pytest.raises(TypeError, match="third argument is dropout_rate"):
        PositionWiseFeedForward(4, 6, "gelu")
