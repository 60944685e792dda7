"""get_pool_emb against per-sequence hand computation on padded batches.

The list form of ``hidden_state`` is the one models return with
``output_all_encoded_layers=True`` (bert4torch 0.2.5's numbering, also transformers'
``output_hidden_states``): L + 1 tensors, the embedding output first, so index 1 is the
first transformer layer. ``test_numbering_of_a_real_model`` pins that on a real model.
"""

from __future__ import annotations

import pytest
import torch

from b4t.layers.pooling import get_pool_emb

LENGTHS = [4, 2, 1]
B, N, H, L = 3, 4, 5, 4  # batch, seq_len, hidden, L + 1 tensors: embeddings + 3 layers


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


def test_numbering_of_a_real_model():
    """On transformers' 2-layer BERT (hidden_states = embeddings + 2 layers), first-last-avg
    averages the first transformer layer and the last one, custom=[0] is the embeddings,
    and first-last-avg differs from last-avg (the symptom of an L-tensor list)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    ids = torch.tensor([[2, 5, 7, 9], [3, 4, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        emb = model.embeddings(input_ids=ids)
        states = list(model(ids, attention_mask=mask, output_hidden_states=True).hidden_states)
    assert len(states) == config.num_hidden_layers + 1
    torch.testing.assert_close(states[0], emb)

    def avg(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[b, : int(n)].mean(0) for b, n in enumerate(mask.sum(1))])

    first_last = get_pool_emb(states, None, mask, "first-last-avg")
    torch.testing.assert_close(first_last, (avg(states[1]) + avg(states[2])) / 2)
    assert not torch.allclose(first_last, get_pool_emb(states, None, mask, "last-avg"))
    torch.testing.assert_close(get_pool_emb(states, None, mask, "custom", custom_layer=0), avg(emb))
