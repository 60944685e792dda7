"""b4t.adversarial beside bert4torch 0.2.5: every loss with every argument, one training step
of FGM / PGD / gradient penalty / VAT on the same tiny model, the batch logs, and MixUp.

Where b4t differs on purpose the test asserts the difference (and MIGRATION.md lists it).
"""

from __future__ import annotations

import copy
import inspect
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import b4t.adversarial as adv
from b4t.adversarial import AdversarialTraining, MixUp
from b4t.trainer import Trainer

TOL = {"rtol": 1e-5, "atol": 1e-6}


def _close(got, expected, **tol):
    torch.testing.assert_close(
        torch.as_tensor(got).float(), torch.as_tensor(expected).float(), **(tol or TOL)
    )


def _randn(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _randint(high, *shape, seed=0):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


# =================================================================== losses
def test_every_seed_loss_exists_in_b4t(b4t_seed):
    seed_losses = {
        name
        for name, obj in vars(b4t_seed["losses"]).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__.endswith("losses")
    }
    assert seed_losses == {
        "FocalLoss",
        "LabelSmoothingCrossEntropy",
        "MultilabelCategoricalCrossentropy",
        "SparseMultilabelCategoricalCrossentropy",
        "ContrastiveLoss",
        "RDropLoss",
        "UDALoss",
        "TemporalEnsemblingLoss",
    }
    assert seed_losses <= set(adv.__all__)


@pytest.mark.parametrize(
    "args",
    [(), (0.0,), (0.5,), (2, [0.2, 0.3, 0.5]), (1.5, [1.0, 2.0, 0.5], 1), (2, None, 2)],
)
def test_focal_loss(b4t_seed, args):
    args_seed = tuple(torch.tensor(a) if isinstance(a, list) else a for a in args)
    logits, target = _randn(7, 3, seed=1), _randint(3, 7, seed=2)
    seed = b4t_seed["losses"].FocalLoss(*args_seed)(logits, target)
    _close(adv.FocalLoss(*args)(logits, target), seed)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_without_ignored_targets(b4t_seed, eps, reduction):
    logits, target = _randn(6, 4, seed=3), _randint(4, 6, seed=4)
    seed = b4t_seed["losses"].LabelSmoothingCrossEntropy(eps, reduction, -100)(logits, target)
    _close(adv.LabelSmoothingCrossEntropy(eps, reduction, -100)(logits, target), seed)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_ignored_rows_deviation(b4t_seed, reduction):
    """0.2.5 puts ignore_index rows into the smoothing term (and its mean counts them);
    b4t leaves them out, as torch's cross_entropy(label_smoothing=...) does."""
    logits = _randn(6, 4, seed=3)
    target = torch.tensor([0, -100, 3, 2, -100, 1])
    seed = b4t_seed["losses"].LabelSmoothingCrossEntropy(0.2, reduction, -100)(logits, target)
    got = adv.LabelSmoothingCrossEntropy(0.2, reduction, -100)(logits, target)
    torch_ref = F.cross_entropy(logits, target, label_smoothing=0.2, reduction=reduction)
    _close(got, torch_ref)
    assert not torch.allclose(got, seed, rtol=1e-3)
    keep = target != -100
    if reduction == "none":  # kept rows agree; ignored rows: 0.2.5 keeps a smoothing term
        _close(got[keep], seed[keep])
        assert bool((seed[~keep] > 0).all()) and bool((got[~keep] == 0).all())


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6)])
def test_multilabel_categorical_crossentropy(b4t_seed, shape):
    y_pred = _randn(*shape, seed=5)
    y_true = (_randn(*shape, seed=6) > 0).float()
    seed = b4t_seed["losses"].MultilabelCategoricalCrossentropy()(y_pred, y_true)
    _close(adv.MultilabelCategoricalCrossentropy()(y_pred, y_true), seed)


@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("epsilon", [1e-7, 1e-3])
def test_sparse_multilabel_categorical_crossentropy(b4t_seed, mask_zero, epsilon):
    y_pred = _randn(4, 3, 7, seed=7)
    y_true = torch.stack([torch.randperm(7, generator=torch.Generator().manual_seed(i))[:3]
                          for i in range(12)]).reshape(4, 3, 3)  # fmt: skip
    if mask_zero:
        y_true[0, 0, 2] = 0  # padding id
    seed_loss = b4t_seed["losses"].SparseMultilabelCategoricalCrossentropy(mask_zero, epsilon)
    got = adv.SparseMultilabelCategoricalCrossentropy(mask_zero, epsilon)(y_pred, y_true)
    _close(got, seed_loss(y_pred, y_true))


@pytest.mark.parametrize(
    "args", [(), (0.8,), (0.5, False), (0.5, True, True), (0.3, False, True), (1.0, True, True)]
)
def test_contrastive_loss(b4t_seed, args):
    distances = torch.rand(10, generator=torch.Generator().manual_seed(8))
    labels = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
    seed = b4t_seed["losses"].ContrastiveLoss(*args)(distances, labels)
    _close(adv.ContrastiveLoss(*args)(distances, labels), seed)


@pytest.mark.parametrize(("alpha", "rank"), [(4, "adjacent"), (1.5, "adjacent"), (2, "updown")])
def test_rdrop_two_arguments(b4t_seed, alpha, rank):
    y_pred, y_true = _randn(8, 3, seed=9), _randint(3, 8, seed=10)
    seed = b4t_seed["losses"].RDropLoss(alpha, rank)(y_pred, y_true)
    _close(adv.RDropLoss(alpha, rank)(y_pred, y_true), seed)


@pytest.mark.parametrize("alpha", [4, 1.5])
def test_rdrop_three_arguments_deviation(b4t_seed, alpha):
    """0.2.5's (y_pred1, y_pred2, y_true) form takes the cross-entropy of y_pred1 only, so it
    disagrees with its own (y_pred, y_true) form on the same two passes; b4t averages both
    passes' cross-entropy (as the two-argument form and the R-Drop paper's code do)."""
    z1, z2, y = _randn(4, 3, seed=11), _randn(4, 3, seed=12), _randint(3, 4, seed=13)
    seed_cls = b4t_seed["losses"].RDropLoss
    seed_three = seed_cls(alpha)(z1, z2, y)
    seed_two = seed_cls(alpha)(torch.stack([z2, z1], 1).reshape(8, 3), y.repeat_interleave(2))
    got = adv.RDropLoss(alpha)(z1, z2, y)
    _close(got, seed_two)  # = 0.2.5's own two-argument form
    _close(got - seed_three, (F.cross_entropy(z2, y) - F.cross_entropy(z1, y)) / 2)
    assert abs(float(got - seed_three)) > 1e-3


@pytest.mark.parametrize(
    "schedule", [None, "linear_schedule", "exp_schedule", "log_schedule"]
)  # fmt: skip
@pytest.mark.parametrize("return_all_loss", [True, False])
@pytest.mark.parametrize(("start_p", "end_p"), [(0, 1), (0.3, 0.9)])
def test_uda_loss(b4t_seed, schedule, return_all_loss, start_p, end_p):
    y_pred = _randn(3 + 2 * 4, 5, seed=14)
    y_true = _randint(5, 3, seed=15)
    seed_loss = b4t_seed["losses"].UDALoss(schedule, 100, start_p, end_p, return_all_loss)
    b4t_loss = adv.UDALoss(schedule, 100, start_p, end_p, return_all_loss)
    for step in (0, 30, 70, 100):
        seed, got = seed_loss(y_pred, y_true, step, 100), b4t_loss(y_pred, y_true, step, 100)
        if not return_all_loss:
            seed, got = (seed,), (got,)
        assert len(seed) == len(got)
        for s, g in zip(seed, got):
            _close(g, s)


def test_uda_without_unsupervised_rows_deviation(b4t_seed):
    """0.2.5 returns NaN for a batch with no unsupervised rows (KL 'batchmean' over 0 rows);
    b4t returns the supervised loss with a zero unsupervised part."""
    y_pred, y_true = _randn(3, 4, seed=16), _randint(4, 3, seed=17)
    seed_total, _, seed_unsup = b4t_seed["losses"].UDALoss()(y_pred, y_true, 0, 10)
    total, _, unsup = adv.UDALoss()(y_pred, y_true, 0, 10)
    assert torch.isnan(seed_unsup) and torch.isnan(seed_total)
    assert unsup.item() == 0.0
    _close(total, F.cross_entropy(y_pred, y_true))


@pytest.mark.parametrize(
    "args", [(4,), (3, 5.0, -3.0, 0.6), (5, 10.0, -5.0, 0.3, None), (4, 10.0, -5.0, 0.5, 1)]
)
def test_temporal_ensembling_first_two_epochs_and_uncorrected_batches(b4t_seed, args):
    """Equal while the ensemble holds at most one update (epochs 0 and 1), and for batches
    past max_batch_num (plain CE)."""
    seed_loss = b4t_seed["losses"].TemporalEnsemblingLoss(*args)
    b4t_loss = adv.TemporalEnsemblingLoss(*args)
    y = _randint(3, 2, seed=18)
    for epoch in (0, 1):
        for bti in (0, 1, 2):
            zs, zu = _randn(2, 3, seed=10 * epoch + bti), _randn(4, 3, seed=50 + 10 * epoch + bti)
            seed, got = seed_loss(zs, zu, y, epoch, bti), b4t_loss(zs, zu, y, epoch, bti)
            if isinstance(seed, torch.Tensor):  # bti >= max_batch_num: plain CE
                _close(got, seed)
                _close(got, F.cross_entropy(zs, y))
                continue
            for s, g in zip(seed, got):
                _close(g, s)


def test_temporal_ensembling_bias_correction_deviation(b4t_seed):
    """From epoch 2 on 0.2.5 feeds the bias-corrected ensemble back into the history (so
    the correction compounds); b4t keeps the raw ensemble Z and divides by 1 - alpha^t only
    for the target, as Laine & Aila (2017)."""
    a = 0.6
    seed_loss = b4t_seed["losses"].TemporalEnsemblingLoss(4, 10.0, -5.0, a)
    b4t_loss = adv.TemporalEnsemblingLoss(4, 10.0, -5.0, a)
    y = torch.tensor([0, 2])
    zs = [_randn(2, 3, seed=i) for i in range(3)]
    zu = [_randn(2, 3, seed=10 + i) for i in range(3)]
    for e in (0, 1):
        seed_loss(zs[e], zu[e], y, e, 0)
        b4t_loss(zs[e], zu[e], y, e, 0)
    _, _, seed_w = seed_loss(zs[2], zu[2], y, 2, 0)
    _, _, got_w = b4t_loss(zs[2], zu[2], y, 2, 0)

    def paper_target(z):  # Z_2 = a(1-a) z_0 + (1-a) z_1, target Z_2 / (1 - a^2)
        return (a * (1 - a) * z[0] + (1 - a) * z[1]) / (1 - a**2)

    def mse(p, t):
        return ((F.softmax(p, -1) - F.softmax(t, -1)) ** 2).sum() / p.numel()

    w = 10.0 * 0.5 * math.exp(-5.0 * (1 - 2 / 4) ** 2)
    expected = w * (mse(zu[2], paper_target(zu)) + mse(zs[2], paper_target(zs)))
    _close(got_w, expected)
    assert abs(float(got_w - seed_w)) > 1e-4


# ======================================================= one adversarial step
class Tiny(nn.Module):
    """token ids [B, L] -> logits [B, C]; a float input is taken as the word embeddings
    (bert4torch's VAT feeds ``embed + noise`` in place of the token ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(12, 6)
        self.dense = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        is_embedding = token_ids.is_floating_point()
        e = token_ids if is_embedding else self.word_embeddings(token_ids)
        return self.head(torch.tanh(self.dense(e)).mean(1))


LR = 0.5
BATCH = (_randint(12, 4, 5, seed=21), _randint(3, 4, seed=22))
MODES = {
    "fgm": {"epsilon": 0.7},
    "pgd": {"epsilon": 0.6, "alpha": 0.4, "K": 3},
    "gradient_penalty": {"epsilon": 2.0},
    "vat": {"noise_var": 0.5, "adv_step_size": 0.7, "adv_alpha": 2.0},
}


def _base() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def _seed_step(b4t_seed, mode):
    model = b4t_seed["t4k_model"].BaseModel(copy.deepcopy(_base()))
    model.compile(loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), LR))
    callback = b4t_seed["snippets"].AdversarialTraining(mode, dict(MODES[mode]))
    torch.manual_seed(5)
    history = model.fit([BATCH], epochs=1, callbacks=[callback], verbose=1)
    logs = {k: v[0] for k, v in history.history.items() if k != "size"}
    return dict(model.module.named_parameters()), logs


def _b4t_step(mode):
    model = copy.deepcopy(_base())
    trainer = Trainer(model)
    trainer.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), LR))
    torch.manual_seed(5)
    history = trainer.fit(
        [BATCH], epochs=1, callbacks=[AdversarialTraining(mode, dict(MODES[mode]))], verbose=0
    )
    return dict(model.named_parameters()), {k: v[0] for k, v in history.history.items()}


def _plain_grads():
    model = _base()
    loss = F.cross_entropy(model(BATCH[0]), BATCH[1])
    return dict(zip([n for n, _ in model.named_parameters()],
                    torch.autograd.grad(loss, list(model.parameters()))))  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
def test_logged_loss_equals_seed(b4t_seed, mode):
    """fgm/pgd log the (last) adversarial loss, gradient_penalty adds the penalty, vat logs
    loss = loss_sup + loss_unsup: the same numbers as 0.2.5."""
    _, seed_logs = _seed_step(b4t_seed, mode)
    _, logs = _b4t_step(mode)
    assert set(logs) == set(seed_logs)
    for key in seed_logs:
        assert logs[key] == pytest.approx(seed_logs[key], rel=1e-5), key


@pytest.mark.parametrize("mode", ["fgm", "pgd"])
def test_fgm_pgd_step_equals_seed(b4t_seed, mode):
    seed_params, _ = _seed_step(b4t_seed, mode)
    params, _ = _b4t_step(mode)
    base = dict(_base().named_parameters())
    for name, p in params.items():
        _close(p.detach(), seed_params[name].detach(), atol=1e-5, rtol=1e-5)
        assert not torch.equal(p.detach(), base[name].detach()), name  # the step moved it


def test_gradient_penalty_step_deviation(b4t_seed):
    """0.2.5 adds the penalty as a constant and back-propagates the loss a second time: its
    step is -lr * 2 * dL/dtheta. b4t's is -lr * d/dtheta [L + 0.5 eps ||dL/dE||^2]."""
    seed_params, _ = _seed_step(b4t_seed, "gradient_penalty")
    params, _ = _b4t_step("gradient_penalty")
    plain = _plain_grads()
    model = _base()
    loss = F.cross_entropy(model(BATCH[0]), BATCH[1])
    (g_emb,) = torch.autograd.grad(loss, [model.word_embeddings.weight], create_graph=True)
    objective = loss + 0.5 * 2.0 * g_emb.pow(2).sum()
    names = [n for n, _ in model.named_parameters()]
    penalised = dict(zip(names, torch.autograd.grad(objective, list(model.parameters()))))
    for name, p in model.named_parameters():
        w0 = p.detach()
        _close(seed_params[name].detach(), w0 - LR * 2 * plain[name], atol=1e-5, rtol=1e-5)
        _close(params[name].detach(), w0 - LR * penalised[name], atol=1e-5, rtol=1e-5)


def test_vat_step_deviation(b4t_seed):
    """0.2.5 back-propagates loss + vat after the trainer already back-propagated the loss:
    the plain gradient counts twice. b4t's step is the seed's plus lr * dL/dtheta (one plain
    gradient fewer); the VAT part (same noise draw) is equal."""
    seed_params, seed_logs = _seed_step(b4t_seed, "vat")
    params, logs = _b4t_step("vat")
    plain = _plain_grads()
    for name, p in params.items():
        _close(p.detach(), seed_params[name].detach() + LR * plain[name], atol=1e-5, rtol=1e-5)
    assert logs["loss_unsup"] == pytest.approx(seed_logs["loss_unsup"], rel=1e-5)


class TwoHeads(Tiny):
    """Returns (logits_a, logits_b) of the same shape."""

    def __init__(self) -> None:
        super().__init__()
        self.head2 = nn.Linear(6, 3)

    def forward(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        is_embedding = token_ids.is_floating_point()
        e = token_ids if is_embedding else self.word_embeddings(token_ids)
        h = torch.tanh(self.dense(e)).mean(1)
        return self.head(h), self.head2(h)


def test_vat_rank_deviation(b4t_seed):
    """With rank=1 0.2.5 takes the clean logits from output[1] but the perturbed ones from
    output[0], so its KL compares two different heads; b4t perturbs and compares output[1]."""
    torch.manual_seed(0)
    base = TwoHeads()
    settings = {**MODES["vat"], "rank": 1}

    def loss_fn(out, y):
        return F.cross_entropy(out[1], y)

    seed_model = b4t_seed["t4k_model"].BaseModel(copy.deepcopy(base))
    seed_model.compile(loss=loss_fn, optimizer=torch.optim.SGD(seed_model.parameters(), 0.0))
    torch.manual_seed(5)
    seed_unsup = seed_model.fit(
        [BATCH], callbacks=[b4t_seed["snippets"].AdversarialTraining("vat", dict(settings))]
    ).history["loss_unsup"][0]
    results = {}
    for key in ("rank", "output_index"):
        model = copy.deepcopy(base)
        trainer = Trainer(model)
        trainer.compile(loss_fn, torch.optim.SGD(model.parameters(), 0.0))
        torch.manual_seed(5)
        cb = AdversarialTraining("vat", {**MODES["vat"], key: 1})
        results[key] = trainer.fit([BATCH], callbacks=[cb], verbose=0).history["loss_unsup"][0]
    # b4t == 0.2.5 on a model whose only output is output[1]
    single = Tiny()
    single.load_state_dict({**base.state_dict(), "head.weight": base.head2.weight,
                            "head.bias": base.head2.bias}, strict=False)  # fmt: skip
    _, ref_logs = _run_seed_vat_single(b4t_seed, single)
    assert results["rank"] == pytest.approx(ref_logs["loss_unsup"], rel=1e-5)
    assert results["output_index"] == results["rank"]
    assert abs(results["rank"] - seed_unsup) > 1e-3


def _run_seed_vat_single(b4t_seed, module):
    model = b4t_seed["t4k_model"].BaseModel(copy.deepcopy(module))
    model.compile(loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), 0.0))
    torch.manual_seed(5)
    history = model.fit(
        [BATCH], callbacks=[b4t_seed["snippets"].AdversarialTraining("vat", dict(MODES["vat"]))]
    )
    return model, {k: v[0] for k, v in history.history.items()}


def test_rank_on_single_tensor_output_deviation(b4t_seed):
    """0.2.5 ignores rank=5 when the model returns one tensor; b4t raises."""
    _, seed_logs = _run_seed_vat_single(b4t_seed, _base())  # rank 0 default: runs
    seed_model = b4t_seed["t4k_model"].BaseModel(copy.deepcopy(_base()))
    optimizer = torch.optim.SGD(seed_model.parameters(), 0.0)
    seed_model.compile(loss=nn.CrossEntropyLoss(), optimizer=optimizer)
    torch.manual_seed(5)
    cb = b4t_seed["snippets"].AdversarialTraining("vat", {**MODES["vat"], "rank": 5})
    ignored = seed_model.fit([BATCH], callbacks=[cb]).history["loss_unsup"][0]
    assert ignored == pytest.approx(seed_logs["loss_unsup"])  # silently the same as rank 0
    model = _base()
    trainer = Trainer(model)
    trainer.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.0))
    with pytest.raises(ValueError, match=r"output_index \(rank\) 5 .* single tensor"):
        trainer.fit([BATCH], callbacks=[AdversarialTraining("vat", {"rank": 5})], verbose=0)


def test_unknown_adversarial_keys_deviation(b4t_seed):
    """0.2.5 takes any key silently (a typo runs with the default) and writes its defaults
    into the caller's dict; b4t raises on an unknown key and leaves the dict alone."""
    given = {"eps": 0.3}
    b4t_seed["snippets"].AdversarialTraining("fgm", given)
    assert given == {"eps": 0.3, "epsilon": 1.0, "emb_name": "word_embeddings"}
    given = {"eps": 0.3}
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['eps'\] for mode 'fgm'"):
        AdversarialTraining("fgm", given)
    given = {"epsilon": 0.3}
    AdversarialTraining("fgm", given)
    assert given == {"epsilon": 0.3}


def test_every_seed_default_key_is_accepted(b4t_seed):
    for mode in ("fgm", "pgd", "vat", "gradient_penalty"):
        seed_settings: dict = {}
        b4t_seed["snippets"].AdversarialTraining(mode, seed_settings)  # fills in its defaults
        assert AdversarialTraining(mode, seed_settings).adversarial == seed_settings, mode


# ==================================================================== MixUp
@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_bert")
    config = transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    torch.save({f"bert.{k}": v for k, v in model.state_dict().items()},
               folder / "pytorch_model.bin")  # fmt: skip
    config.to_json_file(folder / "config.json")
    return folder


def _models(b4t_seed, folder):
    from b4t.models import build_transformer_model

    paths = (str(folder / "config.json"), str(folder / "pytorch_model.bin"))
    seed = b4t_seed["models"].build_transformer_model(*paths, with_pool=True)
    ours = build_transformer_model(*paths, with_pool=True)
    return seed.eval(), ours.eval()


INPUTS = [
    torch.tensor([[2, 5, 7, 3, 0], [2, 4, 9, 11, 3], [2, 9, 9, 9, 3], [2, 8, 3, 0, 0]]),
    torch.zeros(4, 5, dtype=torch.long),
]


def _reseed(seed=0):
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def _assert_outputs_close(got, seed):
    if isinstance(seed, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(seed)
        for g, s in zip(got, seed):
            _assert_outputs_close(g, s)
    else:
        _close(got, seed, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("method", "layer_mix"),
    [("encoder", None), ("embed", None), (None, None), ("hidden", 0), ("hidden", 1),
     ("hidden", 3)],
)  # fmt: skip
def test_mixup_encode_equals_seed(b4t_seed, bert_checkpoint, method, layer_mix):
    seed_model, model = _models(b4t_seed, bert_checkpoint)
    for draw in range(3):
        _reseed(draw)
        seed_mix = b4t_seed["layers"].MixUp(method, 0.7, layer_mix)
        seed_out = seed_mix.encode(seed_model, INPUTS)
        _reseed(draw)
        mix = MixUp(method, 0.7, layer_mix)
        out = mix.encode(model, INPUTS)
        assert mix.lam == pytest.approx(seed_mix.lam)
        assert torch.equal(mix.perm_index, seed_mix.perm_index)
        _assert_outputs_close(out, seed_out)
        y_pred, y_true = _randn(4, 3, seed=draw), _randint(3, 4, seed=draw)
        _close(mix(F.cross_entropy, y_pred, y_true), seed_mix(F.cross_entropy, y_pred, y_true))


def test_mixup_hidden_random_layer_equals_seed(b4t_seed, bert_checkpoint):
    """layer_mix=None: both draw the layer with random.randint(0, num_layers) after the
    Beta and permutation draws, so the same seeds mix the same layer."""
    for draw in range(6):
        seed_model, model = _models(b4t_seed, bert_checkpoint)
        with torch.no_grad():
            _reseed(draw)
            seed_out = b4t_seed["layers"].MixUp("hidden", 0.7).encode(seed_model, INPUTS)
            _reseed(draw)
            out = MixUp("hidden", 0.7).encode(model, INPUTS)
        random.seed(draw)
        if random.randint(0, 3) == 2:  # the last layer: see test_mixup_last_layer_deviation
            continue
        _assert_outputs_close(out, seed_out)


def test_mixup_last_layer_deviation(b4t_seed, bert_checkpoint):
    """0.2.5's 'hidden' mix after the last layer is lost (its final output takes the layer's
    unmixed hidden state), and the patched apply_on_layer_end stays on the model after
    encode; b4t mixes the last layer's output and removes its hooks."""
    seed_model, model = _models(b4t_seed, bert_checkpoint)
    with torch.no_grad():
        plain_seed = seed_model(INPUTS)
        _reseed(0)
        seed_out = b4t_seed["layers"].MixUp("hidden", 0.7, 2).encode(seed_model, INPUTS)
        _reseed(0)
        mix = MixUp("hidden", 0.7, 2)
        out = mix.encode(model, INPUTS)
        _assert_outputs_close(seed_out, plain_seed)  # 0.2.5: nothing mixed
        # b4t: the encoder output is the mixed last-layer output, pooled from the mix
        hidden, _ = model(INPUTS)
        mixed = mix.lam * hidden + (1 - mix.lam) * hidden[mix.perm_index]
        _close(out[0], mixed, atol=1e-5, rtol=1e-4)
        _close(out[1], model.pooler(mixed), atol=1e-5, rtol=1e-4)
        assert "apply_on_layer_end" in vars(seed_model)  # 0.2.5's patch stays
        after = model(INPUTS)
        _close(after[0], hidden)  # b4t's hooks are gone


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_loss_equals_seed(b4t_seed, alpha):
    for draw in range(3):
        _reseed(draw)
        seed_mix = b4t_seed["layers"].MixUp(None, alpha)
        seed_out = seed_mix.encode(nn.Identity(), [_randn(6, 3, seed=draw)])
        _reseed(draw)
        mix = MixUp(None, alpha)
        out = mix.encode(nn.Identity(), [_randn(6, 3, seed=draw)])
        _assert_outputs_close(out, seed_out)
        y = _randint(3, 6, seed=draw)
        _close(mix(F.cross_entropy, out[0][0], y), seed_mix(F.cross_entropy, out[0][0], y))


@pytest.mark.parametrize("mode", ["fgm", "pgd"])
def test_metrics_come_from_the_clean_forward_as_in_seed(b4t_seed, mode):
    """0.2.5 assigns the adversarial forward's output to a local, so the batch metrics stay
    those of the clean forward; so do b4t's."""
    settings = {"epsilon": 3.0, "alpha": 1.5} if mode == "pgd" else {"epsilon": 3.0}
    seed_model = b4t_seed["t4k_model"].BaseModel(copy.deepcopy(_base()))
    optimizer = torch.optim.SGD(seed_model.parameters(), 0.0)
    seed_model.compile(loss=nn.CrossEntropyLoss(), optimizer=optimizer, metrics=["accuracy"])
    cb = b4t_seed["snippets"].AdversarialTraining(mode, dict(settings))
    seed_acc = seed_model.fit([BATCH], callbacks=[cb]).history["accuracy"][0]
    model = _base()
    trainer = Trainer(model)
    trainer.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.0),
                    metrics=["accuracy"])  # fmt: skip
    history = trainer.fit([BATCH], callbacks=[AdversarialTraining(mode, settings)], verbose=0)
    X, y = BATCH
    ref = _base()
    loss = F.cross_entropy(ref(X), y)
    (g,) = torch.autograd.grad(loss, [ref.word_embeddings.weight])
    with torch.no_grad():
        clean = (ref(X).argmax(-1) == y).float().mean().item()
        ref.word_embeddings.weight += 3.0 * g / g.norm()
        attacked = (ref(X).argmax(-1) == y).float().mean().item()
    assert clean != attacked  # the attack changes predictions, so the check means something
    assert seed_acc == pytest.approx(clean)
    assert history.history["accuracy"][0] == pytest.approx(clean)


def test_temporal_ensembling_shuffled_batches_refused_as_seed(b4t_seed):
    zs, zu = _randn(2, 3, seed=1), _randn(2, 3, seed=2)
    for loss, error in (
        (b4t_seed["losses"].TemporalEnsemblingLoss(3), AssertionError),
        (adv.TemporalEnsemblingLoss(3), ValueError),
    ):
        loss(zs, zu, torch.tensor([0, 1]), 0, 0)
        with pytest.raises(error, match="shuffle=False"):
            loss(zs, zu, torch.tensor([1, 0]), 1, 0)


class _TwoTables(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tok_vectors = nn.Embedding(12, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.tok_vectors(x).mean(1))


@pytest.mark.parametrize("name", ["FGM", "PGD"])
def test_restore_default_deviation(b4t_seed, name):
    """0.2.5's restore() defaults to emb_name='emb': after attack(emb_name='tok_vectors') it
    restores nothing and the table stays perturbed; b4t's restore() puts back whatever
    attack moved."""
    results = {}
    for side, cls in (("seed", getattr(b4t_seed["snippets"], name)), ("b4t", getattr(adv, name))):
        model = _TwoTables()
        before = model.tok_vectors.weight.detach().clone()
        F.cross_entropy(model(BATCH[0]), BATCH[1]).backward()
        attacker = cls(model)
        attacker.attack(emb_name="tok_vectors", is_first_attack=True)
        moved = model.tok_vectors.weight.detach().clone()
        attacker.restore()
        results[side] = (moved, model.tok_vectors.weight.detach().clone())
    _close(results["b4t"][0], results["seed"][0])  # the same attack
    assert torch.equal(results["seed"][1], results["seed"][0])  # 0.2.5: still perturbed
    assert torch.equal(results["b4t"][1], before)  # b4t: restored
