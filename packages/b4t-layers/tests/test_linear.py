"""b4t.layers.Linear / linear: the batched-matmul path for a decoding step equals
``x @ W.T + b`` written out (in float64, and float32 within 1e-5), and is taken exactly
when it should be."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import b4t.layers.linear as linear_module
from b4t.layers import Linear
from b4t.layers.linear import few_rows_path, linear


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every call that takes the batched-matmul path (which
    small weights take here too: MIN_WEIGHT is lowered to 1)."""
    monkeypatch.setattr(linear_module, "MIN_WEIGHT", 1)
    calls: list[tuple[int, ...]] = []
    original = linear_module._few_rows_linear

    def recording(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        calls.append(tuple(x.shape))
        return original(x, weight, bias)

    monkeypatch.setattr(linear_module, "_few_rows_linear", recording)
    return calls


@pytest.mark.parametrize("out_features", [8, 37, 2304, 50257])  # 50257 = 8 * 6282 + 1
@pytest.mark.parametrize(
    "shape", [(1, 64), (1, 1, 64), (2, 1, 64), (4, 64), (2, 2, 64), (8, 64), (4, 8, 64)]
)
def test_few_rows_equal_the_formula(out_features: int, shape: tuple[int, ...], spy) -> None:
    g = torch.Generator().manual_seed(out_features)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    weight = torch.randn(out_features, 64, generator=g, dtype=torch.float64)
    bias = torch.randn(out_features, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = linear(x, weight, bias)
        no_bias = linear(x, weight)
    expected = torch.einsum("...i,oi->...o", x, weight)
    assert got.shape == (*shape[:-1], out_features)
    assert no_bias.is_contiguous()  # row-major like F.linear's (a softmax would copy it)
    torch.testing.assert_close(no_bias, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected + bias, rtol=1e-12, atol=1e-12)
    rows = x.numel() // 64
    wide = out_features >= 8 * 64  # an LM head: the path up to 32 rows, else up to 4
    takes_path = rows <= 4 or (wide and rows <= 32)
    assert spy == ([shape, shape] if takes_path else [])


def test_float32_matches_f_linear_within_1e_5(spy) -> None:
    g = torch.Generator().manual_seed(0)
    layer = Linear(768, 2304)
    x = torch.randn(1, 1, 768, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x), nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5
        )
    assert spy == [(1, 1, 768)]


def test_other_calls_use_f_linear(spy) -> None:
    layer = Linear(16, 32)
    with torch.no_grad():
        layer(torch.randn(5, 16))  # more than MAX_ROWS rows
        Linear(16, 128)(torch.randn(33, 16))  # wide, but more than MAX_ROWS_WIDE rows
        layer(torch.randn(0, 16))  # nothing to multiply
        Linear(16, 4)(torch.randn(1, 16))  # fewer output features than BLOCKS
        linear(torch.randn(1, 16), layer.weight.t().contiguous().t())  # strided weight
    out = layer(torch.randn(1, 16))  # autograd on: the training path
    out.sum().backward()
    assert layer.weight.grad is not None
    assert spy == []


def test_small_weights_use_f_linear_by_default(spy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linear_module, "MIN_WEIGHT", 1 << 18)
    with torch.no_grad():
        Linear(512, 511)(torch.randn(1, 512))  # 261,632 elements: below 2**18
        Linear(512, 512)(torch.randn(1, 512))  # T5-small's 512 x 512: the path
    assert spy == [(1, 512)]


def test_switch_off_for_a_block(spy) -> None:
    layer = Linear(16, 32)
    with torch.no_grad():
        with few_rows_path(False):
            layer(torch.randn(1, 16))
            with few_rows_path(True):  # nested: the inner setting, then the outer again
                layer(torch.randn(2, 16))
            linear(torch.randn(1, 16), layer.weight)
        layer(torch.randn(3, 16))  # the default again after the block
    assert spy == [(2, 16), (3, 16)]


def test_switch_off_per_layer_and_per_call(spy) -> None:
    off, on = Linear(16, 32), Linear(16, 32)
    off.few_rows_path = False
    with torch.no_grad():
        off(torch.randn(1, 16))
        on(torch.randn(2, 16))
        linear(torch.randn(3, 16), on.weight, few_rows=False)
        with few_rows_path(False):
            linear(torch.randn(4, 16), on.weight, few_rows=True)  # the call's setting wins
    assert spy == [(2, 16), (4, 16)]


def test_deprecated_module_switch_still_works(monkeypatch: pytest.MonkeyPatch, spy) -> None:
    with pytest.warns(DeprecationWarning, match="few_rows_path"):
        assert linear_module.FEW_ROWS_PATH is True
    with few_rows_path(False), pytest.warns(DeprecationWarning):
        assert linear_module.FEW_ROWS_PATH is False
    monkeypatch.setattr(linear_module, "FEW_ROWS_PATH", False, raising=False)
    with torch.no_grad(), pytest.warns(DeprecationWarning, match="few_rows_path"):
        Linear(16, 32)(torch.randn(1, 16))
    assert spy == []


def test_a_nn_linear_with_the_same_keys() -> None:
    layer = Linear(8, 16, bias=True)
    assert isinstance(layer, nn.Linear)
    plain = nn.Linear(8, 16)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 8)
    torch.testing.assert_close(plain(x), layer(x))


def test_mismatched_input_names_the_shapes() -> None:
    with torch.no_grad(), pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        Linear(16, 32)(torch.randn(1, 15))
