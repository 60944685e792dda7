"""Each loss equals its formula on hand-checked values and torch's own loss where they coincide."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from b4t.adversarial import (
    ContrastiveLoss,
    FocalLoss,
    LabelSmoothingCrossEntropy,
    MultilabelCategoricalCrossentropy,
    RDropLoss,
    SparseMultilabelCategoricalCrossentropy,
    TemporalEnsemblingLoss,
    UDALoss,
    tsa_threshold,
)

DTYPES = [torch.float32, torch.bfloat16]
TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2}}


def _logits(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 2).to(dtype)


def _softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


# ---------------------------------------------------------------- focal loss
def test_focal_hand_value():
    # p_t = e^2 / (e^2 + 1); FL = -(1 - p_t)^2 log p_t; second row: p_t = 1/2, alpha-free
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([0, 1])
    p = math.exp(2) / (math.exp(2) + 1)
    expected = (-((1 - p) ** 2) * math.log(p) - 0.25 * math.log(0.5)) / 2
    got = FocalLoss(gamma=2)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_scalar_alpha_weights_classes():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    target = torch.tensor([0, 1])
    p0 = math.exp(2) / (math.exp(2) + 1)
    p1 = math.exp(3) / (math.exp(3) + 1)
    a = 0.25
    terms = [-(1 - a) * (1 - p0) ** 2 * math.log(p0), -a * (1 - p1) ** 2 * math.log(p1)]
    got = FocalLoss(gamma=2, alpha=a, reduction="sum")(logits, target)
    assert got.item() == pytest.approx(sum(terms), rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_gamma0_is_cross_entropy(dtype):
    logits = _logits((6, 4, 5), dtype)
    target = torch.tensor([[0, 1, 2, 3], [4, -100, 0, 1], [2, 2, 2, 2]] * 2)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0])
    for w in (None, weight):
        got = FocalLoss(gamma=0, weight=w)(logits, target)
        ref = F.cross_entropy(logits.float().reshape(-1, 5), target.reshape(-1), weight=w)
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_none_reduction_matches_per_element_formula(dtype):
    logits = _logits((5, 3), dtype, seed=3)
    target = torch.tensor([0, 1, 2, 1, 0])
    got = FocalLoss(gamma=1.5, reduction="none")(logits, target)
    for i, row in enumerate(logits.float().tolist()):
        pt = _softmax_row(row)[target[i]]
        expected = -((1 - pt) ** 1.5) * math.log(pt)
        assert got[i].item() == pytest.approx(expected, rel=TOL[dtype]["rtol"], abs=1e-5)


# ------------------------------------------------------------ label smoothing
def test_label_smoothing_hand_value():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([2])
    logp = [math.log(p) for p in _softmax_row([1.0, 2.0, 3.0])]
    eps = 0.2
    expected = (1 - eps) * -logp[2] + eps * -sum(logp) / 3
    got = LabelSmoothingCrossEntropy(eps=eps)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_matches_torch(dtype, reduction):
    logits = _logits((8, 6), dtype, seed=1)
    target = torch.tensor([0, 5, 3, -100, 2, 2, 1, 4])
    got = LabelSmoothingCrossEntropy(eps=0.1, reduction=reduction)(logits, target)
    ref = F.cross_entropy(logits.float(), target, label_smoothing=0.1, reduction=reduction)
    torch.testing.assert_close(got.float(), ref, **TOL[dtype])


# ------------------------------------------------------------ multilabel CE
def _multilabel_formula(scores, labels):
    neg = 1 + sum(math.exp(s) for s, t in zip(scores, labels) if t == 0)
    pos = 1 + sum(math.exp(-s) for s, t in zip(scores, labels) if t == 1)
    return math.log(neg) + math.log(pos)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_ce_is_logsumexp_form(dtype):
    scores = _logits((4, 7), dtype, seed=2)
    labels = torch.tensor(
        [[1, 0, 0, 1, 0, 0, 0], [0] * 7, [1] * 7, [0, 1, 1, 0, 0, 1, 0]], dtype=torch.long
    )
    got = MultilabelCategoricalCrossentropy(reduction="none")(scores, labels)
    for i in range(4):
        expected = _multilabel_formula(scores[i].float().tolist(), labels[i].tolist())
        assert got[i].item() == pytest.approx(expected, rel=TOL[dtype]["rtol"], abs=1e-5)
    mean = MultilabelCategoricalCrossentropy()(scores, labels)
    torch.testing.assert_close(mean.float(), got.float().mean(), **TOL[dtype])


def test_multilabel_ce_hand_value():
    # scores (2, -1, 0), positives {0}: log(1 + e^-1 + e^0) + log(1 + e^-2)
    got = MultilabelCategoricalCrossentropy()(
        torch.tensor([[2.0, -1.0, 0.0]]), torch.tensor([[1, 0, 0]])
    )
    expected = math.log(1 + math.exp(-1) + 1) + math.log(1 + math.exp(-2))
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_multilabel_equals_dense(dtype):
    scores = _logits((3, 6), dtype, seed=4)
    pos = torch.tensor([[1, 4], [2, 2], [5, 3]])  # a repeated id counts once in the dense form
    dense = torch.zeros(3, 6, dtype=torch.long).scatter(1, pos, 1)
    got = SparseMultilabelCategoricalCrossentropy()(scores, pos)
    ref = MultilabelCategoricalCrossentropy(reduction="none")(scores, dense)
    assert got.shape == (3,)
    # row 1 repeats id 2: the sparse positive term counts it twice, so compare rows 0 and 2
    torch.testing.assert_close(got[[0, 2]].float(), ref[[0, 2]].float(), **TOL[dtype])


def test_sparse_multilabel_mask_zero_ignores_padding_and_class0():
    scores = _logits((2, 5), torch.float32, seed=5)
    pos = torch.tensor([[3, 1, 0], [2, 0, 0]])  # 0 pads
    got = SparseMultilabelCategoricalCrossentropy(mask_zero=True)(scores, pos)
    for i, ids in enumerate(([3, 1], [2])):
        labels = [1 if c in ids else 0 for c in range(1, 5)]
        expected = _multilabel_formula(scores[i, 1:].tolist(), labels)
        assert got[i].item() == pytest.approx(expected, rel=1e-5)


# -------------------------------------------------------------- contrastive
def test_contrastive_offline_hand_value():
    d = torch.tensor([0.1, 0.3, 0.9, 0.2])
    y = torch.tensor([1, 1, 0, 0])
    terms = [0.5 * 0.01, 0.5 * 0.09, 0.0, 0.5 * 0.3**2]  # margin 0.5
    assert ContrastiveLoss()(d, y).item() == pytest.approx(sum(terms) / 4, rel=1e-6)
    loss_sum = ContrastiveLoss(size_average=False)(d, y)
    assert loss_sum.item() == pytest.approx(sum(terms), rel=1e-6)


def test_contrastive_online_keeps_hard_pairs():
    d = torch.tensor([0.1, 0.4, 0.2, 0.8, 0.35])
    y = torch.tensor([1, 1, 0, 0, 0])
    # negatives closer than the farthest positive (0.4): 0.2, 0.35
    # positives farther than the closest negative (0.2): 0.4
    expected = 0.4**2 + (0.5 - 0.2) ** 2 + (0.5 - 0.35) ** 2
    got = ContrastiveLoss(online=True)(d, y)
    assert got.item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ R-Drop
def _rdrop_formula(z1, z2, y, alpha):
    ce = (F.cross_entropy(z1, y) + F.cross_entropy(z2, y)) / 2
    p1, p2 = F.softmax(z1, -1), F.softmax(z2, -1)
    kl = p2 * (p2.log() - p1.log()) + p1 * (p1.log() - p2.log())
    return ce + kl.mean() / 4 * alpha


@pytest.mark.parametrize("dtype", DTYPES)
def test_rdrop_forms_agree_with_formula(dtype):
    """The three call forms give the same loss for the same two passes. bert4torch 0.2.5's
    (y_pred1, y_pred2, y_true) form differs on purpose (MIGRATION.md): it takes CE(y_pred1)
    alone, which is the averaged CE minus (CE(z2) - CE(z1)) / 2."""
    z1, z2 = _logits((4, 3), dtype, seed=6), _logits((4, 3), dtype, seed=7)
    y = torch.tensor([0, 2, 1, 1])
    expected = _rdrop_formula(z1.float(), z2.float(), y, alpha=4)
    three = RDropLoss(alpha=4)(z1, z2, y)
    torch.testing.assert_close(three.float(), expected, **TOL[dtype])
    ce1, ce2 = F.cross_entropy(z1.float(), y), F.cross_entropy(z2.float(), y)
    seed_three = expected - (ce1 + ce2) / 2 + ce1  # 0.2.5's formula for this call
    torch.testing.assert_close(
        three.float() - seed_three, (ce2 - ce1) / 2, rtol=TOL[dtype]["rtol"], atol=3e-2
    )
    assert abs(float(ce2 - ce1)) > 0.1  # the example really tells the two apart
    adjacent = torch.stack([z2, z1], dim=1).reshape(8, 3)  # rows z2[0], z1[0], z2[1], ...
    y2 = y.repeat_interleave(2)
    torch.testing.assert_close(RDropLoss(alpha=4)(adjacent, y2).float(), expected, **TOL[dtype])
    updown = torch.cat([z1, z2])
    torch.testing.assert_close(
        RDropLoss(alpha=4, rank="updown")(updown, y.repeat(2)).float(), expected, **TOL[dtype]
    )


def test_rdrop_identical_passes_is_cross_entropy():
    z = _logits((4, 3), torch.float32)
    y = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(RDropLoss(alpha=10)(z, z, y), F.cross_entropy(z, y))


# --------------------------------------------------------------------- UDA
def test_tsa_threshold_hand_values():
    assert tsa_threshold("linear", 5, 10) == pytest.approx(0.5)
    assert tsa_threshold("exp_schedule", 10, 10) == pytest.approx(1.0)
    assert tsa_threshold("exp", 0, 10) == pytest.approx(math.exp(-5))
    assert tsa_threshold("log", 0, 10) == pytest.approx(0.0)
    assert tsa_threshold("log", 2, 10) == pytest.approx(1 - math.exp(-1))
    assert tsa_threshold("linear", 5, 10, start=0.2, end=1.0) == pytest.approx(0.6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uda_without_tsa_is_ce_plus_kl(dtype):
    y_pred = _logits((2 + 3 + 3, 4), dtype, seed=8)
    y = torch.tensor([1, 3])
    total, sup, unsup = UDALoss()(y_pred, y, 0, 10)
    z = y_pred.float()
    ce = F.cross_entropy(z[:2], y)
    p, q = F.softmax(z[2:5], -1), F.softmax(z[5:], -1)
    kl = (p * (p.log() - q.log())).sum() / 3
    torch.testing.assert_close(sup.float(), ce, **TOL[dtype])
    torch.testing.assert_close(unsup.float(), kl, **TOL[dtype])
    torch.testing.assert_close(total.float(), ce + kl, **TOL[dtype])


def test_uda_total_steps_in_constructor_is_the_fallback():
    """bert4torch's UDALoss(tsa_schedule, total_steps, start_p, end_p, return_all_loss)."""
    y_pred = torch.tensor([[5.0, 0.0], [0.0, 0.2], [0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1])
    positional = UDALoss("linear_schedule", 10, 0, 1, False)
    torch.testing.assert_close(
        positional(y_pred, y, 6), UDALoss("linear", return_all_loss=False)(y_pred, y, 6, 10)
    )
    # an explicit total_steps wins: 6 / 100 keeps no row (both p_true > 0.06)
    p, q = F.softmax(y_pred[2:3], -1), F.softmax(y_pred[3:4], -1)
    kl = (p * (p.log() - q.log())).sum()
    torch.testing.assert_close(positional(y_pred, y, 6, 100), kl)
    with pytest.raises(ValueError, match="TSA needs total_steps"):
        UDALoss("linear")(y_pred, y, 6)


def test_uda_tsa_drops_confident_rows():
    y_pred = torch.tensor([[5.0, 0.0], [0.0, 0.2], [0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1])  # p_true: 0.993 and 0.55
    loss = UDALoss("linear_schedule", return_all_loss=False)
    got = loss(y_pred, y, global_step=6, total_steps=10)  # threshold 0.6 keeps row 1 only
    p = F.softmax(y_pred[2:3], -1)
    q = F.softmax(y_pred[3:4], -1)
    kl = (p * (p.log() - q.log())).sum()
    torch.testing.assert_close(got, F.cross_entropy(y_pred[1:2], y[1:2]) + kl)


# ------------------------------------------------------ temporal ensembling
def test_temporal_ensembling_schedule_and_bias_correction():
    loss = TemporalEnsemblingLoss(epochs=4, max_val=10.0, alpha=0.6)
    zs, zu = _logits((2, 3), torch.float32, 9), _logits((2, 3), torch.float32, 10)
    y = torch.tensor([0, 2])
    total, _, w_unsup = loss(zs, zu, y, epoch=0, bti=0)
    assert w_unsup.item() == 0.0  # w(0) = 0
    torch.testing.assert_close(total, F.cross_entropy(zs, y))
    # epoch 1: target = Z / (1 - 0.6), Z = 0.4 * z_epoch0; same logits -> target == z
    total, _, w_unsup = loss(zs, zu, y, epoch=1, bti=0)
    w = 10.0 * 0.5 * math.exp(-5.0 * (1 - 1 / 4) ** 2)
    assert loss.weight_schedule(1, 0.5) == pytest.approx(w)
    assert w_unsup.item() == pytest.approx(0.0, abs=1e-7)  # unbiased target equals prediction
    zs2 = zs + torch.tensor([1.0, 0.0, 0.0])
    zu2 = zu * torch.tensor([0.0, 1.0, 2.0])
    _, _, w_unsup = loss(zs2, zu2, y, epoch=2, bti=0)
    target_s = (0.6 * 0.4 * zs + 0.4 * zs) / (1 - 0.6**2)  # Z after epochs 0 and 1, corrected
    target_u = (0.6 * 0.4 * zu + 0.4 * zu) / (1 - 0.6**2)
    mse = ((F.softmax(zs2, -1) - F.softmax(target_s, -1)) ** 2).sum() / zs2.numel()
    mse_u = ((F.softmax(zu2, -1) - F.softmax(target_u, -1)) ** 2).sum() / zu2.numel()
    assert mse.item() > 1e-3 and mse_u.item() > 1e-3  # both terms count
    assert w_unsup.item() == pytest.approx(loss.weight_schedule(2, 0.5) * (mse + mse_u).item())
    assert loss.weight_schedule(4, 0.5) == pytest.approx(5.0)


def test_temporal_ensembling_refuses_shuffled_batches():
    """As bert4torch: the labels of a batch index (among the first 10) must repeat."""
    loss = TemporalEnsemblingLoss(epochs=3)
    zs, zu = _logits((2, 3), torch.float32, 1), _logits((2, 3), torch.float32, 2)
    loss(zs, zu, torch.tensor([0, 1]), epoch=0, bti=0)
    loss(zs, zu, torch.tensor([1, 1]), epoch=0, bti=10)  # past the checked batches
    loss(zs, zu, torch.tensor([0, 1]), epoch=1, bti=0)
    loss(zs, zu, torch.tensor([2, 2]), epoch=1, bti=10)
    with pytest.raises(ValueError, match=r"batch 0: y_true_sup differs .* shuffle=False"):
        loss(zs, zu, torch.tensor([1, 0]), epoch=2, bti=0)
