"""PositionWiseFeedForward plain and gated."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from b4t.layers import PositionWiseFeedForward


def test_plain_and_gated_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    ffn = PositionWiseFeedForward(8, 16, "gelu")
    torch.testing.assert_close(ffn(x), ffn.output(F.gelu(ffn.intermediate(x))))
    gated = PositionWiseFeedForward(8, 16, "silu", is_gated=True, bias=False)
    assert gated.intermediate.bias is None
    expected = gated.output(F.silu(gated.intermediate(x)) * gated.gate(x))
    torch.testing.assert_close(gated(x), expected)
