"""LayerNorm (plain, conditional, rms mode) and RMSNorm against their formulas."""

from __future__ import annotations

import pytest
import torch

from b4t.layers import LayerNorm, RMSNorm


def test_layer_norm_formula() -> None:
    torch.manual_seed(0)
    ln = LayerNorm(6, eps=1e-5)
    with torch.no_grad():
        ln.weight.uniform_()
        ln.bias.uniform_()
    x = torch.randn(2, 3, 6)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * ln.weight + ln.bias
    torch.testing.assert_close(ln(x), expected, atol=1e-5, rtol=1e-5)


def test_rms_norms() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(RMSNorm(5, eps=1e-6)(x), expected)
    ln = LayerNorm(5, eps=1e-6, bias=False, norm_mode="rmsnorm")
    assert ln.bias is None
    torch.testing.assert_close(ln(x), expected)
    with pytest.raises(ValueError, match="norm_mode"):
        LayerNorm(5, norm_mode="batch")


def test_conditional_layer_norm_starts_as_plain_and_uses_the_condition() -> None:
    torch.manual_seed(0)
    ln = LayerNorm(6, conditional_size=3)
    x, cond = torch.randn(2, 4, 6), torch.randn(2, 3)
    torch.testing.assert_close(ln(x, cond), ln(x))  # zero-initialised projections
    with torch.no_grad():
        ln.dense1.weight.fill_(0.1)
    gain = 1 + cond @ ln.dense1.weight.T  # [2, 6]
    plain = torch.nn.functional.layer_norm(x, (6,), eps=1e-12)
    torch.testing.assert_close(ln(x, cond), plain * gain[:, None, :], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="without conditional_size"):
        LayerNorm(6)(x, cond)
