"""Mixup and manifold mixup."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from b4t.adversarial import MixUp


def test_mix_is_convex_combination_with_permutation():
    mix = MixUp(alpha=0.4, generator=torch.Generator().manual_seed(0))
    lam, perm = mix.sample(5)
    assert 0.0 <= lam <= 1.0
    assert sorted(perm.tolist()) == list(range(5))
    x = torch.randn(5, 3)
    torch.testing.assert_close(mix.mix(x), lam * x + (1 - lam) * x[perm])


def test_lambda_follows_beta_mean():
    mix = MixUp(alpha=2.0, generator=torch.Generator().manual_seed(1))
    lams = torch.tensor([mix.sample(2)[0] for _ in range(2000)])
    # Beta(2, 2): mean 1/2, variance 1/20
    assert lams.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lams.var().item() == pytest.approx(0.05, abs=0.008)


def test_mixed_loss_equals_soft_target_cross_entropy():
    mix = MixUp(generator=torch.Generator().manual_seed(2))
    mix.sample(4)
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    soft = mix.mix_target(y, num_classes=3)
    torch.testing.assert_close(soft.sum(-1), torch.ones(4))
    by_loss = mix.mix_loss(F.cross_entropy, logits, y)
    torch.testing.assert_close(by_loss, F.cross_entropy(logits, soft))


def test_manifold_mixup_mixes_a_hidden_layer_only_inside_the_block(tiny_model, tiny_batches):
    X, _ = tiny_batches[0]
    mix = MixUp(generator=torch.Generator().manual_seed(3))
    lam, perm = mix.sample(X.shape[0])
    with torch.no_grad():
        pre = tiny_model.dense(tiny_model.word_embeddings(X))  # [B, L, H], the hooked output
        mixed = lam * pre + (1 - lam) * pre[perm]
        expected = tiny_model.head(torch.tanh(mixed).mean(1))
        plain = tiny_model.head(torch.tanh(pre).mean(1))
        with mix.manifold(tiny_model.dense):
            got = tiny_model(X)
        after = tiny_model(X)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(after, plain)  # the hook is gone after the block


def test_mixup_errors():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixUp(alpha=0)
    mix = MixUp()
    with pytest.raises(RuntimeError, match="sample"):
        mix.mix(torch.zeros(2, 2))
    mix.sample(3)
    with pytest.raises(ValueError, match="batch axis 2 != sampled batch size 3"):
        mix.mix(torch.zeros(2, 2))
    with pytest.raises(TypeError, match=r"cannot mix a torch.int64 tensor"):
        mix.mix(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        mix.mix_target(torch.zeros(3, dtype=torch.long))
