"""Padding, lm and unilm masks against masks written out by hand."""

from __future__ import annotations

import pytest
import torch

from b4t.layers import attention_mask, causal_mask, padding_mask, to_additive_mask, unilm_mask


def test_causal_mask_by_hand() -> None:
    expected = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(causal_mask(4), expected)


def test_unilm_mask_by_hand() -> None:
    # source = 3 tokens (segment 0), target = 2 tokens (segment 1)
    seg = torch.tensor([[0, 0, 0, 1, 1]])
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(unilm_mask(seg)[0], expected)


def test_padding_mask_and_additive_form() -> None:
    ids = torch.tensor([[5, 6, 0], [7, 0, 0]])
    keep = padding_mask(ids)
    assert keep.tolist() == [[True, True, False], [True, False, False]]
    bias = to_additive_mask(keep)
    assert bias[0, 2] == torch.finfo(torch.float32).min and bias[0, 0] == 0


def test_attention_mask_combines_padding_with_the_application() -> None:
    keep = torch.tensor([[True, True, True, False]])
    seg = torch.tensor([[0, 0, 1, 1]])
    assert attention_mask(None, "encoder") is None
    enc = attention_mask(keep, "encoder")
    assert enc.shape == (1, 1, 1, 4) and (enc[..., 3] < -1e30).all() and (enc[..., :3] == 0).all()
    lm = attention_mask(keep, "lm") == 0
    assert torch.equal(lm[0, 0], causal_mask(4) & keep[0])
    uni = attention_mask(keep, "unilm", seg) == 0
    assert torch.equal(uni[0, 0], unilm_mask(seg)[0] & keep[0])
    with pytest.raises(ValueError, match="unilm' needs segment_ids"):
        attention_mask(keep, "unilm")
    with pytest.raises(ValueError, match="unknown application 'mlm'"):
        attention_mask(keep, "mlm")
