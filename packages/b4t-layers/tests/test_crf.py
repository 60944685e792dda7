"""CRF against brute-force enumeration of every tag path on small cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from b4t.layers.crf import CRF


def _brute_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """Score of one path written out term by term (emissions: (L, K) of one sequence)."""
    s = crf.start_transitions[path[0]].item() + emissions[0, path[0]].item()
    for t in range(1, len(path)):
        s += crf.transitions[path[t - 1], path[t]].item() + emissions[t, path[t]].item()
    return s + crf.end_transitions[path[-1]].item()


def _brute(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[float, tuple[int, ...]]:
    """log Z and the best path of the first ``length`` steps by enumerating all K**length."""
    em = emissions[:length]
    scores = {
        p: _brute_score(crf, em, p) for p in itertools.product(range(crf.num_tags), repeat=length)
    }
    log_z = math.log(sum(math.exp(v) for v in scores.values()))
    return log_z, max(scores, key=scores.get)


def _case(seed: int, num_tags: int = 3, batch: int = 4, seq_len: int = 5):
    torch.manual_seed(seed)
    crf = CRF(num_tags).double()
    with torch.no_grad():  # larger than the default init so paths differ clearly
        for p in crf.parameters():
            p.normal_(0, 1.0)
    emissions = torch.randn(batch, seq_len, num_tags, dtype=torch.double) * 2
    lengths = torch.tensor([seq_len, 1, 3, seq_len - 1][:batch])
    mask = torch.arange(seq_len)[None, :] < lengths[:, None]
    return crf, emissions, mask, lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_and_viterbi_match_enumeration_with_masks(seed):
    crf, emissions, mask, lengths = _case(seed)
    log_z = crf.log_partition(emissions, mask)
    paths = crf.decode(emissions, mask, pad_tag=-1)
    for b, n in enumerate(lengths.tolist()):
        ref_log_z, ref_path = _brute(crf, emissions[b], n)
        assert log_z[b].item() == pytest.approx(ref_log_z, abs=1e-9)
        assert tuple(paths[b, :n].tolist()) == ref_path
        assert (paths[b, n:] == -1).all()


def test_nbest_paths_match_the_enumerated_ranking_with_masks():
    crf, emissions, mask, lengths = _case(7)
    nbest = 4
    paths = crf.decode(emissions, mask, nbest=nbest, pad_tag=-1)
    assert paths.shape == (nbest, *emissions.shape[:2])
    for b, n in enumerate(lengths.tolist()):
        em = emissions[b, :n]
        ranking = sorted(
            itertools.product(range(crf.num_tags), repeat=n),
            key=lambda p, em=em: -_brute_score(crf, em, p),
        )
        expected = ranking[: min(nbest, len(ranking))]
        got = [tuple(paths[r, b, :n].tolist()) for r in range(len(expected))]
        assert got == expected
        assert (paths[:, b, n:] == -1).all()
    torch.testing.assert_close(paths[0], crf.decode(emissions, mask, pad_tag=-1))


def test_path_score_and_nll_match_hand_computation():
    crf, emissions, mask, lengths = _case(3)
    torch.manual_seed(3)
    tags = torch.randint(0, crf.num_tags, emissions.shape[:2])
    scores = crf.score(emissions, tags, mask)
    nll = crf(emissions, mask, tags, reduction="none")
    for b, n in enumerate(lengths.tolist()):
        path = tuple(tags[b, :n].tolist())
        ref_score = _brute_score(crf, emissions[b, :n], path)
        ref_log_z, _ = _brute(crf, emissions[b], n)
        assert scores[b].item() == pytest.approx(ref_score, abs=1e-9)
        assert nll[b].item() == pytest.approx(ref_log_z - ref_score, abs=1e-9)
    # reductions
    assert crf(emissions, mask, tags, reduction="sum").item() == pytest.approx(nll.sum().item())
    assert crf(emissions, mask, tags).item() == pytest.approx(nll.mean().item())
    token_mean = crf(emissions, mask, tags, reduction="token_mean").item()
    assert token_mean == pytest.approx(nll.sum().item() / lengths.sum().item())


def test_probabilities_over_all_paths_sum_to_one():
    crf, emissions, _, _ = _case(4, num_tags=2, batch=1, seq_len=4)
    paths = torch.tensor(list(itertools.product(range(2), repeat=4)))
    em = emissions.expand(len(paths), -1, -1)
    llh = crf.log_likelihood(em, paths)
    assert llh.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


def test_padding_content_is_ignored():
    crf, emissions, mask, _ = _case(5)
    tags = torch.randint(0, crf.num_tags, emissions.shape[:2])
    noisy = emissions.clone()
    noisy[~mask] = 1e3
    noisy_tags = tags.clone()
    noisy_tags[~mask] = crf.num_tags + 7  # out of range but padded: must be ignored
    expected = crf(emissions, mask, tags, "none")
    torch.testing.assert_close(crf(noisy, mask, noisy_tags, "none"), expected)
    torch.testing.assert_close(crf.decode(noisy, mask), crf.decode(emissions, mask))


def test_seq_first_layout_matches_batch_first():
    crf, emissions, mask, _ = _case(6)
    tags = torch.randint(0, crf.num_tags, emissions.shape[:2])
    crf_t = CRF(crf.num_tags, batch_first=False).double()
    crf_t.load_state_dict(crf.state_dict())
    nll = crf_t(emissions.transpose(0, 1), mask.t(), tags.t(), "none")
    torch.testing.assert_close(nll, crf(emissions, mask, tags, "none"))
    paths = crf_t.decode(emissions.transpose(0, 1), mask.t())
    torch.testing.assert_close(paths.t(), crf.decode(emissions, mask))


def test_gradients_flow_to_transitions_and_emissions():
    crf = CRF(4)
    emissions = torch.randn(2, 3, 4, requires_grad=True)
    loss = crf(emissions, None, torch.tensor([[0, 1, 2], [3, 3, 0]]))
    loss.backward()
    assert emissions.grad is not None and emissions.grad.abs().sum() > 0
    assert crf.transitions.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"emissions": torch.zeros(2, 3)}, "3-D"),
        ({"emissions": torch.zeros(2, 3, 5)}, "num_tags=4"),
        ({"mask": torch.ones(2, 4)}, "mask shape"),
        ({"mask": torch.tensor([[0, 1, 1], [1, 1, 1]])}, "first timestep"),
        ({"mask": torch.tensor([[1, 0, 1], [1, 1, 1]])}, "prefix"),
        ({"tags": torch.zeros(2, 2, dtype=torch.long)}, "tags shape"),
        ({"tags": torch.full((2, 3), 4)}, r"\[0, 4\)"),
        ({"reduction": "avg"}, "reduction"),
    ],
)
def test_bad_input_errors_name_the_problem(kwargs, message):
    crf = CRF(4)
    args = {
        "emissions": torch.zeros(2, 3, 4),
        "mask": torch.ones(2, 3),
        "tags": torch.zeros(2, 3, dtype=torch.long),
        "reduction": "mean",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        crf(**args)


def test_bad_num_tags_and_nbest():
    with pytest.raises(ValueError, match="num_tags"):
        CRF(0)
    with pytest.raises(ValueError, match="nbest"):
        CRF(3).decode(torch.zeros(1, 2, 3), nbest=0)


def test_init_transitions_and_freeze():
    trans = [[0.0, 1.0], [2.0, 3.0]]
    crf = CRF(2, init_transitions=(trans, [0.5, -0.5], [1.5, -1.5]), freeze=True)
    assert list(crf.parameters()) == []
    assert crf.transitions.tolist() == trans
    assert crf.start_transitions.tolist() == [0.5, -0.5]
    assert crf.end_transitions.tolist() == [1.5, -1.5]
    assert set(crf.state_dict()) == {"start_transitions", "end_transitions", "transitions"}
    trainable = CRF(2, init_transitions=(trans, [0.5, -0.5], [1.5, -1.5]))
    assert len(list(trainable.parameters())) == 3
    with pytest.raises(ValueError, match=r"end_transitions must have shape \(2,\)"):
        CRF(2, init_transitions=(trans, [0.5, -0.5], [1.0]))
