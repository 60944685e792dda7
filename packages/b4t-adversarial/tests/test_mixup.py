"""Mixup and manifold mixup."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

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


# ------------------------------------------------ bert4torch's encode / forward API
class _Layer(nn.Module):
    """hidden [B, L, H], additive mask [B, 1, L] -> (hidden,): a masked-attention-like mix."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor]:
        weights = torch.softmax(hidden.sum(-1)[:, None, :] + mask, dim=-1)  # [B, 1, L]
        return (torch.tanh(self.linear(hidden)) + weights.transpose(1, 2),)


class _Staged(nn.Module):
    """A b4t-style staged model: parse_inputs -> apply_embeddings -> apply_main_layers ->
    apply_final_layers, with an additive padding mask and layers returning tuples."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.word_embeddings = nn.Embedding(10, 4)
        self.layers = nn.ModuleList(_Layer() for _ in range(3))
        self.out = nn.Linear(4, 2)

    def parse_inputs(self, args, kwargs):
        return {"token_ids": args[0][0]}

    def apply_embeddings(self, state):
        ids = state["token_ids"]
        state["hidden_states"] = self.word_embeddings(ids)
        state["mask"] = (ids == 0).float()[:, None, :] * -1e4  # [B, 1, L], 0 = keep
        return state

    def apply_main_layers(self, state):
        for layer in self.layers:
            state["hidden_states"] = layer(state["hidden_states"], state["mask"])[0]
        return state

    def apply_final_layers(self, state):
        return self.out(state["hidden_states"].mean(1))

    def layer_sequence(self):
        return list(self.layers)

    def forward(self, inputs):
        state = self.apply_embeddings(self.parse_inputs((inputs,), {}))
        return self.apply_final_layers(self.apply_main_layers(state))


IDS = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9], [2, 2, 2, 0]])


def _mixed(mix, x):
    return mix.lam * x + (1 - mix.lam) * x[mix.perm_index]


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_encode_methods_equal_written_out_mixes():
    model = _Staged()
    with torch.no_grad():
        # generator seeds 1, 2, 3 draw lam 0.73 / 0.54 / 0.75 and non-identity permutations
        mix = MixUp("encoder", 0.5, generator=torch.Generator().manual_seed(1))
        out = mix.encode(model, [IDS])
        torch.testing.assert_close(out, _mixed(mix, model([IDS])))
        assert 0.1 < mix.lam < 0.9 and not torch.equal(mix.perm_index, torch.arange(4))

        mix = MixUp(None, 0.5, generator=torch.Generator().manual_seed(1))
        plain, permuted = mix.encode(model, [IDS])
        torch.testing.assert_close(permuted, plain[mix.perm_index])

        mix = MixUp("embed", 0.5, generator=torch.Generator().manual_seed(2))
        out = mix.encode(model, [IDS])
        state = model.apply_embeddings({"token_ids": IDS})
        state["hidden_states"] = _mixed(mix, state["hidden_states"])
        state["mask"] = _mixed(mix, state["mask"])
        expected = model.apply_final_layers(model.apply_main_layers(state))
        torch.testing.assert_close(out, expected)

        for layer_mix in (0, 1, 2):
            mix = MixUp("hidden", 0.5, layer_mix, generator=torch.Generator().manual_seed(3))
            out = mix.encode(model, [IDS])
            assert not torch.allclose(out, model([IDS]), atol=1e-3)  # it did mix
            state = model.apply_embeddings({"token_ids": IDS})
            h, mask = state["hidden_states"], state["mask"]
            for i, layer in enumerate(model.layers):
                h = layer(h, mask)[0]
                if i == layer_mix:  # mix this layer's output and, from here on, the mask
                    h, mask = _mixed(mix, h), _mixed(mix, mask)
            torch.testing.assert_close(out, model.out(h.mean(1)))
        assert _hooks(model) == 0
        # layer_mix == number of layers mixes nothing (bert4torch's draw range ends there)
        mix = MixUp("hidden", 0.5, 3, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(mix.encode(model, [IDS]), model([IDS]))


def test_encode_forward_is_the_mixed_loss():
    mix = MixUp(None, 1.0, generator=torch.Generator().manual_seed(4))
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    mix.encode(nn.Identity(), [logits])
    expected = mix.lam * F.cross_entropy(logits, y) + (1 - mix.lam) * F.cross_entropy(
        logits, y[mix.perm_index]
    )
    torch.testing.assert_close(mix(F.cross_entropy, logits, y), expected)


def test_global_draws_follow_bert4torch_sources():
    """Without a generator: numpy.random.beta, then torch.randperm, then random.randint."""
    model = _Staged()
    np.random.seed(5)
    torch.manual_seed(5)
    random.seed(5)
    mix = MixUp("hidden", 0.3)
    with torch.no_grad():
        mix.encode(model, [IDS])
    np.random.seed(5)
    torch.manual_seed(5)
    assert mix.lam == float(np.random.beta(0.3, 0.3))
    assert torch.equal(mix.perm_index, torch.randperm(4))
    random.seed(5)
    expected_layer = random.randint(0, 3)
    random.seed(5)
    assert MixUp("hidden", 0.3)._draw_layer(3) == expected_layer


def test_generator_makes_draws_reproducible():
    draws = []
    for _ in range(2):
        mix = MixUp("hidden", 0.7, generator=torch.Generator().manual_seed(9))
        draws.append((*mix.sample(6), mix._draw_layer(4)))
    assert draws[0][0] == draws[1][0] and draws[0][2] == draws[1][2]
    assert torch.equal(draws[0][1], draws[1][1])


def test_encode_errors_and_hooks_released_on_failure():
    with pytest.raises(ValueError, match="method must be one of"):
        MixUp("layer")
    with pytest.raises(ValueError, match="layer_mix must be None or an int >= 0"):
        MixUp("hidden", layer_mix=-1)
    with pytest.raises(TypeError, match=r"method='embed' needs .* lacks \['apply_embeddings'"):
        MixUp("embed").encode(nn.Linear(4, 4), [torch.zeros(2, 4)])
    with pytest.raises(TypeError, match=r"layer_sequence\(\) or encoderLayer"):
        MixUp("hidden", layer_mix=0).encode(nn.Linear(4, 4), [torch.zeros(2, 4)])
    model = _Staged()
    with pytest.raises(IndexError):
        MixUp("hidden", layer_mix=0).encode(model, [torch.full((2, 4), 99)])
    assert _hooks(model) == 0
    with pytest.warns(UserWarning, match="layer_mix=7 but the model has 3 layers"):
        MixUp("hidden", layer_mix=7).encode(model, [IDS])
