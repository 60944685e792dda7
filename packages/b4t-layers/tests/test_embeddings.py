"""Sinusoid table, RoBERTa position ids and the Embeddings module."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers import Embeddings, create_position_ids_from_input_ids, get_sinusoid_encoding_table


def test_sinusoid_table_hand_values() -> None:
    table = get_sinusoid_encoding_table(5, 4, padding_idx=0)
    assert table.shape == (5, 4)
    assert torch.all(table[0] == 0)
    pos = 3
    expected = [
        math.sin(pos),
        math.cos(pos),
        math.sin(pos / 10000 ** (2 / 4)),
        math.cos(pos / 10000 ** (2 / 4)),
    ]
    torch.testing.assert_close(table[pos], torch.tensor(expected))


def test_roberta_position_ids_by_hand() -> None:
    ids = torch.tensor([[0, 5, 6, 1, 1], [0, 7, 1, 1, 1]])
    expected = torch.tensor([[2, 3, 4, 1, 1], [2, 3, 1, 1, 1]])
    assert torch.equal(create_position_ids_from_input_ids(ids, padding_idx=1), expected)
    assert torch.equal(
        create_position_ids_from_input_ids(ids, 1, past_key_values_length=2)[0, :3],
        torch.tensor([4, 5, 6]),
    )


def test_embeddings_sum_and_projection() -> None:
    torch.manual_seed(0)
    emb = Embeddings(10, 4, 6, max_position=8, dropout_rate=0.0, layer_norm_eps=None).eval()
    ids = torch.tensor([[1, 2, 3]])
    seg = torch.tensor([[0, 1, 1]])
    expected = (
        emb.word_embeddings.weight[ids]
        + emb.segment_embeddings.weight[seg]
        + emb.position_embeddings.weight[:3]
    )
    torch.testing.assert_close(emb(ids, seg), emb.projection(expected))


def test_check_inputs_errors() -> None:
    emb = Embeddings(10, 4, 4, max_position=8, pad_token_id=1, roberta_positions=True)
    with pytest.raises(ValueError, match="token id 10 is outside the vocabulary"):
        emb.check_inputs(torch.tensor([[2, 10]]))
    with pytest.raises(ValueError, match="token id -1"):
        emb.check_inputs(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match=r"sequence length 7 .* 2 reserved"):
        emb.check_inputs(torch.ones(1, 7, dtype=torch.long))
    emb.check_inputs(torch.ones(1, 6, dtype=torch.long))


def test_embeddings_build_on_meta_and_still_initialise_on_cpu() -> None:
    with torch.device("meta"):
        meta = Embeddings(300, 16, 16, max_position=20, task_type_vocab_size=3)
    assert all(p.is_meta for p in meta.parameters())
    torch.manual_seed(0)
    real = Embeddings(3000, 16, 16, max_position=20)
    # like nn.Embedding: N(0, 1) rows, not zeros or uninitialised memory
    assert 0.9 < real.word_embeddings.weight.std().item() < 1.1
    assert abs(real.word_embeddings.weight.mean().item()) < 0.05
    assert 0.8 < real.position_embeddings.weight.std().item() < 1.2
