"""Top-k, top-p and repetition-penalty filters on fixed distributions."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.generation import apply_repetition_penalty, select_states, top_k_filter, top_p_filter

PROBAS = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15], [0.2, 0.2, 0.2, 0.2, 0.2]])


def test_top_k_keeps_the_k_largest_and_renormalises() -> None:
    out = top_k_filter(PROBAS, 2)
    expected_first = torch.tensor([0.0, 0.4, 0.0, 0.3, 0.0]) / 0.7
    torch.testing.assert_close(out[0], expected_first)
    # Ties: exactly k tokens survive, never more.
    assert int((out[1] > 0).sum()) == 2
    torch.testing.assert_close(out.sum(-1), torch.ones(2))


def test_top_k_larger_than_vocab_is_identity_and_bad_k_is_rejected() -> None:
    torch.testing.assert_close(top_k_filter(PROBAS, 50), PROBAS)
    with pytest.raises(ValueError, match="topk"):
        top_k_filter(PROBAS, 0)


def test_top_p_keeps_the_token_that_reaches_the_mass() -> None:
    # Sorted: 0.4, 0.3, 0.15, 0.1, 0.05. p=0.7 is reached by the 2nd token exactly.
    out = top_p_filter(PROBAS[:1], 0.7)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 0.4, 0.0, 0.3, 0.0]) / 0.7)
    # p=0.71 needs a third token.
    out = top_p_filter(PROBAS[:1], 0.71)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 0.4, 0.0, 0.3, 0.15]) / 0.85)
    # A tiny p still keeps the most probable token.
    out = top_p_filter(PROBAS[:1], 1e-6)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(top_p_filter(PROBAS, 1.0), PROBAS)
    with pytest.raises(ValueError, match="topp"):
        top_p_filter(PROBAS, 0.0)


def test_repetition_penalty_scales_seen_log_probs() -> None:
    log_p = torch.log(PROBAS[:1])
    seen = torch.tensor([[1, 1, 3]])
    out = apply_repetition_penalty(log_p, seen, 2.0)
    raw = torch.tensor([0.05, 0.4**2, 0.1, 0.3**2, 0.15])
    torch.testing.assert_close(out[0].exp(), raw / raw.sum())
    assert math.isclose(float(out.exp().sum()), 1.0, rel_tol=1e-6)
    assert apply_repetition_penalty(log_p, seen, 1.0) is log_p
    with pytest.raises(ValueError, match="repetition_penalty"):
        apply_repetition_penalty(log_p, seen, 0.0)


def test_select_states_follows_rows_through_nested_caches() -> None:
    k = torch.arange(3.0).reshape(3, 1)
    states = {"past": ((k, k * 10),), "extra": [k + 100]}
    out = select_states(states, torch.tensor([2, 2, 0]))
    assert out["past"][0][0].flatten().tolist() == [2.0, 2.0, 0.0]
    assert out["past"][0][1].flatten().tolist() == [20.0, 20.0, 0.0]
    assert out["extra"][0].flatten().tolist() == [102.0, 102.0, 100.0]
    assert select_states(None, torch.tensor([0])) is None
    with pytest.raises(TypeError, match="index_select"):
        select_states(object(), torch.tensor([0]))


def test_select_states_reorders_a_cache_object_in_place() -> None:
    class Cache:
        def __init__(self) -> None:
            self.rows = torch.arange(3.0)

        def index_select(self, indices: torch.Tensor) -> Cache:
            raise AssertionError("a cache that reorders in place is not copied")

        def reorder_cache(self, indices: torch.Tensor) -> None:
            self.rows = self.rows[indices]

    cache = Cache()
    assert select_states(cache, torch.tensor([2, 0])) is cache
    assert cache.rows.tolist() == [2.0, 0.0]
