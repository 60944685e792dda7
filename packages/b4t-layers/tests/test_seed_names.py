"""bert4torch's layer names in b4t.layers, each against a written-out formula or transformers.

(``tests/seed/test_seed_layers.py`` runs them beside bert4torch 0.2.5 itself; these checks
need no seed.)
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import b4t.layers as L


def _ln(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + eps)


def _random(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def test_new_activations_by_formula() -> None:
    x = torch.linspace(-4, 4, 17).reshape(1, -1)
    torch.testing.assert_close(L.get_activation("mish")(x), x * torch.tanh(torch.log1p(x.exp())))
    torch.testing.assert_close(L.get_activation("softmax")(x), x.exp() / x.exp().sum())
    torch.testing.assert_close(L.get_activation("quick_gelu")(x), x / (1 + torch.exp(-1.702 * x)))
    torch.testing.assert_close(L.get_activation("linear")(x), x)


def test_layer_norm_seed_arguments_and_pair_input() -> None:
    x, cond = torch.randn(2, 3, 6), torch.randn(2, 4)
    ln = _random(L.LayerNorm(6, 1e-12, 4, False, True))  # seed order: ..., weight, bias
    assert ln.weight is None
    want = (
        _ln(x) * (cond @ ln.dense1.weight.T)[:, None]
        + ln.bias
        + (cond @ ln.dense2.weight.T)[:, None]
    )
    torch.testing.assert_close(ln((x, cond)), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ln([x, cond]), ln(x, cond))
    plain = _random(L.LayerNorm(6))
    torch.testing.assert_close(plain((x, None)), plain(x))
    with pytest.raises(ValueError, match="conditional_size=4"):
        ln(x, torch.randn(2, 5))


def test_multi_head_attention_layer_formula() -> None:
    att = _random(L.MultiHeadAttentionLayer(8, 2, 0.0))
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])[:, None, None, :]
    q, k, v = (
        (x @ lin.weight.T + lin.bias).view(2, 5, 2, 4).transpose(1, 2)
        for lin in (att.q, att.k, att.v)
    )
    scores = q @ k.transpose(-1, -2) / 2.0 + (1 - mask) * -10000.0
    ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8)
    want = ctx @ att.o.weight.T + att.o.bias
    torch.testing.assert_close(att(x, mask), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="share_att_key=True"):
        L.MultiHeadAttentionLayer(8, 2, 0.0, p_bias="deberta_v2", max_position=8)


def test_bert_layer_equals_transformers_bert_layer() -> None:
    modeling = pytest.importorskip("transformers.models.bert.modeling_bert")
    from transformers import BertConfig

    ours = _random(L.BertLayer(8, 2, 0.1, 0.1, 12, "gelu"))
    config = BertConfig(hidden_size=8, num_attention_heads=2, intermediate_size=12)
    config.layer_norm_eps = 1e-12
    theirs = modeling.BertLayer(config).eval()
    att, mha = theirs.attention, ours.multiHeadAttention
    pairs = [
        (att.self.query, mha.q),
        (att.self.key, mha.k),
        (att.self.value, mha.v),
        (att.output.dense, mha.o),
        (att.output.LayerNorm, ours.layerNorm1),
        (theirs.intermediate.dense, ours.feedForward.intermediate),
        (theirs.output.dense, ours.feedForward.output),
        (theirs.output.LayerNorm, ours.layerNorm2),
    ]
    with torch.no_grad():
        for dst, src in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        x = torch.randn(2, 5, 8)
        want = theirs(x)
        want = want[0] if isinstance(want, tuple) else want
        torch.testing.assert_close(ours(x, None), want, atol=1e-5, rtol=1e-5)


def test_bert_embeddings_formula() -> None:
    emb = _random(L.BertEmbeddings(20, 6, 8, 16, 2, False, 0.0))
    ids, seg = torch.randint(0, 20, (2, 5)), torch.randint(0, 2, (2, 5))
    s = emb.word_embeddings.weight[ids] + emb.segment_embeddings.weight[seg]
    s = s + emb.position_embeddings.weight[:5]
    h = _ln(s) * emb.layerNorm.weight + emb.layerNorm.bias
    lin = emb.embedding_hidden_mapping_in
    torch.testing.assert_close(emb(ids, seg), h @ lin.weight.T + lin.bias, atol=1e-5, rtol=1e-5)


def test_sinusoidal_position_encoding_formula() -> None:
    pe = L.SinusoidalPositionEncoding(10, 4)
    ids = torch.tensor([[3, 7]])
    want = torch.tensor(
        [[[math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)] for p in (3, 7)]]
    )
    torch.testing.assert_close(pe(ids), want)
    assert not pe.position_embeddings.weight.requires_grad


def test_adaptive_embedding_formula() -> None:
    ae = _random(L.AdaptiveEmbedding(12, 8, 6, [3, 7], div_val=2))
    assert [e.weight.shape for e in ae.emb_layers] == [(3, 8), (4, 4), (5, 2)]
    ids = torch.tensor([[0, 4, 11, 2]])
    rows = []
    for t in ids[0].tolist():
        band = 0 if t < 3 else 1 if t < 7 else 2
        start = (0, 3, 7)[band]
        rows.append(ae.emb_projs[band] @ ae.emb_layers[band].weight[t - start])
    torch.testing.assert_close(ae(ids), torch.stack(rows)[None] * math.sqrt(6))
    single = _random(L.AdaptiveEmbedding(12, 8, 6, []))
    want = single.emb_layers[0].weight[ids] @ single.emb_projs[0].T * math.sqrt(6)
    torch.testing.assert_close(single(ids), want)
    with pytest.raises(ValueError, match="token id 12"):
        ae(torch.tensor([[12]]))


def test_bert_whitening_gives_identity_covariance(tmp_path) -> None:
    torch.manual_seed(0)
    vecs = torch.randn(200, 5, dtype=torch.double) @ torch.randn(5, 5, dtype=torch.double)
    w = L.BERT_WHITENING()
    w.compute_kernel_bias([vecs[:50], vecs[50:]])
    white = (vecs + w.bias) @ w.kernel
    torch.testing.assert_close(torch.cov(white.T), torch.eye(5, dtype=torch.double))
    out = w.transform_and_normalize(vecs[:3])
    torch.testing.assert_close(out, white[:3] / white[:3].norm(dim=1, keepdim=True))
    w.save_whiten(tmp_path / "w.pt")
    back = L.BERT_WHITENING()
    back.load_whiten(tmp_path / "w.pt")
    torch.testing.assert_close(back.kernel, w.kernel)


@pytest.mark.parametrize(
    ("shaking", "inner"), [("cat", ""), ("cat_plus", "mix_pooling"), ("cln_plus", "max_pooling")]
)
def test_tplinker_handshaking_formula(shaking, inner) -> None:
    k = _random(L.TplinkerHandshakingKernel(4, shaking, inner))
    x = torch.randn(2, 3, 4)
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    got = k(x)
    assert got.shape == (2, len(pairs), 4)
    for n, (i, j) in enumerate(pairs):
        hi, hj, span = x[:, i], x[:, j], x[:, i : j + 1]
        if inner == "mix_pooling":
            c = k.lamtha * span.mean(1) + (1 - k.lamtha) * span.amax(1)
        else:
            c = span.amax(1)
        if shaking == "cat":
            want = torch.tanh(k.combine_fc(torch.cat([hi, hj], -1)))
        elif shaking == "cat_plus":
            want = torch.tanh(k.combine_fc(torch.cat([hi, hj, c], -1)))
        else:
            t = _ln(hj) * (k.tp_cln.weight + k.tp_cln.dense1(hi)) + k.tp_cln.bias
            t = t + k.tp_cln.dense2(hi)
            cln = k.inner_context_cln
            want = _ln(t) * (cln.weight + cln.dense1(c)) + cln.bias + cln.dense2(c)
        torch.testing.assert_close(got[:, n], want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="inner_enc_type"):
        L.TplinkerHandshakingKernel(4, "cat_plus")


def test_conv_layer_formula() -> None:
    conv = _random(L.ConvLayer(4, 0.0, 1e-7, 3, 1, "tanh"))
    x, res = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    c = F.conv1d(x.transpose(1, 2), conv.conv.weight, conv.conv.bias, padding=1).transpose(1, 2)
    c = torch.tanh(c * mask[..., None])
    want = (_ln(res + c, 1e-7) * conv.LayerNorm.weight + conv.LayerNorm.bias) * mask[..., None]
    torch.testing.assert_close(conv(x, res, mask), want, atol=1e-5, rtol=1e-5)


def test_seed_state_dict_names_load() -> None:
    """Tables bert4torch saved as buffers and its feed-forward names load strictly."""
    gp = L.GlobalPointer(8, 2, 4)
    sd = dict(gp.state_dict())
    sd["position_embedding.cos_position"] = torch.zeros(512, 4)
    sd["position_embedding.sin_position"] = torch.zeros(512, 4)
    gp.load_state_dict(sd, strict=True)
    nezha = L.RelativePositionsEncoding(6, 6, 4, 2)
    nezha.load_state_dict({"position_embeddings": torch.zeros(6, 6, 4)}, strict=True)
    torch.testing.assert_close(nezha(6, 6), L.NezhaRelativePositions(4, 2)(6, 6))
    with pytest.raises(ValueError, match="built for"):
        nezha(7, 7)


def test_identity() -> None:
    x = torch.randn(2)
    assert L.Identity(3, foo=1)(x, 5) is x


@pytest.mark.parametrize(("pos_att_type", "buckets"), [("p2c|c2p", 4), ("c2p", -1)])
def test_multi_head_attention_layer_deberta_equals_transformers(pos_att_type, buckets) -> None:
    ref = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2")
    from transformers import DebertaV2Config

    hidden, heads, seq, max_pos = 16, 2, 9, 24
    config = DebertaV2Config(
        hidden_size=hidden,
        num_attention_heads=heads,
        relative_attention=True,
        pos_att_type=pos_att_type,
        share_att_key=True,
        position_buckets=buckets,
        max_relative_positions=-1 if buckets > 0 else 4,
        max_position_embeddings=max_pos,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    theirs = ref.DisentangledSelfAttention(config).eval()
    ours = _random(
        L.MultiHeadAttentionLayer(
            hidden,
            heads,
            0.0,
            0.0,
            p_bias="deberta_v2",
            max_position=max_pos,
            share_att_key=True,
            pos_att_type=pos_att_type,
            position_buckets=buckets,
            max_relative_positions=-1 if buckets > 0 else 4,
            max_position_embeddings=max_pos,
        )
    )
    with torch.no_grad():
        for dst, src in ((theirs.query_proj, ours.q), (theirs.key_proj, ours.k)):
            dst.load_state_dict(src.state_dict())
        theirs.value_proj.load_state_dict(ours.v.state_dict())
        ours.o.weight.copy_(torch.eye(hidden))  # transformers returns the context before `o`
        ours.o.bias.zero_()
    span = buckets if buckets > 0 else 4
    x = torch.randn(2, seq, hidden)
    keep = torch.arange(seq)[None, :] < torch.tensor([[seq], [5]])
    rel = L.deberta_relative_position(seq, seq, buckets, max_pos)
    with torch.no_grad():
        pair = (keep[:, None, :, None] & keep[:, None, None, :]).long()
        rel_emb = ours.relative_positions_encoding.weight[: 2 * span]
        want, _ = theirs(x, pair, relative_pos=rel[None], rel_embeddings=rel_emb)
        got = ours(x, keep[:, None, None, :].float())
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)


def test_t5_layer_is_pre_norm_with_a_gated_ffn_in_t5_1_1() -> None:
    kwargs = {"p_bias": "t5_relative", "max_position": 8, "bias": False, "norm_mode": "rmsnorm"}
    layer = _random(L.T5Layer(8, 2, 0.0, 0.0, 12, "relu", version="t5.1.1", **kwargs))
    ffn = layer.feedForward
    assert ffn.gate is not None and ffn.intermediate.bias is None and ffn.output.bias is None
    x, mask = torch.randn(2, 5, 8), torch.ones(2, 1, 1, 5)
    mid = x + layer.multiHeadAttention(layer.layerNorm1(x), mask)
    h = layer.layerNorm2(mid)
    gated = torch.relu(h @ ffn.intermediate.weight.T) * (h @ ffn.gate.weight.T)
    torch.testing.assert_close(layer(x, mask), mid + gated @ ffn.output.weight.T)
    decoder = L.T5Layer(8, 2, 0.0, 0.0, 12, "relu", is_decoder=True, **kwargs)
    assert hasattr(decoder.multiHeadAttention, "relative_positions_encoding")
    assert not hasattr(decoder.crossAttention, "relative_positions_encoding")
    enc = L.RelativePositionsEncodingT5(4, 6, 8)
    assert enc(3, 5).shape == (3, 5) and enc.relative_position.shape == (4, 6)


def test_take_along_dim_and_torch_div_are_torch_s() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    torch.testing.assert_close(L.take_along_dim(x, torch.tensor([[3], [0], [1]]), 1),
                               torch.tensor([[3.0], [4.0], [9.0]]))  # fmt: skip
    assert L.torch_div(torch.tensor([-7, 7]), 2, "floor").tolist() == [-4, 3]
    assert L.torch_div(torch.tensor([-7, 7]), 2, "trunc").tolist() == [-3, 3]
