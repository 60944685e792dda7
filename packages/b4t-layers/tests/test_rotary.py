"""Rotary position embedding: hand-computed values, relative property, transformers parity."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers.rotary import RoPEPositionEncoding, apply_rotary, rotary_cos_sin


def test_hand_computed_rotation_dim4():
    rope = RoPEPositionEncoding(16, 4)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 3)  # (seq=3, dim=4)
    out = rope(x)
    for pos in range(3):
        a0, a1 = pos * 1.0, pos * 10000 ** (-2 / 4)
        expected = [
            1 * math.cos(a0) - 2 * math.sin(a0),
            2 * math.cos(a0) + 1 * math.sin(a0),
            3 * math.cos(a1) - 4 * math.sin(a1),
            4 * math.cos(a1) + 3 * math.sin(a1),
        ]
        torch.testing.assert_close(out[pos], torch.tensor(expected), atol=1e-6, rtol=0)


def test_position_zero_is_identity_and_norm_preserved():
    rope = RoPEPositionEncoding(None, 8)
    x = torch.randn(2, 3, 5, 8)
    out = rope(x)
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_scores_depend_only_on_relative_distance():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rotary_cos_sin(torch.arange(20), 8)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n])

    torch.testing.assert_close(score(3, 1), score(12, 10), atol=1e-5, rtol=0)
    torch.testing.assert_close(score(0, 5), score(9, 14), atol=1e-5, rtol=0)


def test_position_ids_and_offset_match_slices():
    rope = RoPEPositionEncoding(64, 6)
    x = torch.randn(2, 2, 10, 6)
    full = rope(x)
    torch.testing.assert_close(rope(x[:, :, 4:], offset=4), full[:, :, 4:])
    pos = torch.arange(10).expand(2, 10)
    torch.testing.assert_close(rope(x, position_ids=pos), full)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="even"):
        RoPEPositionEncoding(8, 5)
    rope = RoPEPositionEncoding(8, 4)
    with pytest.raises(ValueError, match="max_position=8"):
        rope(torch.randn(1, 9, 4))
    with pytest.raises(ValueError, match="last dim 4"):
        rope(torch.randn(1, 3, 6))


def test_matches_transformers_roformer():
    modeling = pytest.importorskip("transformers.models.roformer.modeling_roformer")
    head_dim, seq = 16, 40
    table = modeling.RoFormerSinusoidalPositionalEmbedding(64, head_dim)
    table.weight.data = table.create_weight()
    sinusoidal = table(torch.Size([2, seq]))[None, None]  # (1, 1, seq, head_dim)
    q, k = torch.randn(2, 3, seq, head_dim), torch.randn(2, 3, seq, head_dim)
    ref_q, ref_k = modeling.RoFormerSelfAttention.apply_rotary_position_embeddings(sinusoidal, q, k)
    rope = RoPEPositionEncoding(64, head_dim)
    torch.testing.assert_close(rope(q), ref_q, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rope(k), ref_k, atol=1e-6, rtol=1e-6)


def test_rotary_attention_sdpa_equals_eager_and_manual():
    from b4t.layers.rotary import RotaryAttention

    torch.manual_seed(0)
    att = RotaryAttention(8, 2, max_position=16).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        fast, probs_none, _ = att(x)
        slow, probs, _ = att(x, output_attentions=True)
        q, k, v = att.split_heads(x)
        rope = RoPEPositionEncoding(16, 4)
        p = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / 2.0, -1)
        manual = att.o((p @ v).transpose(1, 2).reshape(2, 5, 8))
    assert probs_none is None and probs is not None
    torch.testing.assert_close(fast, manual, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(slow, manual, atol=1e-6, rtol=1e-5)


def test_rotary_attention_kv_cache_matches_full_causal():
    from b4t.layers.rotary import RotaryAttention

    torch.manual_seed(0)
    att = RotaryAttention(8, 2, is_causal=True).eval()
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        full, _, _ = att(x)
        first, _, cache = att(x[:, :4], use_cache=True)
        last, _, _ = att(x[:, 4:5], past_key_value=cache)
    torch.testing.assert_close(first, full[:, :4], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, full[:, 4:5], atol=1e-6, rtol=1e-5)


class _GrowingCache:
    """A layer cache object as b4t.models' LayerKV: ``update`` appends, ``length`` counts,
    and indexing an empty cache is an error (so the offset must come from ``length``)."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], 2)
        self.v = v if self.v is None else torch.cat([self.v, v], 2)
        self.length = self.k.shape[2]
        return self.k, self.v

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.k is None or self.v is None:
            raise IndexError("the layer cache is empty")
        return (self.k, self.v)[index]


def test_rotary_attention_starts_from_an_empty_layer_cache():
    from b4t.layers.attention import cached_length
    from b4t.layers.rotary import RotaryAttention

    torch.manual_seed(0)
    att = RotaryAttention(8, 2, is_causal=True).eval()
    x = torch.randn(1, 6, 8)
    cache = _GrowingCache()
    assert cached_length(None) == 0 and cached_length(cache) == 0
    with torch.no_grad():
        full, _, _ = att(x)
        first, _, _ = att(x[:, :4], past_key_value=cache)
        assert cached_length(cache) == 4 == cached_length((cache.k, cache.v))
        last, _, _ = att(x[:, 4:6], past_key_value=cache)
    torch.testing.assert_close(first, full[:, :4], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, full[:, 4:6], atol=1e-6, rtol=1e-5)
