"""XLNet / Transformer-XL layers against their formulas written out element by element."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers import (
    RelativeMultiHeadAttention,
    XlnetLayer,
    XlnetPositionsEncoding,
    rel_shift_xl,
    rel_shift_xlnet,
)


def test_positions_encoding_is_sin_then_cos() -> None:
    enc = XlnetPositionsEncoding(6)
    pos = torch.tensor([3, 0, -2])
    out = enc(pos)
    for r, p in enumerate(pos.tolist()):
        for k in range(3):
            angle = p / 10000 ** (2 * k / 6)
            assert out[r, k].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert out[r, 3 + k].item() == pytest.approx(math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="even size"):
        XlnetPositionsEncoding(5)


def test_rel_shift_xlnet_picks_the_query_minus_key_distance() -> None:
    q, k = 3, 5  # table rows: distances k, k-1, ..., -q+1
    scores = torch.randn(2, 1, q, k + q)
    out = rel_shift_xlnet(scores, k)
    assert out.shape == (2, 1, q, k)
    mlen = k - q
    for i in range(q):
        for j in range(k):
            row = k - ((mlen + i) - j)  # index of distance (mlen + i) - j in the table
            torch.testing.assert_close(out[:, :, i, j], scores[:, :, i, row])


def test_rel_shift_xl_on_the_causal_cells() -> None:
    q, k = 3, 5  # table rows: distances k-1, ..., 0
    scores = torch.randn(2, 2, q, k)
    out = rel_shift_xl(scores)
    mlen = k - q
    for i in range(q):
        for j in range(k):
            if j <= i + mlen:
                row = (k - 1) - ((mlen + i) - j)
                torch.testing.assert_close(out[:, :, i, j], scores[:, :, i, row])


def _attention_by_hand(
    att: RelativeMultiHeadAttention,
    context: torch.Tensor,
    qlen: int,
    distances: list[int],
    keep: torch.Tensor,
    seg_mat: torch.Tensor,
) -> torch.Tensor:
    """Loop over b, n, i, j: the Transformer-XL / XLNet score written out."""
    b_size, klen, hidden = context.shape
    n_heads, d = att.num_heads, att.head_size
    mlen = klen - qlen
    table = XlnetPositionsEncoding(hidden)(torch.tensor(distances))
    r = att.r(table).view(-1, n_heads, d)
    q = att.q(context[:, mlen:]).view(b_size, qlen, n_heads, d)
    k = att.k(context).view(b_size, klen, n_heads, d)
    v = att.v(context).view(b_size, klen, n_heads, d)
    out = torch.zeros(b_size, qlen, n_heads, d)
    for b in range(b_size):
        for n in range(n_heads):
            for i in range(qlen):
                scores = []
                for j in range(klen):
                    if not keep[b, 0, i, j]:
                        scores.append(torch.tensor(-1e30))
                        continue
                    row = distances.index(mlen + i - j)
                    s = (q[b, i, n] + att.r_w_bias[n]) @ k[b, j, n]
                    s = s + (q[b, i, n] + att.r_r_bias[n]) @ r[row, n]
                    s = s + (q[b, i, n] + att.r_s_bias[n]) @ att.seg_embed[seg_mat[b, i, j], n]
                    s = s / math.sqrt(d)
                    scores.append(s)
                w = torch.softmax(torch.stack(scores), 0)
                out[b, i, n] = (w[:, None] * v[b, :, n]).sum(0)
    return att.o(out.reshape(b_size, qlen, hidden))


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


def test_xlnet_attention_equals_the_written_out_score() -> None:
    att = _randomised(RelativeMultiHeadAttention(8, 2, segment_vocab_size=2))
    b, q, m = 2, 3, 2
    k = q + m
    context = torch.randn(b, k, 8)
    distances = list(range(k, -q, -1))
    pos = XlnetPositionsEncoding(8)(torch.tensor(distances))
    keep = torch.ones(b, 1, q, k, dtype=torch.bool)
    keep[1, :, :, -1] = False
    keep[1, :, 2, -1] = True  # a padded key still sees itself
    seg = torch.randint(0, 2, (b, q, k))
    with torch.no_grad():
        mine = att(context, pos, keep, seg, qlen=q)
        ref = _attention_by_hand(att, context, q, distances, keep, seg)
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=0)


def test_transformer_xl_attention_equals_the_written_out_score() -> None:
    att = _randomised(
        RelativeMultiHeadAttention(8, 2, segment_vocab_size=2, rel_shift="transformer_xl")
    )
    b, q, m = 2, 3, 2
    k = q + m
    context = torch.randn(b, k, 8)
    distances = list(range(k - 1, -1, -1))
    pos = XlnetPositionsEncoding(8)(torch.tensor(distances))
    i = torch.arange(q)[:, None]
    j = torch.arange(k)[None, :]
    keep = (j <= i + m).expand(b, 1, q, k)
    seg = torch.zeros(b, q, k, dtype=torch.long)
    with torch.no_grad():
        mine = att(context, pos, keep, seg, qlen=q)
        ref = _attention_by_hand(att, context, q, distances, keep, seg)
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=0)


def test_shared_biases_are_passed_in() -> None:
    att = RelativeMultiHeadAttention(8, 2, own_biases=False)
    assert att.r_w_bias is None and not any("bias" in n for n, _ in att.named_parameters())
    pos = XlnetPositionsEncoding(8)(torch.arange(4, -4, -1))
    with pytest.raises(ValueError, match="needs r_w_bias"):
        att(torch.randn(1, 4, 8), pos)
    out = att(torch.randn(1, 4, 8), pos, r_w_bias=torch.zeros(2, 4), r_r_bias=torch.zeros(2, 4))
    assert out.shape == (1, 4, 8)


@pytest.mark.parametrize("pre_lnorm", [False, True])
def test_xlnet_layer_residual_order(pre_lnorm: bool) -> None:
    layer = _randomised(XlnetLayer(8, 2, 0.0, 0.0, 12, "gelu", pre_lnorm=pre_lnorm))
    x, mems = torch.randn(2, 3, 8), torch.randn(2, 2, 8)
    pos = XlnetPositionsEncoding(8)(torch.arange(5, -3, -1))
    with torch.no_grad():
        out = layer(x, None, pos, None, mems)
        cat = torch.cat([mems, x], 1)
        if pre_lnorm:
            h = x + layer.multiHeadAttention(layer.layerNorm1(cat), pos, qlen=3)
            ref = h + layer.feedForward(layer.layerNorm2(h))
        else:
            h = layer.layerNorm1(x + layer.multiHeadAttention(cat, pos, qlen=3))
            ref = layer.layerNorm2(h + layer.feedForward(h))
    torch.testing.assert_close(out, ref)
    names = {n for n, _ in layer.named_parameters()}
    assert {
        "multiHeadAttention.q.weight",
        "multiHeadAttention.r_w_bias",
        "layerNorm1.weight",
    } <= names
