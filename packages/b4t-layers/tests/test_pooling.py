"""get_pool_emb against per-sequence hand computation on padded batches."""

from __future__ import annotations

import pytest
import torch

from b4t.layers.pooling import get_pool_emb

LENGTHS = [4, 2, 1]
B, N, H, L = 3, 4, 5, 4  # batch, seq_len, hidden, layers in the list (embeddings + 3)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    layers = [torch.randn(B, N, H, dtype=torch.double) for _ in range(L)]
    for layer in layers:  # garbage in padding must never leak into any result
        for b, n in enumerate(LENGTHS):
            layer[b, n:] = 1e6
    mask = torch.tensor([[1] * n + [0] * (N - n) for n in LENGTHS])
    return layers, mask


def _rows(layer: torch.Tensor):
    """The real-token rows of each sequence: list of (len_b, H)."""
    return [layer[b, :n] for b, n in enumerate(LENGTHS)]


def test_cls_and_pooler(batch):
    layers, mask = batch
    pooled = torch.randn(B, H)
    assert get_pool_emb(layers, pooled, mask, "pooler") is pooled
    torch.testing.assert_close(get_pool_emb(layers, pooled, mask, "cls"), layers[-1][:, 0])
    torch.testing.assert_close(get_pool_emb(layers[-1], None, None, "cls"), layers[-1][:, 0])


@pytest.mark.parametrize("strategy", ["last-avg", "mean"])
def test_mean_over_real_tokens(batch, strategy):
    layers, mask = batch
    expected = torch.stack([r.mean(0) for r in _rows(layers[-1])])
    torch.testing.assert_close(get_pool_emb(layers, None, mask, strategy), expected)
    torch.testing.assert_close(get_pool_emb(layers[-1], None, mask, strategy), expected)


@pytest.mark.parametrize("strategy", ["last-max", "max"])
def test_max_over_real_tokens_even_when_all_negative(batch, strategy):
    layers, mask = batch
    last = layers[-1].clone()
    last[1, :2] = -torch.rand(2, H, dtype=torch.double) - 1  # all real values < 0
    expected = torch.stack([r.max(0).values for r in _rows(last)])
    out = get_pool_emb(last, None, mask, strategy)
    torch.testing.assert_close(out, expected)
    assert (out[1] < 0).all()


def test_first_last_avg_uses_layer_one_and_the_last(batch):
    layers, mask = batch
    expected = torch.stack(
        [(a.mean(0) + z.mean(0)) / 2 for a, z in zip(_rows(layers[1]), _rows(layers[-1]))]
    )
    torch.testing.assert_close(get_pool_emb(layers, None, mask, "first-last-avg"), expected)


def test_custom_layers(batch):
    layers, mask = batch
    expected = torch.stack(
        [
            (a.mean(0) + c.mean(0) + d.mean(0)) / 3
            for a, c, d in zip(_rows(layers[0]), _rows(layers[2]), _rows(layers[3]))
        ]
    )
    got = get_pool_emb(layers, None, mask, "custom", custom_layer=[0, 2, -1])
    torch.testing.assert_close(got, expected)
    single = get_pool_emb(layers, None, mask, "custom", custom_layer=2)
    torch.testing.assert_close(single, torch.stack([r.mean(0) for r in _rows(layers[2])]))


def test_errors_name_the_problem(batch):
    layers, mask = batch
    with pytest.raises(ValueError, match="unknown pool_strategy 'avg'"):
        get_pool_emb(layers, None, mask, "avg")
    with pytest.raises(ValueError, match="needs attention_mask"):
        get_pool_emb(layers, None, None, "mean")
    with pytest.raises(ValueError, match="attention_mask shape"):
        get_pool_emb(layers, None, mask[:, :2], "mean")
    with pytest.raises(TypeError, match="list of all layers"):
        get_pool_emb(layers[-1], None, mask, "first-last-avg")
    with pytest.raises(ValueError, match="custom_layer"):
        get_pool_emb(layers, None, mask, "custom")
    with pytest.raises(IndexError, match="layer 9 out of range"):
        get_pool_emb(layers, None, mask, "custom", custom_layer=9)
    with pytest.raises(ValueError, match=r"\(batch, seq_len, hidden\)"):
        get_pool_emb(torch.zeros(2, 3), None, None, "cls")
    with pytest.raises(ValueError, match="pooled output"):
        get_pool_emb(layers, None, mask, "pooler")
