"""Relative positions: NEZHA table, T5 buckets and DeBERTa-v2 log buckets."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers.relative_positions import (
    NezhaRelativePositions,
    T5RelativePositionBias,
    deberta_log_bucket_position,
    deberta_relative_position,
    relative_distance,
    t5_relative_position_bucket,
)


def test_relative_distance_is_key_minus_query():
    rel = relative_distance(2, 3)
    assert rel.tolist() == [[0, 1, 2], [-1, 0, 1]]


def test_nezha_encoding_hand_computed():
    enc = NezhaRelativePositions(depth=4, max_relative_position=2)
    out = enc(4, 4)
    assert out.shape == (4, 4, 4)

    def row(r: int) -> list[float]:
        return [math.sin(r), math.cos(r), math.sin(r / 100), math.cos(r / 100)]

    # [i, j] uses row clip(j - i, -2, 2) + 2
    for i, j, r in [(0, 0, 2), (0, 3, 4), (3, 0, 0), (2, 1, 1), (1, 2, 3)]:
        torch.testing.assert_close(out[i, j], torch.tensor(row(r)), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("rel", "bucket"),
    [(0, 0), (-3, 3), (3, 19), (-8, 8), (-20, 10), (20, 26), (-200, 15), (200, 31)],
)
def test_t5_bidirectional_buckets_hand_computed(rel: int, bucket: int):
    # 32 buckets, 16 per direction, 8 exact, log up to 128:
    # -20 -> 8 + int(log(20/8) / log(128/8) * 8) = 8 + 2
    got = t5_relative_position_bucket(torch.tensor([rel]), True, 32, 128)
    assert got.item() == bucket


@pytest.mark.parametrize(
    ("rel", "bucket"), [(5, 0), (0, 0), (-5, 5), (-16, 16), (-40, 23), (-500, 31)]
)
def test_t5_causal_buckets_hand_computed(rel: int, bucket: int):
    # causal: 32 buckets, 16 exact; -40 -> 16 + int(log(40/16) / log(128/16) * 16) = 16 + 7
    got = t5_relative_position_bucket(torch.tensor([rel]), False, 32, 128)
    assert got.item() == bucket


def test_t5_buckets_match_transformers():
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    rel = relative_distance(300, 300)
    for bidirectional in (True, False):
        for nb, md in [(32, 128), (16, 64)]:
            ref = t5.T5Attention._relative_position_bucket(rel, bidirectional, nb, md)
            got = t5_relative_position_bucket(rel, bidirectional, nb, md)
            assert torch.equal(got, ref)


def test_t5_bias_shape_and_lookup():
    bias = T5RelativePositionBias(num_heads=3, num_buckets=8, max_distance=16)
    out = bias(4, 5)
    assert out.shape == (1, 3, 4, 5)
    bucket = t5_relative_position_bucket(torch.tensor(2 - 1), True, 8, 16)
    torch.testing.assert_close(out[0, :, 1, 2], bias.relative_attention_bias.weight[bucket])


@pytest.mark.parametrize(("rel", "bucket"), [(3, 3), (4, 4), (-4, -4), (5, 5), (20, 7), (-20, -7)])
def test_deberta_log_bucket_hand_computed(rel: int, bucket: int):
    # mid = 4; 20 -> 4 + ceil(log(20/4) / log(31/4) * 3) = 4 + 3
    assert deberta_log_bucket_position(torch.tensor([rel]), 8, 32).item() == bucket


def test_deberta_matches_transformers():
    ref = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2")
    for q_len, bucket, max_pos in [(300, 256, 512), (50, 8, 32), (20, -1, -1)]:
        layer = torch.zeros(1, q_len, 4)
        expected = ref.build_relative_position(layer, layer, bucket, max_pos)[0]
        got = deberta_relative_position(q_len, q_len, bucket, max_pos)
        assert torch.equal(got, expected)
    rel = torch.arange(-600, 600)
    assert torch.equal(
        deberta_log_bucket_position(rel, 256, 512),
        ref.make_log_bucket_position(rel, 256, 512).long(),
    )


def test_nezha_attention_matches_written_out_formula():
    from b4t.layers.relative_positions import NezhaAttention

    torch.manual_seed(0)
    att = NezhaAttention(8, 2, max_relative_position=2).eval()
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        got, _, _ = att(x)
        q, k, v = (t[0] for t in att.split_heads(x))  # (N, L, D)
        enc = NezhaRelativePositions(4, 2)(5, 5)
        ctx = torch.zeros(2, 5, 4)
        for h in range(2):
            for i in range(5):
                s = torch.stack([q[h, i] @ (k[h, j] + enc[i, j]) for j in range(5)]) / 2.0
                p = torch.softmax(s, -1)
                ctx[h, i] = sum(p[j] * (v[h, j] + enc[i, j]) for j in range(5))
        expected = att.o(ctx.transpose(0, 1).reshape(1, 5, 8))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_nezha_attention_kv_cache_matches_full_causal():
    from b4t.layers.relative_positions import NezhaAttention

    torch.manual_seed(0)
    att = NezhaAttention(8, 2, max_relative_position=2, is_causal=True).eval()
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        full, _, _ = att(x)
        first, _, cache = att(x[:, :4], use_cache=True)
        nxt, _, _ = att(x[:, 4:5], past_key_value=cache)
    torch.testing.assert_close(first, full[:, :4], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(nxt, full[:, 4:5], atol=1e-6, rtol=1e-5)
