"""bert4torch's classic layers: BertLayer (post-norm) and T5Layer (pre-norm) share one forward."""

from __future__ import annotations

import torch

from b4t.layers import BertLayer, T5Layer


def _layer(cls: type, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = cls(8, 2, 0.0, 0.0, 12, "relu", is_decoder=True, **kwargs).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    return layer


def test_feed_forward_kwargs_reach_the_feed_forward_alone() -> None:
    layer = _layer(T5Layer, version="t5.1.1", bias=True)
    assert layer.feedForward.gate is not None  # gated, bias-free
    assert layer.feedForward.intermediate.bias is None
    assert layer.multiHeadAttention.q.bias is not None  # the attention keeps bias=True
    plain = _layer(BertLayer, bias=True)
    assert plain.feedForward.gate is None and plain.feedForward.intermediate.bias is not None


def _by_hand(layer: torch.nn.Module, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The three residual steps written out in the layer's order."""
    steps = (
        (layer.layerNorm1, lambda t: layer.multiHeadAttention(t, None)),
        (layer.layerNorm3, lambda t: layer.crossAttention(t, None, memory, None)),
        (layer.layerNorm2, layer.feedForward),
    )
    h = x
    for norm, sublayer in steps:
        if isinstance(layer, T5Layer):
            h = h + sublayer(norm((h, None)))
        else:
            h = norm((h + sublayer(h), None))
    return h


def test_post_norm_and_pre_norm_orders() -> None:
    g = torch.Generator().manual_seed(1)
    x, memory = torch.randn(2, 5, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    for cls in (BertLayer, T5Layer):
        layer = _layer(cls)
        with torch.no_grad():
            torch.testing.assert_close(
                layer(x, None, None, memory, None), _by_hand(layer, x, memory)
            )
