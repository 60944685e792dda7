"""MultiHeadAttention: SDPA vs explicit math, hooks, KV cache."""

from __future__ import annotations

import math

import pytest
import torch

import b4t.layers
from b4t.layers import MultiHeadAttention, to_additive_mask


def _reference(att: MultiHeadAttention, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Attention written out with separate q/k/v slices of the fused weight."""
    b, length, _ = x.shape
    n, d = att.num_heads, att.head_size
    wq, wk, wv = att.qkv.weight.chunk(3)
    bq, bk, bv = att.qkv.bias.chunk(3)
    q = (x @ wq.T + bq).view(b, length, n, d).transpose(1, 2)
    k = (x @ wk.T + bk).view(b, length, n, d).transpose(1, 2)
    v = (x @ wv.T + bv).view(b, length, n, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if bias is not None:
        scores = scores + bias
    ctx = scores.softmax(-1) @ v
    return att.o(ctx.transpose(1, 2).reshape(b, length, n * d))


def test_sdpa_and_eager_paths_match_the_formula() -> None:
    torch.manual_seed(0)
    att = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    bias = to_additive_mask(keep[:, None, None, :])
    expected = _reference(att, x, bias)
    fast, probs, _ = att(x, bias)
    eager, probs2, _ = att(x, bias, output_attentions=True)
    assert probs is None and probs2.shape == (2, 4, 5, 5)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager, expected, atol=1e-5, rtol=1e-5)
    assert torch.all(probs2[1, :, :, 3:] == 0)  # padded keys get no weight
    torch.testing.assert_close(probs2.sum(-1), torch.ones(2, 4, 5))


def test_position_bias_is_added_to_the_scores() -> None:
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 4, 8)
    pos = torch.randn(1, 2, 4, 4)
    expected = _reference(att, x, pos)
    torch.testing.assert_close(att(x, position_bias=pos)[0], expected, atol=1e-5, rtol=1e-5)


class _ScoreOffset(MultiHeadAttention):
    """A subclass using the hooks: adds a per-query constant to every score row (no effect
    after softmax) and doubles the context."""

    def needs_eager(self, **kwargs):
        return True

    def attention_scores(self, q, k, **kwargs):
        return super().attention_scores(q, k) + kwargs["offset"]

    def attention_context(self, probs, v, **kwargs):
        return 2 * super().attention_context(probs, v)


def test_subclass_hooks_reach_the_eager_path() -> None:
    torch.manual_seed(0)
    att = _ScoreOffset(8, 2).eval()
    x = torch.randn(1, 4, 8)
    out = att(x, offset=torch.randn(1, 2, 4, 1))[0]
    plain = MultiHeadAttention(8, 2).eval()
    plain.load_state_dict(att.state_dict())
    ctx_plain = plain(x)[0] - plain.o.bias
    torch.testing.assert_close(out - att.o.bias, 2 * ctx_plain, atol=1e-5, rtol=1e-5)


def test_kv_cache_step_equals_full_causal_pass() -> None:
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 2, is_causal=True).eval()
    x = torch.randn(1, 6, 8)
    full = att(x)[0]
    first, _, cache = att(x[:, :5], use_cache=True)
    step, _, cache = att(x[:, 5:], past_key_value=cache, use_cache=True)
    assert cache[0].shape == (1, 2, 6, 4)
    torch.testing.assert_close(first, full[:, :5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step, full[:, 5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", ["MultiHeadAttention", "GroupedQueryAttention"])
def test_head_width_must_divide_the_hidden_size(cls: str) -> None:
    layer_cls = getattr(b4t.layers, cls)
    with pytest.raises(
        ValueError, match="hidden_size 10 is not a multiple of num_attention_heads 3"
    ):
        layer_cls(10, 3)
    assert layer_cls(10, 3, attention_head_size=4).head_size == 4  # an explicit width is kept
