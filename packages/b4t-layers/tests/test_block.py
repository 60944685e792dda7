"""TransformerBlock post-norm and pre-norm orderings against hand composition."""

from __future__ import annotations

import torch

from b4t.layers import TransformerBlock


def _block(pre_norm: bool) -> TransformerBlock:
    torch.manual_seed(0)
    return TransformerBlock(8, 2, 12, pre_norm=pre_norm, layer_norm_eps=1e-6).eval()


def test_post_norm_order() -> None:
    block = _block(False)
    x = torch.randn(2, 3, 8)
    h = block.norm1(x + block.attention(x)[0])
    expected = block.norm2(h + block.ffn(h))
    torch.testing.assert_close(block(x)[0], expected)


def test_pre_norm_order() -> None:
    block = _block(True)
    x = torch.randn(2, 3, 8)
    h = x + block.attention(block.norm1(x))[0]
    expected = h + block.ffn(block.norm2(h))
    torch.testing.assert_close(block(x)[0], expected)


def test_dropout_only_in_training() -> None:
    block = _block(False)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(block(x)[0], block(x)[0])
    block.train()
    assert not torch.allclose(block(x)[0], block(x)[0])
