"""Disentangled attention against transformers' DeBERTa-v2 DisentangledSelfAttention."""

from __future__ import annotations

import pytest
import torch

from b4t.layers.deberta_attention import DisentangledSelfAttention
from b4t.layers.relative_positions import deberta_relative_position

ref = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2")
from transformers import DebertaV2Config  # noqa: E402

HIDDEN, HEADS, SEQ = 16, 2, 9


def _pair(pos_att_type: str, share_att_key: bool, buckets: int):
    config = DebertaV2Config(
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        relative_attention=True,
        pos_att_type=pos_att_type,
        share_att_key=share_att_key,
        position_buckets=buckets,
        max_relative_positions=-1,
        max_position_embeddings=24,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    theirs = ref.DisentangledSelfAttention(config).eval()
    span = buckets if buckets > 0 else 24
    ours = DisentangledSelfAttention(
        HIDDEN,
        HEADS,
        pos_att_type=theirs.pos_att_type,
        share_att_key=share_att_key,
        position_span=span,
    ).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(
            torch.cat([theirs.query_proj.weight, theirs.key_proj.weight, theirs.value_proj.weight])
        )
        ours.qkv.bias.copy_(
            torch.cat([theirs.query_proj.bias, theirs.key_proj.bias, theirs.value_proj.bias])
        )
        ours.o.weight.copy_(torch.eye(HIDDEN))
        ours.o.bias.zero_()
        for name in ("pos_key_proj", "pos_query_proj"):
            if hasattr(theirs, name):
                getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())
    return theirs, ours, span, config


@pytest.mark.parametrize(
    ("pos_att_type", "share", "buckets"),
    [("p2c|c2p", False, -1), ("p2c|c2p", True, 4), ("c2p", False, 4), ("p2c", True, -1)],
)
def test_matches_transformers_on_padded_batch(pos_att_type: str, share: bool, buckets: int):
    torch.manual_seed(0)
    theirs, ours, span, config = _pair(pos_att_type, share, buckets)
    x = torch.randn(2, SEQ, HIDDEN)
    rel_emb = torch.randn(2 * span, HIDDEN)
    lengths = torch.tensor([SEQ, 5])
    keep = torch.arange(SEQ)[None, :] < lengths[:, None]  # (B, L)
    max_rel = config.max_position_embeddings
    rel = deberta_relative_position(SEQ, SEQ, buckets, max_rel)
    with torch.no_grad():
        hf_mask = (keep[:, None, :, None] & keep[:, None, None, :]).long()
        expected, _ = theirs(x, hf_mask, relative_pos=rel[None], rel_embeddings=rel_emb)
        additive = (~keep[:, None, None, :]).float() * torch.finfo(torch.float32).min
        got, _, _ = ours(x, additive, rel_embeddings=rel_emb, relative_pos=rel)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[b, :n], expected[b, :n], atol=1e-5, rtol=1e-5)


def test_position_terms_change_scores_and_errors():
    torch.manual_seed(0)
    att = DisentangledSelfAttention(8, 2, position_span=4).eval()
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    rel = deberta_relative_position(3, 3)
    plain = att.attention_scores(q, k)
    torch.testing.assert_close(plain, q @ k.transpose(-1, -2) / (4 * 3) ** 0.5)
    assert not torch.allclose(att.attention_scores(q, k, torch.randn(8, 8), rel), plain)
    with pytest.raises(ValueError, match="relative_pos has shape"):
        att.attention_scores(q, k, torch.randn(8, 8), rel[:2])
    with pytest.raises(ValueError, match="'c3p'"):
        DisentangledSelfAttention(8, 2, pos_att_type=("c3p",))
