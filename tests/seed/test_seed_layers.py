"""b4t.layers beside bert4torch 0.2.5's layers, activations and snippets: same weights, same inputs.

Every layer is built in the seed, its weights randomised, and its state dict loaded into
b4t's class of the same name (with the seed's positional arguments); the outputs agree
within 1e-5. Deliberate differences are asserted and listed in MIGRATION.md.
"""

from __future__ import annotations

import math

import pytest
import torch

import b4t.layers as L

ATOL = 1e-5


def _close(got: torch.Tensor, want: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(got, want, atol=atol, rtol=1e-5)


@pytest.fixture
def S(b4t_seed):
    """bert4torch.layers."""
    return b4t_seed["layers"]


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every float parameter with N(0, 0.5) (seed layers start zero or uninitialised)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def _load(b4t_module: torch.nn.Module, seed_module: torch.nn.Module) -> torch.nn.Module:
    """Load the seed's full state dict (buffers included) strictly into b4t's module."""
    b4t_module.load_state_dict(seed_module.state_dict(), strict=True)
    return b4t_module.eval()


def _padding_mask() -> torch.Tensor:
    return torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


# --------------------------------------------------------------------------- activations


def test_every_seed_activation_exists_with_equal_values(b4t_seed):
    seed_act = b4t_seed["activations"]
    x = torch.linspace(-6, 6, 97).reshape(1, -1)
    assert {"mish", "softmax"} <= set(seed_act.ACT2FN)
    for name in seed_act.ACT2FN:
        _close(L.get_activation(name)(x), seed_act.get_activation(name)(x))
        assert name in L.ACT2FN


def test_unknown_activation_is_a_key_error_as_in_the_seed():
    with pytest.raises(KeyError, match="unknown activation 'nope'"):
        L.get_activation("nope")


# --------------------------------------------------------------------------- CRF


def test_crf_loss_and_decode_equal_the_seed(S):
    torch.manual_seed(0)
    k = 5
    seed_crf = _randomise(S.CRF(k))
    crf = _load(L.CRF(k), seed_crf)
    emissions = torch.randn(3, 7, k)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6])
    tags = torch.randint(0, k, (3, 7))
    for reduction in ("none", "sum", "mean", "token_mean"):
        _close(crf(emissions, mask, tags, reduction), seed_crf(emissions, mask, tags, reduction))
    assert torch.equal(crf.decode(emissions, mask), seed_crf.decode(emissions, mask))
    assert torch.equal(
        crf.decode(emissions, mask, pad_tag=-1), seed_crf.decode(emissions, mask, pad_tag=-1)
    )
    # (0.2.5's nbest > 1 decode fails on torch 2 with a non-contiguous view; b4t's n-best
    # paths are checked against brute-force ranking in packages/b4t-layers/tests/test_crf.py)


def test_crf_seed_positional_init_transitions(S):
    trans = [[0.1, 0.2], [0.3, -0.4]]
    init = (trans, [0.5, -0.5], [1.5, -1.5])
    crf, seed_crf = L.CRF(2, init, True), S.CRF(2, init, True)
    assert not list(crf.parameters())  # frozen: buffers, as in the seed
    emissions, tags = torch.randn(2, 3, 2), torch.tensor([[0, 1, 1], [1, 0, 0]])
    mask = torch.ones(2, 3, dtype=torch.long)
    _close(crf(emissions, mask, tags), seed_crf(emissions, mask, tags))


def test_crf_gapped_mask_is_an_error_not_a_number(S):
    """0.2.5 scores a mask with a gap (1, 0, 1) inconsistently; b4t refuses it."""
    seed_crf = _randomise(S.CRF(3))
    crf = _load(L.CRF(3), seed_crf)
    emissions, tags = torch.randn(1, 3, 3), torch.tensor([[0, 1, 2]])
    gapped = torch.tensor([[1, 0, 1]])
    assert torch.isfinite(seed_crf(emissions, gapped, tags))
    with pytest.raises(ValueError, match="prefix of ones"):
        crf(emissions, gapped, tags)


# --------------------------------------------------------------------------- GlobalPointer

HIDDEN, HEADS, D, N = 8, 3, 4, 6


def _gp_inputs():
    torch.manual_seed(1)
    return torch.randn(2, N, HIDDEN), _padding_mask()


def _kept(mask: torch.Tensor, tril: bool) -> torch.Tensor:
    keep = mask.bool()[:, None, :, None] & mask.bool()[:, None, None, :]
    keep = keep.expand(-1, HEADS, -1, -1)
    if tril:
        keep = keep & ~torch.ones(N, N, dtype=torch.bool).tril(-1)
    return keep


def _rope_rows(x: torch.Tensor) -> torch.Tensor:
    """Rotate x ``(..., n, d)`` by position n: pair (2i, 2i+1) by n * 10000**(-2i/d)."""
    n, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    ang = pos * 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (n, d/2)
    c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).flatten(-2)


@pytest.mark.parametrize("tril", [True, False])
def test_global_pointer_without_rope_equals_the_seed(S, tril):
    x, mask = _gp_inputs()
    seed_gp = _randomise(S.GlobalPointer(HIDDEN, HEADS, D, False, 512, True, tril))
    gp = _load(L.GlobalPointer(HIDDEN, HEADS, D, False, 512, True, tril), seed_gp)
    got, want = gp(x, mask), seed_gp(x, mask)
    keep = _kept(mask, tril)
    _close(got[keep], want[keep])
    # masked cells: both far below any score (0.2.5: -inf / (s - 1e12) / sqrt(d))
    assert (got[~keep] <= -1e11).all() and (want[~keep] <= -1e11).all()


def test_global_pointer_seed_state_dict_with_rope_buffers_loads(S):
    seed_gp = _randomise(S.GlobalPointer(HIDDEN, HEADS, D))
    keys = set(seed_gp.state_dict())
    assert {"position_embedding.cos_position", "position_embedding.sin_position"} <= keys
    gp = _load(L.GlobalPointer(HIDDEN, HEADS, D), seed_gp)
    for name in ("weight", "bias"):
        assert torch.equal(getattr(gp.dense, name), getattr(seed_gp.dense, name))


def test_global_pointer_rope_rotates_the_sequence_not_the_heads(S):
    """0.2.5 rotates q/k of shape (B, N, heads, D) along the heads axis (a seed bug);
    b4t rotates by token position: equal to the formula, different from the seed."""
    x, mask = _gp_inputs()
    seed_gp = _randomise(S.GlobalPointer(HIDDEN, HEADS, D))
    gp = _load(L.GlobalPointer(HIDDEN, HEADS, D), seed_gp)
    got, seed_out = gp(x, mask), seed_gp(x, mask)
    proj = (x @ seed_gp.dense.weight.T + seed_gp.dense.bias).view(2, N, HEADS, 2 * D)
    q, k = proj[..., :D].transpose(1, 2), proj[..., D:].transpose(1, 2)  # (B, heads, N, D)
    formula = _rope_rows(q) @ _rope_rows(k).transpose(-1, -2) / math.sqrt(D)
    heads_axis = _rope_rows(proj[..., :D]).transpose(1, 2) @ _rope_rows(proj[..., D:]).transpose(
        1, 2
    ).transpose(-1, -2)  # what 0.2.5 computes: rotation by head index
    keep = _kept(mask, True)
    _close(got[keep], formula[keep])
    _close(seed_out[keep], (heads_axis / math.sqrt(D))[keep])
    assert (got[keep] - seed_out[keep]).abs().max() > 1e-2


def test_efficient_global_pointer_equals_the_seed(S):
    x, mask = _gp_inputs()
    for rope in (True, False):
        seed_egp = _randomise(S.EfficientGlobalPointer(HIDDEN, HEADS, D, rope))
        egp = _load(L.EfficientGlobalPointer(HIDDEN, HEADS, D, rope), seed_egp)
        got, want = egp(x, mask), seed_egp(x, mask)
        keep = _kept(mask, True)
        _close(got[keep], want[keep])
        assert (got[~keep] <= -1e11).all() and (want[~keep] <= -1e11).all()


def test_global_pointer_masked_cells_are_finite_in_b4t(S):
    """0.2.5 fills padded spans with -inf (NaN in e.g. BCE-with-logits); b4t with -1e12."""
    x, mask = _gp_inputs()
    seed_gp = _randomise(S.GlobalPointer(HIDDEN, HEADS, D, False))
    gp = _load(L.GlobalPointer(HIDDEN, HEADS, D, False), seed_gp)
    assert torch.isinf(seed_gp(x, mask)).any()
    assert torch.isfinite(gp(x, mask)).all()


# --------------------------------------------------------------------------- pooling


def _layers_and_mask():
    torch.manual_seed(2)
    layers = [torch.randn(3, 5, 4) for _ in range(4)]  # embeddings + 3 layers
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return layers, mask


@pytest.mark.parametrize(
    ("strategy", "custom"),
    [
        ("pooler", None),
        ("cls", None),
        ("last-avg", None),
        ("mean", None),
        ("first-last-avg", None),
        ("custom", [0, 2, -1]),
        ("custom", 2),
    ],
)
def test_get_pool_emb_equals_the_seed(b4t_seed, strategy, custom):
    layers, mask = _layers_and_mask()
    pooler = torch.randn(3, 4)
    seed_pool = b4t_seed["snippets"].get_pool_emb
    want = seed_pool(layers, pooler, mask, strategy, custom)
    _close(L.get_pool_emb(layers, pooler, mask, strategy, custom), want)
    if strategy in ("cls", "last-avg", "mean"):
        _close(L.get_pool_emb(layers[-1], pooler, mask, strategy), want)


@pytest.mark.parametrize("strategy", ["last-max", "max"])
def test_get_pool_emb_max_returns_a_tensor_and_ignores_padding(b4t_seed, strategy):
    """0.2.5 returns torch.max's (values, indices) pair, with padding counted as 0."""
    layers, mask = _layers_and_mask()
    seed_out = b4t_seed["snippets"].get_pool_emb(layers, None, mask, strategy)
    got = L.get_pool_emb(layers, None, mask, strategy)
    assert isinstance(got, torch.Tensor) and not isinstance(seed_out, torch.Tensor)
    full = mask.bool().all(1)
    _close(got[full], seed_out.values[full])  # no padding: the same values
    real_max = torch.stack([layers[-1][b, : int(n)].amax(0) for b, n in enumerate(mask.sum(1))])
    _close(got, real_max)
    assert not torch.allclose(got, seed_out.values)  # a padded row with negative maxima


# --------------------------------------------------------------------------- snippets


def test_get_sinusoid_encoding_table_equals_the_seed(b4t_seed):
    seed_table = b4t_seed["snippets"].get_sinusoid_encoding_table
    for n, d in ((1, 2), (17, 8), (512, 64)):
        _close(L.get_sinusoid_encoding_table(n, d), seed_table(n, d))


def test_get_sinusoid_encoding_table_honours_padding_idx(b4t_seed):
    """0.2.5 accepts padding_idx and ignores it; b4t zeroes that row."""
    seed_table = b4t_seed["snippets"].get_sinusoid_encoding_table(6, 4, padding_idx=2)
    table = L.get_sinusoid_encoding_table(6, 4, padding_idx=2)
    assert torch.equal(table[2], torch.zeros(4)) and seed_table[2].abs().sum() > 0
    rows = [0, 1, 3, 4, 5]
    _close(table[rows], seed_table[rows])


def test_create_position_ids_from_input_ids_equals_transformers():
    """Not in 0.2.5; the reference is transformers' RoBERTa helper."""
    roberta = pytest.importorskip("transformers.models.roberta.modeling_roberta")
    ids = torch.tensor([[0, 5, 6, 7, 1, 1], [0, 9, 1, 1, 1, 1]])
    for past in (0, 3):
        want = roberta.RobertaEmbeddings.create_position_ids_from_input_ids(ids, 1, past)
        assert torch.equal(L.create_position_ids_from_input_ids(ids, 1, past), want)


# --------------------------------------------------------------------------- norms, FFN


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"conditional_size": 3},
        {"conditional_size": 3, "norm_mode": "rmsnorm", "bias": False},
        {"weight": False},
        {"bias": False, "norm_mode": "rmsnorm"},
    ],
)
def test_layer_norm_equals_the_seed(S, kwargs):
    torch.manual_seed(3)
    seed_ln = _randomise(S.LayerNorm(6, 1e-6, **kwargs))
    ln = _load(L.LayerNorm(6, 1e-6, **kwargs), seed_ln)
    x = torch.randn(2, 4, 6)
    cond = torch.randn(2, 3) if kwargs.get("conditional_size") else None
    want = seed_ln((x, cond))
    _close(ln((x, cond)), want)
    _close(ln(x, cond), want)
    if cond is not None:  # a per-token condition
        cond3 = torch.randn(2, 4, 3)
        _close(ln((x, cond3)), seed_ln((x, cond3)))


def test_position_wise_feed_forward_equals_the_seed(S):
    torch.manual_seed(4)
    seed_ffn = _randomise(S.PositionWiseFeedForward(6, 10, 0.1, "gelu_new", True))
    ffn = _load(L.PositionWiseFeedForward(6, 10, 0.1, "gelu_new", True), seed_ffn)
    assert ffn.dropout is not None and ffn.dropout.p == 0.1
    x = torch.randn(2, 3, 6)
    _close(ffn(x), seed_ffn(x))


# --------------------------------------------------------------------------- attention, layers

H, HEADS_A = 8, 2


def _seed_mask(length: int = 5) -> torch.Tensor:
    """bert4torch's [B, 1, 1, K] 0/1 mask."""
    return torch.tensor([[1] * length, [1] * (length - 2) + [0, 0]])[:, None, None, :].float()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"attention_head_size": 3},
        {"p_bias": "rotary", "max_position": 16},
        {"p_bias": "typical_relative", "max_position": 16, "max_relative_position": 3},
        {"p_bias": "t5_relative", "max_position": 16, "relative_attention_num_buckets": 8},
        {
            "p_bias": "t5_relative",
            "max_position": 16,
            "relative_attention_num_buckets": 8,
            "is_decoder": True,
        },
        {"attention_scale": False, "bias": False},
        {
            "p_bias": "deberta_v2",
            "max_position": 16,
            "share_att_key": True,
            "pos_att_type": ["c2p", "p2c"],
            "position_buckets": 4,
            "norm_rel_ebd": "layer_norm",
        },
        {
            "p_bias": "deberta_v2",
            "max_position": 16,
            "share_att_key": True,
            "pos_att_type": "p2c|c2p",
            "position_buckets": -1,
            "max_relative_positions": 3,
            "norm_rel_ebd": "layer_norm",
            "layer_norm_eps": 1e-7,
        },
    ],
)
def test_multi_head_attention_layer_equals_the_seed(S, kwargs):
    torch.manual_seed(5)
    seed_att = _randomise(S.MultiHeadAttentionLayer(H, HEADS_A, 0.1, **kwargs))
    att = _load(L.MultiHeadAttentionLayer(H, HEADS_A, 0.1, **kwargs), seed_att)
    x, mask = torch.randn(2, 5, H), _seed_mask()
    _close(att(x, mask), seed_att(x, mask))
    _close(att(x), seed_att(x))
    causal = torch.ones(5, 5).tril()[None, None]
    _close(att(x, causal), seed_att(x, causal))


def test_multi_head_attention_layer_cross_attention_and_scores(S):
    torch.manual_seed(6)
    seed_att = _randomise(S.MultiHeadAttentionLayer(H, HEADS_A, 0.0, return_attention_scores=True))
    att = _load(L.MultiHeadAttentionLayer(H, HEADS_A, 0.0, return_attention_scores=True), seed_att)
    x, enc, enc_mask = torch.randn(2, 3, H), torch.randn(2, 5, H), _seed_mask()
    (out, scores), (want, want_scores) = (
        att(x, None, enc, enc_mask),
        seed_att(x, None, enc, enc_mask),
    )
    _close(out, want)
    _close(scores, want_scores)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"conditional_size": 4},
        {"is_decoder": True},
        {"p_bias": "typical_relative", "max_position": 16, "max_relative_position": 3},
    ],
)
def test_bert_layer_equals_the_seed(S, kwargs):
    torch.manual_seed(7)
    args = (H, HEADS_A, 0.1, 0.1, 12, "gelu")
    seed_layer = _randomise(S.BertLayer(*args, **kwargs))
    layer = _load(L.BertLayer(*args, **kwargs), seed_layer)
    x, mask = torch.randn(2, 5, H), _seed_mask()
    cond = torch.randn(2, 4) if kwargs.get("conditional_size") else None
    extra = (torch.randn(2, 3, H), _seed_mask(3)) if kwargs.get("is_decoder") else (None, None)
    _close(layer(x, mask, cond, *extra), seed_layer(x, mask, cond, *extra))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"p_bias": "sinusoid"},
        {"p_bias": "rotary", "conditional_size": 3},
        {"emb_scale": 2.0},
    ],
)
def test_bert_embeddings_equals_the_seed(S, kwargs):
    torch.manual_seed(8)
    args = (20, 6, H, 16, 2, False, 0.1)
    seed_emb = _randomise(S.BertEmbeddings(*args, **kwargs))
    emb = _load(L.BertEmbeddings(*args, **kwargs), seed_emb)
    ids, seg = torch.randint(0, 20, (2, 5)), torch.randint(0, 2, (2, 5))
    cond = torch.randn(2, 3) if kwargs.get("conditional_size") else None
    mask = _seed_mask()
    _close(emb(ids, seg, cond, None, mask), seed_emb(ids, seg, cond, None, mask))
    if cond is None:  # (0.2.5's conditional norm needs its condition)
        _close(emb(ids), seed_emb(ids))


def test_shared_segment_embeddings_equal_the_seed(S):
    args = (20, H, H, 16, 2, True, 0.1)
    seed_emb = _randomise(S.BertEmbeddings(*args))
    emb = _load(L.BertEmbeddings(*args), seed_emb)
    ids, seg = torch.randint(0, 20, (2, 5)), torch.randint(0, 2, (2, 5))
    _close(emb(ids, seg), seed_emb(ids, seg))


# --------------------------------------------------------------------------- position encodings


def test_sinusoidal_position_encoding_equals_the_seed(S):
    seed_pe = S.SinusoidalPositionEncoding(32, 10)
    pe = _load(L.SinusoidalPositionEncoding(32, 10), seed_pe)
    ids = torch.tensor([[0, 3, 31], [7, 7, 1]])
    _close(pe(ids), seed_pe(ids))


def test_rope_position_encoding_equals_the_seed(S):
    seed_rope = S.RoPEPositionEncoding(32, 8)
    rope = _load(L.RoPEPositionEncoding(32, 8), seed_rope)
    x = torch.randn(2, 3, 10, 8)
    _close(rope(x), seed_rope(x))
    _close(rope(x, -2), seed_rope(x, -2))


def test_relative_positions_encodings_equal_the_seed(S):
    seed_nezha = S.RelativePositionsEncoding(12, 12, 8, 4)
    nezha = _load(L.RelativePositionsEncoding(12, 12, 8, 4), seed_nezha)
    _close(nezha(7, 9), seed_nezha(7, 9))
    _close(nezha.position_embeddings, seed_nezha.position_embeddings)
    for buckets, max_pos in ((-1, 16), (8, 16), (4, 32)):
        seed_deb = S.RelativePositionsEncodingDebertaV2(20, 20, buckets, max_pos)
        deb = _load(L.RelativePositionsEncodingDebertaV2(20, 20, buckets, max_pos), seed_deb)
        assert torch.equal(deb(11, 20), seed_deb(11, 20))


@pytest.mark.parametrize(("div_val", "cutoffs", "emb"), [(1, [], 6), (1, [], 8), (2, [4, 9], 8)])
def test_adaptive_embedding_equals_the_seed(S, div_val, cutoffs, emb):
    seed_ae = _randomise(S.AdaptiveEmbedding(16, emb, 8, list(cutoffs), div_val))
    ae = _load(L.AdaptiveEmbedding(16, emb, 8, list(cutoffs), div_val), seed_ae)
    ids = torch.tensor([[0, 1, 5, 6, 10, 15], [3, 2, 4, 9, 11, 12]])
    with torch.no_grad():
        _close(ae(ids), seed_ae(ids))


# --------------------------------------------------------------------------- task layers


def test_bert_whitening_equals_the_seed(S, tmp_path):
    torch.manual_seed(9)
    mixing = torch.randn(6, 6)
    vecs = [torch.randn(40, 6) @ mixing + 1.0, torch.randn(30, 6) @ mixing]
    seed_w, w = S.BERT_WHITENING(), L.BERT_WHITENING()
    seed_w.compute_kernel_bias(vecs)
    w.compute_kernel_bias(vecs)
    _close(w.kernel, seed_w.kernel, atol=1e-4)
    _close(w.bias, seed_w.bias)
    x = torch.randn(5, 6)
    _close(w.transform_and_normalize(x), seed_w.transform_and_normalize(x), atol=1e-4)
    # whitened training vectors have identity covariance
    white = (torch.cat(vecs) + w.bias) @ w.kernel
    _close(torch.cov(white.T), torch.eye(6), atol=1e-3)
    _close(L.BERT_WHITENING().transform_and_normalize(x), x / x.norm(dim=1, keepdim=True))


def test_bert_whitening_save_load_round_trip(S, tmp_path):
    """0.2.5's save_whiten calls torch.save(path, dict) with the arguments swapped and fails."""
    w = L.BERT_WHITENING()
    w.compute_kernel_bias([torch.randn(20, 4)])
    path = tmp_path / "whiten.pt"
    w.save_whiten(path)
    back = L.BERT_WHITENING()
    back.load_whiten(path)
    assert torch.equal(back.kernel, w.kernel) and torch.equal(back.bias, w.bias)
    seed_w = S.BERT_WHITENING()
    seed_w.compute_kernel_bias([torch.randn(20, 4)])
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises for a dict "file"
        seed_w.save_whiten(str(tmp_path / "seed.pt"))


@pytest.mark.parametrize(
    ("shaking", "inner"),
    [
        ("cat", ""),
        ("cat_plus", "mean_pooling"),
        ("cat_plus", "max_pooling"),
        ("cat_plus", "mix_pooling"),
        ("cat_plus", "lstm"),
        ("cln", ""),
        ("cln_plus", "mix_pooling"),
        ("cln_plus", "lstm"),
    ],
)
def test_tplinker_handshaking_kernel_equals_the_seed(S, shaking, inner):
    torch.manual_seed(10)
    seed_k = _randomise(S.TplinkerHandshakingKernel(6, shaking, inner))
    kernel = _load(L.TplinkerHandshakingKernel(6, shaking, inner), seed_k)
    x = torch.randn(2, 5, 6)
    got = kernel(x)
    assert got.shape == (2, 15, 6)
    with torch.no_grad():
        _close(got, seed_k(x))


def test_conv_layer_equals_the_seed(S):
    torch.manual_seed(11)
    seed_conv = _randomise(S.ConvLayer(H, 0.1, 1e-7, 3, 2, "gelu"))
    conv = _load(L.ConvLayer(H, 0.1, 1e-7, 3, 2, "gelu"), seed_conv)
    x, res = torch.randn(2, 5, H), torch.randn(2, 5, H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    _close(conv(x, res, mask), seed_conv(x, res, mask))


def test_identity_returns_its_first_input(S):
    x = torch.randn(2, 3)
    assert L.Identity(1, a=2)(x, None) is x
    assert S.Identity(1, a=2)(x, None) is x


# ------------------------------------------------------------------ T5Layer and helpers


@pytest.mark.parametrize("version", ["t5.1.0", "t5.1.1", "mt5.1.1"])
@pytest.mark.parametrize("is_decoder", [False, True])
def test_t5_layer_equals_the_seed(S, version, is_decoder):
    """0.2.5's ``T5Layer`` with the keyword arguments its ``T5_Encoder`` / ``T5_Decoder``
    pass; the seed's state dict (relative-position buffers included) loads strictly."""
    kwargs = {
        "p_bias": "t5_relative",
        "relative_attention_num_buckets": 8,
        "max_position": 16,
        "bias": False,
        "norm_mode": "rmsnorm",
        "is_decoder": is_decoder,
        "is_dropout": True,
    }
    args = (H, HEADS_A, 0.1, 0.1, 12, "gelu_new" if "1.1" in version else "relu")
    seed_layer = _randomise(S.T5Layer(*args, version=version, **kwargs))
    layer = _load(L.T5Layer(*args, version=version, **kwargs), seed_layer)
    x, mask = torch.randn(2, 5, H), _seed_mask()
    extra = (torch.randn(2, 3, H), _seed_mask(3)) if is_decoder else (None, None)
    _close(layer(x, mask, None, *extra), seed_layer(x, mask, None, *extra))


@pytest.mark.parametrize("is_decoder", [False, True])
def test_relative_positions_encoding_t5_equals_the_seed(S, is_decoder):
    seed_enc = S.RelativePositionsEncodingT5(20, 24, 32, is_decoder)
    ours = L.RelativePositionsEncodingT5(20, 24, 32, is_decoder)
    assert torch.equal(ours.relative_position, seed_enc.relative_position)
    assert torch.equal(ours(7, 9), seed_enc(7, 9))


def test_take_along_dim_and_torch_div_equal_the_seed(b4t_seed):
    snippets = b4t_seed["snippets"]
    x = torch.randn(3, 5)
    idx = torch.tensor([[0, 4], [1, 1], [3, 2]])
    assert torch.equal(L.take_along_dim(x, idx, 1), snippets.take_along_dim(x, idx, 1))
    flat = torch.tensor([0, 7, 14])
    assert torch.equal(L.take_along_dim(x, flat), snippets.take_along_dim(x, flat))
    n = torch.tensor([-7, -1, 0, 5, 13])
    for mode in (None, "floor", "trunc"):
        assert torch.equal(L.torch_div(n, 4, mode), snippets.torch_div(n, 4, mode))
