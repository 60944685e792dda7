"""PackedLinear: oneDNN-packed float32 weights equal nn.Linear, round-trip state dicts,
refuse training and moves, and swap in and out of a model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers import Linear, PackedLinear, pack_linears, packing_available, unpack_linears

pytestmark = pytest.mark.skipif(not packing_available(), reason="torch without oneDNN")


def _layer(out_features: int = 96, in_features: int = 64, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features, bias=bias)


@pytest.mark.parametrize("shape", [(1, 64), (8, 64), (3, 5, 64), (40, 64)])
@pytest.mark.parametrize("bias", [True, False])
def test_outputs_equal_linear(shape: tuple[int, ...], bias: bool) -> None:
    layer = _layer(bias=bias)
    packed = PackedLinear.from_linear(layer)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), layer(x), rtol=1e-5, atol=1e-5)


def test_a_row_does_not_depend_on_the_other_rows() -> None:
    packed = PackedLinear.from_linear(_layer(576, 576))
    x = torch.randn(16, 576)
    alone = packed(x[:1])
    for rows in (2, 5, 8, 12, 16):
        assert torch.equal(packed(x[:rows])[:1], alone)


def test_state_dict_is_the_plain_one_and_loads_back() -> None:
    layer = _layer()
    packed = PackedLinear.from_linear(layer)
    state = packed.state_dict()
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], layer.weight.detach())
    other = PackedLinear.from_linear(_layer(bias=True).requires_grad_(False).apply(
        lambda m: torch.nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None
    ))  # fmt: skip
    other.load_state_dict(state)
    assert torch.equal(other.weight, layer.weight.detach())
    x = torch.randn(4, 64)
    assert torch.equal(other(x), packed(x))
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        other.load_state_dict({"weight": torch.zeros(3, 3), "bias": state["bias"]})
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({"weight": state["weight"]})


def test_inference_only_and_stays_on_cpu_float32() -> None:
    packed = PackedLinear.from_linear(_layer())
    with pytest.raises(RuntimeError, match="inference only"):
        packed(torch.randn(2, 64, requires_grad=True))
    with pytest.raises(ValueError, match="float32 CPU input"):
        packed(torch.randn(2, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expects \[\.\.\., 64\]"):
        packed(torch.randn(2, 65))
    with pytest.raises(RuntimeError, match="stays float32 on CPU"):
        packed.double()
    packed.float()  # a no-op cast is fine
    with pytest.raises(ValueError, match="only float32 CPU weights"):
        PackedLinear(torch.zeros(4, 4, dtype=torch.float16))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.up = Linear(64, 256)
        self.down = nn.Linear(256, 64, bias=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.gelu(self.down(F.gelu(self.up(x)))))


def test_pack_and_unpack_a_model() -> None:
    net = _Net().eval()
    x = torch.randn(8, 64)
    with torch.no_grad():
        expected = net(x)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        assert pack_linears(net, skip=("head",)) == ["up", "down"]
        assert isinstance(net.up, PackedLinear) and isinstance(net.head, nn.Linear)
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
        after = net.state_dict()
        assert list(after) == list(before)
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert unpack_linears(net) == ["up", "down"]
        assert type(net.up) is Linear and type(net.down) is Linear
        assert all(torch.equal(net.state_dict()[k], before[k]) for k in before)
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
