"""AdversarialTraining through the trainer seam == hand-written functional reference loops.

The references never touch ``.grad`` or edit weights in place: they take
gradients with ``torch.autograd.grad`` of the loss evaluated through
``torch.func.functional_call`` with a perturbed embedding matrix.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from b4t.adversarial import AdversarialTraining

EMB = "word_embeddings.weight"


def _loss(model, params, X, y):
    return F.cross_entropy(functional_call(model, params, (X,)), y)


def _grads(model, params, X, y, scale):
    names = list(params)
    gs = torch.autograd.grad(_loss(model, params, X, y), [params[n] for n in names])
    return {n: g * scale for n, g in zip(names, gs)}


def _add(acc, new):
    return {n: acc[n] + new[n] for n in acc}


def _params(model):
    return {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}


def _run_callback(model, batches, callback, fake_trainer_cls, accum):
    trainer = fake_trainer_cls(model, grad_accumulation_steps=accum)
    callback.set_trainer(trainer)
    callback.on_train_begin()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.accumulate(callback, batches)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n in before:  # the embedding (and everything else) is restored bit for bit
        assert torch.equal(before[n], after[n]), n
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _fgm_reference(model, batches, epsilon, accum):
    params = _params(model)
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for X, y in batches:
        acc = _add(acc, _grads(model, params, X, y, 1 / accum))
        g = acc[EMB]
        perturbed = dict(params)
        perturbed[EMB] = params[EMB] + epsilon * g / g.norm()
        adv = _grads(model, perturbed, X, y, 1 / accum)
        acc = _add(acc, adv)
    return acc


def _pgd_reference(model, batches, epsilon, alpha, steps, accum):
    params = _params(model)
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for X, y in batches:
        acc = _add(acc, _grads(model, params, X, y, 1 / accum))
        e0 = params[EMB]
        e = e0
        direction = acc[EMB]
        for t in range(steps):
            e = e + alpha * direction / direction.norm()
            r = e - e0
            if r.norm() > epsilon:
                r = r * epsilon / r.norm()
            e = (e0 + r).detach().requires_grad_()
            perturbed = dict(params)
            perturbed[EMB] = e
            g = _grads(model, perturbed, X, y, 1 / accum)
            if t == steps - 1:
                acc = _add(acc, g)
            direction = g[EMB]
    return acc


def _gp_reference(model, batches, epsilon, accum):
    params = _params(model)
    names = list(params)
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for X, y in batches:
        loss = _loss(model, params, X, y)
        (g_emb,) = torch.autograd.grad(loss, [params[EMB]], create_graph=True)
        objective = loss + 0.5 * epsilon * g_emb.pow(2).sum()
        gs = torch.autograd.grad(objective, [params[n] for n in names])
        acc = _add(acc, {n: g / accum for n, g in zip(names, gs)})
    return acc


@pytest.mark.parametrize("accum", [1, 2])
def test_fgm_matches_reference(tiny_model, tiny_batches, fake_trainer_cls, accum):
    batches = tiny_batches[:accum]
    expected = _fgm_reference(tiny_model, batches, 0.7, accum)
    cb = AdversarialTraining("fgm", {"epsilon": 0.7})
    got = _run_callback(tiny_model, batches, cb, fake_trainer_cls, accum)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("accum", [1, 2])
def test_pgd_matches_reference(tiny_model, tiny_batches, fake_trainer_cls, accum):
    batches = tiny_batches[:accum]
    expected = _pgd_reference(tiny_model, batches, 0.5, 0.3, 3, accum)
    cb = AdversarialTraining("pgd", {"epsilon": 0.5, "alpha": 0.3, "K": 3})
    got = _run_callback(tiny_model, batches, cb, fake_trainer_cls, accum)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("accum", [1, 2])
def test_gradient_penalty_matches_reference(tiny_model, tiny_batches, fake_trainer_cls, accum):
    batches = tiny_batches[:accum]
    expected = _gp_reference(tiny_model, batches, 2.0, accum)
    cb = AdversarialTraining("gradient_penalty", {"epsilon": 2.0})
    got = _run_callback(tiny_model, batches, cb, fake_trainer_cls, accum)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-6)


def test_gradient_penalty_epsilon_zero_is_plain_gradient(
    tiny_model, tiny_batches, fake_trainer_cls
):
    """The callback with epsilon = 0 adds nothing; with epsilon = 5 it adds the penalty's
    gradient, which moves every parameter's gradient away from the plain one."""
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    batches = tiny_batches[:1]
    plain = _grads(tiny_model, _params(tiny_model), *batches[0], 1.0)
    got0 = _run_callback(
        tiny_model,
        batches,
        AdversarialTraining("gradient_penalty", {"epsilon": 0.0}),
        fake_trainer_cls,
        1,
    )
    tiny_model.load_state_dict(state)
    tiny_model.zero_grad(set_to_none=True)
    got5 = _run_callback(
        tiny_model,
        batches,
        AdversarialTraining("gradient_penalty", {"epsilon": 5.0}),
        fake_trainer_cls,
        1,
    )
    expected5 = _gp_reference(tiny_model, batches, 5.0, 1)
    for n in plain:
        torch.testing.assert_close(got0[n], plain[n], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got5[n], expected5[n], rtol=1e-5, atol=1e-6)
        assert (got5[n] - plain[n]).abs().max() > 1e-4, n


def test_pgd_single_step_with_large_ball_is_fgm_with_alpha(
    tiny_model, tiny_batches, fake_trainer_cls
):
    """PGD with K=1 and a ball it never reaches adds the same gradient as FGM(epsilon=alpha)."""
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    pgd = _run_callback(
        tiny_model,
        tiny_batches[:1],
        AdversarialTraining("pgd", {"K": 1, "alpha": 0.2, "epsilon": 10.0}),
        fake_trainer_cls,
        1,
    )
    tiny_model.load_state_dict(state)
    tiny_model.zero_grad(set_to_none=True)
    fgm = _run_callback(
        tiny_model,
        tiny_batches[:1],
        AdversarialTraining("fgm", {"epsilon": 0.2}),
        fake_trainer_cls,
        1,
    )
    for n in fgm:
        torch.testing.assert_close(pgd[n], fgm[n])


# ------------------------------------------------- through the real b4t Trainer
def _trainer_step(model, batches, callback, accum, lr=0.5, mixed_precision=None):
    from b4t.trainer import Trainer

    trainer = Trainer(model)
    trainer.compile(
        loss=F.cross_entropy,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        grad_accumulation_steps=accum,
        mixed_precision=mixed_precision,
    )
    trainer.fit(batches, epochs=1, callbacks=[callback], verbose=0)
    return trainer


@pytest.mark.parametrize(
    ("mode", "settings", "reference"),
    [
        ("fgm", {"epsilon": 0.7}, lambda m, b: _fgm_reference(m, b, 0.7, 2)),
        (
            "pgd",
            {"epsilon": 0.5, "alpha": 0.3, "K": 2},
            lambda m, b: _pgd_reference(m, b, 0.5, 0.3, 2, 2),
        ),
        ("gradient_penalty", {"epsilon": 2.0}, lambda m, b: _gp_reference(m, b, 2.0, 2)),
    ],
)
def test_real_trainer_accumulated_step_equals_reference(
    mode, settings, reference, tiny_model, tiny_batches
):
    """One SGD step over two accumulated micro-batches moves weights by -lr * reference grad."""
    expected_grad = reference(tiny_model, tiny_batches)
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    _trainer_step(tiny_model, tiny_batches, AdversarialTraining(mode, settings), accum=2)
    for n, p in tiny_model.named_parameters():
        torch.testing.assert_close(
            p.detach(), before[n] - 0.5 * expected_grad[n], rtol=1e-5, atol=1e-6
        )


def _synthetic(seed, n_batches=4, batch=16, length=6):
    """Label 1 when more tokens come from the first half of the vocabulary than the second."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        X = torch.randint(0, 12, (batch, length), generator=g)
        y = ((X < 6).sum(1) > (X >= 6).sum(1)).long()
        out.append((X, y))
    return out


@pytest.mark.parametrize("mixed_precision", [None, "bf16"])
@pytest.mark.parametrize("mode", ["fgm", "pgd", "vat", "gradient_penalty"])
def test_each_mode_trains_and_loss_falls(mode, mixed_precision, tiny_model_cls):
    from b4t.trainer import Trainer

    torch.manual_seed(0)
    model = tiny_model_cls(classes=2)
    trainer = Trainer(model)
    trainer.compile(
        loss=F.cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.1),
        grad_accumulation_steps=2,
        mixed_precision=mixed_precision,
    )
    settings = {"fgm": {"epsilon": 0.1}, "pgd": {"epsilon": 0.1, "K": 2}}.get(mode, {})
    history = trainer.fit(
        _synthetic(0), epochs=4, callbacks=[AdversarialTraining(mode, settings)], verbose=0
    )
    # vat logs loss = loss_sup + loss_unsup (bert4torch); the plain loss is loss_sup
    losses = history.history["loss_sup" if mode == "vat" else "loss"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0], losses


class _Attention(torch.nn.Module):
    """Embedding -> one SDPA self-attention -> mean -> head (as b4t's transformers attend)."""

    def __init__(self, explicit: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.word_embeddings = torch.nn.Embedding(12, 8)
        self.qkv = torch.nn.Linear(8, 24)
        self.head = torch.nn.Linear(8, 3)
        self.explicit = explicit

    def forward(self, x):
        batch, length = x.shape
        qkv = self.qkv(self.word_embeddings(x)).view(batch, length, 3, 2, 4)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads=2, L, 4]
        if self.explicit:  # the written-out formula
            weights = torch.softmax(q @ k.transpose(-1, -2) / 4**0.5, dim=-1)
            h = weights @ v
        else:
            h = F.scaled_dot_product_attention(q, k, v)
        return self.head(h.transpose(1, 2).reshape(batch, length, 8).mean(1))


def test_gradient_penalty_through_sdpa_attention(tiny_batches):
    """The penalty needs a double backward, which SDPA's fused CPU/CUDA kernels lack; the
    callback runs its forward on the math kernel and equals the written-out attention."""
    from b4t.trainer import Trainer

    X, y = tiny_batches[0]
    model = _Attention()
    trainer = Trainer(model)
    trainer.compile(F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.5))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit([(X, y)], callbacks=[AdversarialTraining("gradient_penalty")], verbose=0)
    ref = _Attention(explicit=True)
    expected = _gp_reference(ref, [(X, y)], 1.0, 1)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.5 * expected[n], rtol=1e-5, atol=1e-6)
