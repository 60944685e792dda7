"""VAT against a written-out reference, bert4torch's ``rank`` key, the batch logs of each mode
(as bert4torch 0.2.5 logs them) and no forward hooks left behind by failed fits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from b4t.adversarial import VAT, AdversarialTraining
from b4t.trainer import Callback, Trainer

EMB = "word_embeddings.weight"


def _logits_from_embedding(model, e):
    """TinyClassifier after its embedding: e [B, L, H] -> logits [B, C]."""
    return model.head(torch.tanh(model.dense(e)).mean(dim=1))


def _kl_sum(p_logits, q_logits):
    """sum P (log P - log Q) over every element, P = softmax(p_logits)."""
    log_p, log_q = F.log_softmax(p_logits, -1), F.log_softmax(q_logits, -1)
    return (log_p.exp() * (log_p - log_q)).sum()


def _vat_reference(model, X, noise, step, gamma, alpha):
    """Written out from bert4torch's VAT (l2 projection); returns (loss, grads by name)."""
    clean_e = model.word_embeddings(X)
    logits = _logits_from_embedding(model, clean_e)
    r = noise.clone().requires_grad_()
    probe = _kl_sum(logits.detach(), _logits_from_embedding(model, clean_e.detach() + r))
    (d,) = torch.autograd.grad(probe / X.shape[0], r)  # batchmean
    v = noise + step * d
    r_adv = v / (v.norm(dim=-1, keepdim=True) + gamma)
    adv = _logits_from_embedding(model, clean_e.detach() + r_adv)
    loss = (_kl_sum(logits.detach(), adv) + _kl_sum(adv.detach(), logits)) * alpha
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters()])
    return loss.detach(), dict(zip(names, grads))


SETTINGS = {"noise_var": 0.5, "adv_step_size": 0.7, "noise_gamma": 1e-6, "adv_alpha": 2.0}


def test_vat_callback_adds_the_reference_gradient(tiny_model, tiny_batches, fake_trainer_cls):
    X, y = tiny_batches[0]
    trainer = fake_trainer_cls(tiny_model)
    cb = AdversarialTraining("vat", SETTINGS)
    cb.set_trainer(trainer)
    cb.on_train_begin()
    trainer.current_batch = (X, y)
    loss, _ = trainer.compute_loss(X, y)
    trainer.backward(loss)
    plain = {n: p.grad.clone() for n, p in tiny_model.named_parameters()}
    logs = {"loss": loss.item()}
    torch.manual_seed(7)
    cb.on_after_backward(0, 0, logs)
    added = {n: p.grad - plain[n] for n, p in tiny_model.named_parameters()}
    torch.manual_seed(7)
    noise = torch.randn(4, 5, 6) * SETTINGS["noise_var"]
    tiny_model.zero_grad(set_to_none=True)
    ref_loss, ref_grads = _vat_reference(tiny_model, X, noise, 0.7, 1e-6, 2.0)
    assert ref_loss.item() > 1e-3  # a real, non-degenerate perturbation
    for n, g in ref_grads.items():
        torch.testing.assert_close(added[n], g, rtol=1e-4, atol=1e-6)
    # the perturbed passes see a detached embedding: its only VAT gradient comes through
    # the clean logits (the backward KL term), as in bert4torch
    assert logs["loss_unsup"] == pytest.approx(ref_loss.item(), rel=1e-4)
    assert logs["loss_sup"] == pytest.approx(loss.item())
    assert logs["loss"] == pytest.approx(loss.item() + ref_loss.item(), rel=1e-5)


def test_vat_by_hand_equals_reference(tiny_model, tiny_batches):
    X, _ = tiny_batches[0]
    vat = VAT(tiny_model, noise_var=0.5, adv_step_size=0.7, adv_alpha=2.0)
    logits = tiny_model(X)  # the tracked clean forward records the embedding shape
    torch.manual_seed(3)
    got = vat.virtual_adversarial_training(X, logits)
    vat.remove()
    torch.manual_seed(3)
    noise = torch.randn(4, 5, 6) * 0.5
    ref_loss, _ = _vat_reference(tiny_model, X, noise, 0.7, 1e-6, 2.0)
    torch.testing.assert_close(got.detach(), ref_loss, rtol=1e-4, atol=1e-7)


def test_vat_rank_key_picks_the_logits(tiny_model_cls, tiny_batches, fake_trainer_cls):
    """bert4torch's ``rank`` (and b4t's ``output_index``) choose the logits of a tuple output."""
    X, y = tiny_batches[0]
    grads = {}
    for key in ("rank", "output_index"):
        torch.manual_seed(0)
        model = tiny_model_cls(tuple_out=True)
        trainer = fake_trainer_cls(model, loss_fn=lambda out, t: F.cross_entropy(out[1], t))
        cb = AdversarialTraining("vat", {**SETTINGS, key: 1})
        assert cb.adversarial["rank"] == 1
        cb.set_trainer(trainer)
        cb.on_train_begin()
        trainer.current_batch = (X, y)
        torch.manual_seed(7)
        cb.on_after_backward(0, 0, {})
        grads[key] = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.manual_seed(7)
    noise = torch.randn(4, 5, 6) * SETTINGS["noise_var"]
    _, ref = _vat_reference(model, X, noise, 0.7, 1e-6, 2.0)  # TinyClassifier's logits = out[1]
    for n in ref:
        torch.testing.assert_close(grads["rank"][n], ref[n], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grads["output_index"][n], ref[n], rtol=1e-4, atol=1e-6)


def test_vat_accepts_every_seed_key_and_rejects_conflicts():
    seed_keys = {
        "epsilon": 1.0, "emb_name": "word_embeddings", "K": 3, "noise_var": 1e-5,
        "noise_gamma": 1e-6, "adv_step_size": 1e-3, "adv_alpha": 1, "norm_type": "l2", "rank": 0,
    }  # fmt: skip
    assert AdversarialTraining("vat", seed_keys).adversarial == seed_keys
    assert AdversarialTraining("vat").adversarial == seed_keys  # bert4torch's defaults
    assert AdversarialTraining("", {}).mode is None  # bert4torch's "off"
    with pytest.raises(ValueError, match=r"'output_index'\]=1 and adversarial\['rank'\]=2"):
        AdversarialTraining("vat", {"output_index": 1, "rank": 2})
    with pytest.raises(TypeError, match=r"adversarial\['rank'\] must be an int"):
        AdversarialTraining("vat", {"rank": 1.5})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['rank'\] for mode 'fgm'"):
        AdversarialTraining("fgm", {"rank": 0})


@pytest.mark.parametrize("key", ["rank", "output_index"])
def test_index_on_single_tensor_output_is_an_error(key, tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    trainer = Trainer(tiny_model)
    trainer.compile(F.cross_entropy, torch.optim.SGD(tiny_model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"output_index \(rank\) 5 .* single tensor of shape"):
        trainer.fit([(X, y)], epochs=1, callbacks=[AdversarialTraining("vat", {key: 5})],
                    verbose=0)  # fmt: skip
    with pytest.raises(ValueError, match="single tensor"):
        VAT(tiny_model, **{key: 5}).virtual_adversarial_training(X, tiny_model(X))


# ------------------------------------------------------------ logged loss
def _fit_one_batch(model, batch, callback, extra=()):
    trainer = Trainer(model)
    trainer.compile(F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.0))
    history = trainer.fit([batch], epochs=1, callbacks=[*extra, callback], verbose=0)
    return {k: v[0] for k, v in history.history.items()}


def _loss_at(model, X, y, emb):
    return F.cross_entropy(_logits_from_embedding(model, F.embedding(X, emb)), y)


def test_logged_loss_fgm_is_the_adversarial_loss(tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    emb = tiny_model.word_embeddings.weight.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(_loss_at(tiny_model, X, y, emb), emb)
    expected = _loss_at(tiny_model, X, y, emb.detach() + 0.7 * g / g.norm()).item()
    logs = _fit_one_batch(tiny_model, (X, y), AdversarialTraining("fgm", {"epsilon": 0.7}))
    assert logs["loss"] == pytest.approx(expected, rel=1e-6)


def test_logged_loss_pgd_is_the_last_step_loss(tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    e0 = tiny_model.word_embeddings.weight.detach().clone()
    e = e0.clone().requires_grad_()
    (g,) = torch.autograd.grad(_loss_at(tiny_model, X, y, e), e)
    for _ in range(3):  # K = 3 steps of alpha = 0.4 inside the epsilon = 0.6 ball
        r = e.detach() + 0.4 * g / g.norm() - e0
        r = r * 0.6 / r.norm() if r.norm() > 0.6 else r
        e = (e0 + r).requires_grad_()
        loss = _loss_at(tiny_model, X, y, e)
        (g,) = torch.autograd.grad(loss, e)
    settings = {"epsilon": 0.6, "alpha": 0.4, "K": 3}
    logs = _fit_one_batch(tiny_model, (X, y), AdversarialTraining("pgd", settings))
    assert logs["loss"] == pytest.approx(loss.item(), rel=1e-6)


def test_logged_loss_gradient_penalty_includes_the_penalty(tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    emb = tiny_model.word_embeddings.weight.detach().clone().requires_grad_()
    loss = _loss_at(tiny_model, X, y, emb)
    (g,) = torch.autograd.grad(loss, emb)
    expected = loss.item() + 0.5 * 3.0 * g.pow(2).sum().item()
    logs = _fit_one_batch(
        tiny_model, (X, y), AdversarialTraining("gradient_penalty", {"epsilon": 3.0})
    )
    assert logs["loss"] == pytest.approx(expected, rel=1e-6)
    assert logs["loss"] > loss.item() + 1e-4


class _Reseed(Callback):
    def on_batch_begin(self, global_step, local_step, logs=None):
        torch.manual_seed(11)


def test_logged_loss_vat_is_sup_plus_unsup(tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    with torch.no_grad():
        plain = F.cross_entropy(tiny_model(X), y).item()
    torch.manual_seed(11)
    noise = torch.randn(4, 5, 6) * SETTINGS["noise_var"]
    ref_loss, _ = _vat_reference(tiny_model, X, noise, 0.7, 1e-6, 2.0)
    tiny_model.zero_grad(set_to_none=True)
    logs = _fit_one_batch(tiny_model, (X, y), AdversarialTraining("vat", SETTINGS), [_Reseed()])
    assert logs["loss_sup"] == pytest.approx(plain, rel=1e-6)
    assert logs["loss_unsup"] == pytest.approx(ref_loss.item(), rel=1e-4)
    assert logs["loss"] == pytest.approx(plain + ref_loss.item(), rel=1e-5)


# ------------------------------------------------------------ no hook leak
def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class _Boom(Exception):
    pass


@pytest.mark.parametrize("where", ["loss", "perturbed_forward"])
def test_three_failed_fits_leave_no_forward_hooks(where, tiny_model, tiny_batches):
    X, y = tiny_batches[0]
    calls = {"n": 0}

    def loss_fn(out, t):
        calls["n"] += 1
        if where == "loss" and calls["n"] > 1:  # the second batch's loss fails
            raise _Boom("loss")
        return F.cross_entropy(out, t)

    forwards = {"n": 0}

    def fail_on_perturbed(module, inputs, output):
        forwards["n"] += 1  # 1: the batch, 2: VAT's clean re-run, 3: the first perturbed pass
        if where == "perturbed_forward" and forwards["n"] == 3:
            raise _Boom("forward")

    tiny_model.head.register_forward_hook(fail_on_perturbed)
    baseline = _hook_count(tiny_model)
    trainer = Trainer(tiny_model)
    trainer.compile(loss_fn, torch.optim.SGD(tiny_model.parameters(), lr=0.1))
    for _ in range(3):
        calls["n"] = forwards["n"] = 0
        with pytest.raises(_Boom):
            trainer.fit([(X, y), (X, y)], epochs=1, callbacks=[AdversarialTraining("vat")],
                        verbose=0)  # fmt: skip
        assert _hook_count(tiny_model) == baseline
