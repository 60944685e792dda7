"""AutoRegressiveDecoder: the seed contract, checked against independent loops."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from b4t.generation import AutoRegressiveDecoder
from b4t.generation.beams import select_beams
from b4t.generation.testing import TinyCausalLM

END = 1
MODEL = TinyCausalLM(vocab_size=24, hidden_size=16, num_heads=2, num_layers=1, seed=3).eval()
PROMPTS = [[5, 6, 7], [9, 3, 11], [4, 4, 2], [17, 8, 13]]


class ModelDecoder(AutoRegressiveDecoder):
    """Seed-style user code: predict re-reads the prompt + output every step."""

    @AutoRegressiveDecoder.wraps(default_rtype="logits")
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
        ids = torch.cat([inputs[0], output_ids], 1)
        return MODEL(ids)[0][:, -1]


class CachedDecoder(AutoRegressiveDecoder):
    """The same model through its KV cache, carried as ``states``."""

    calls: list[int]

    @AutoRegressiveDecoder.wraps(default_rtype="logits", use_states=True)
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
        if states is None:
            logits, cache = MODEL(torch.cat([inputs[0], output_ids], 1))
        else:
            logits, cache = MODEL(output_ids[:, -1:], past_key_values=states)
        self.calls.append(output_ids.shape[0])
        return logits[:, -1], cache


def greedy_loop(prompt: list[int], start: int | None, maxlen: int) -> list[int]:
    """The argmax loop, written without the decoder."""
    out = [] if start is None else [start]
    with torch.no_grad():
        for _ in range(maxlen):
            logits = MODEL(torch.tensor([prompt + out]))[0][0, -1]
            out.append(int(logits.argmax()))
            if out[-1] == END:
                break
    return out


@pytest.mark.parametrize("start", [None, 2])
@torch.no_grad()
def test_beam_search_width_one_is_the_argmax_loop(start: int | None) -> None:
    decoder = ModelDecoder(start_id=start, end_id=END, maxlen=12)
    for prompt in PROMPTS:
        assert decoder.beam_search([prompt], topk=1).tolist() == greedy_loop(prompt, start, 12)


@torch.no_grad()
def test_random_sample_top1_is_greedy() -> None:
    decoder = ModelDecoder(start_id=2, end_id=END, maxlen=12)
    for prompt in PROMPTS[:2]:
        samples = decoder.random_sample([prompt], n=3, topk=1)
        assert [s.tolist() for s in samples] == [greedy_loop(prompt, 2, 12)] * 3


@torch.no_grad()
def test_cached_states_give_the_same_sequences_as_recomputing() -> None:
    plain = ModelDecoder(start_id=2, end_id=END, maxlen=10)
    cached = CachedDecoder(start_id=2, end_id=END, maxlen=10)
    cached.calls = []
    for prompt in PROMPTS:
        for topk in (1, 3):
            expected = plain.beam_search([prompt], topk=topk).tolist()
            assert cached.beam_search([prompt], topk=topk).tolist() == expected
        a = plain.random_sample([prompt], 4, topk=5, generator=torch.Generator().manual_seed(7))
        b = cached.random_sample([prompt], 4, topk=5, generator=torch.Generator().manual_seed(7))
        assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert cached.calls[0] == 1  # the first step runs one row, then rows follow the beams


@torch.no_grad()
def test_batch_decoding_matches_one_by_one() -> None:
    decoder = CachedDecoder(start_id=2, end_id=END, maxlen=10)
    decoder.calls = []
    batch = decoder.batch_beam_search([torch.tensor(PROMPTS)], topk=3)
    alone = [decoder.beam_search([p], topk=3).tolist() for p in PROMPTS]
    assert [b.tolist() for b in batch] == alone
    samples = decoder.batch_random_sample([torch.tensor(PROMPTS)], n=2, topk=1)
    assert [[s.tolist() for s in row] for row in samples] == [
        [greedy_loop(p, 2, 10)] * 2 for p in PROMPTS
    ]


class TableDecoder(AutoRegressiveDecoder):
    """Next-token probabilities looked up from the last generated token."""

    table: dict[int, list[float]]

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
        return torch.tensor([self.table[int(row[-1])] for row in output_ids])


def make_table(vocab: int, rows: dict[int, dict[int, float]]) -> dict[int, list[float]]:
    table = {}
    for token in range(vocab):
        spec = rows.get(token, {END: 1.0})
        table[token] = [spec.get(t, 0.0) for t in range(vocab)]
    return table


def sequence_probability(table: dict[int, list[float]], ids: list[int]) -> float:
    return math.prod(table[a][b] for a, b in itertools.pairwise(ids))


def test_wider_beam_finds_a_more_probable_sequence_than_greedy() -> None:
    # 0 = start, 1 = end. Greedy takes A (0.6) then a flat spread of ten 0.1s: 0.06.
    # B (0.4) then C (0.9) is worth 0.36, and only a beam of 2 keeps B alive.
    start, a, b, c = 0, 2, 3, 4
    spread = {t: 0.1 for t in range(5, 15)}
    table = make_table(15, {start: {a: 0.6, b: 0.4}, a: spread, b: {c: 0.9, END: 0.1}})
    decoder = TableDecoder(start_id=start, end_id=END, maxlen=5)
    decoder.table = table
    greedy = decoder.beam_search([], topk=1).tolist()
    wide = decoder.beam_search([], topk=2).tolist()
    assert greedy[:2] == [start, a]
    assert wide == [start, b, c, END]
    assert sequence_probability(table, wide) > sequence_probability(table, greedy)


def test_min_ends_and_minlen_are_honoured() -> None:
    # End is always the most likely token.
    table = make_table(4, {t: {END: 0.7, 2: 0.2, 3: 0.1} for t in range(4)})
    decoder = TableDecoder(start_id=0, end_id=END, maxlen=10)
    decoder.table = table
    assert decoder.beam_search([], topk=2).tolist() == [0, END]
    assert decoder.beam_search([], topk=2, min_ends=2).tolist() == [0, END, END]
    seeded = torch.Generator().manual_seed(0)  # 10 steps may (rarely) hold fewer than 3 ends
    for sample in decoder.random_sample([], 20, min_ends=3, generator=seeded):
        ids = sample.tolist()
        assert ids.count(END) == 3 and ids[-1] == END
    decoder.minlen = 4
    best = decoder.beam_search([], topk=2).tolist()
    assert len(best) - 1 == 4 and best[-1] == END and END not in best[:-1]
    for sample in decoder.random_sample([], 20, generator=seeded):
        ids = sample.tolist()
        assert len(ids) - 1 >= 4 and END not in ids[:4]


def test_maxlen_cuts_unfinished_sequences() -> None:
    table = make_table(4, {t: {2: 1.0} for t in range(4)})
    decoder = TableDecoder(start_id=3, end_id=END, maxlen=6)
    decoder.table = table
    assert decoder.beam_search([], topk=3).tolist() == [3] + [2] * 6
    assert [s.tolist() for s in decoder.random_sample([], 2)] == [[3] + [2] * 6] * 2


def test_wraps_rtypes_and_temperature() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0]])
    probas = torch.tensor([[0.6, 0.3, 0.1]])

    class FromLogits(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype="logits")
        def predict(self, inputs: Any, output_ids: Any, states: Any) -> Any:
            return logits

    class FromProbas(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype="probas")
        def predict(self, inputs: Any, output_ids: Any, states: Any) -> Any:
            return probas

    ids = torch.zeros((1, 1), dtype=torch.long)
    d1, d2 = FromLogits(0, 1, 5), FromProbas(0, 1, 5)
    p, states = d1.predict([], ids, None, 0.5, "probas")
    assert states is None
    torch.testing.assert_close(p, torch.softmax(logits / 0.5, -1))
    lp, _ = d1.predict([], ids, None, 2.0, "logits")
    torch.testing.assert_close(lp, torch.log_softmax(logits / 2.0, -1))
    p, _ = d2.predict([], ids, None, 2.0)
    sharp = probas**0.5
    torch.testing.assert_close(p, sharp / sharp.sum())
    lp, _ = d2.predict([], ids, None, 1, "logits")
    torch.testing.assert_close(lp, torch.log(probas + 1e-12))
    with pytest.raises(ValueError, match="rtype"):
        d1.predict([], ids, None, 1, "scores")
    with pytest.raises(ValueError, match="default_rtype"):
        AutoRegressiveDecoder.wraps("scores")


def test_temperature_changes_the_sampling_distribution() -> None:
    # One sampled token per row from a fixed distribution: frequencies follow the formula.
    table = make_table(4, {0: {1: 0.1, 2: 0.3, 3: 0.6}})
    decoder = TableDecoder(start_id=0, end_id=None, maxlen=1)
    decoder.table = table
    gen = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 3.0):
        draws = decoder.random_sample([], 4000, temperature=temperature, generator=gen)
        counts = torch.bincount(torch.stack(draws)[:, 1], minlength=4).float() / 4000
        expected = torch.tensor([0.0, 0.1, 0.3, 0.6]) ** (1 / temperature)
        expected /= expected.sum()
        torch.testing.assert_close(counts, expected, atol=0.03, rtol=0)
    # top-p 0.5 keeps only token 3; top-k 2 keeps 2 and 3 in ratio 1:2.
    draws = decoder.random_sample([], 500, topp=0.5, generator=gen)
    assert {int(d[1]) for d in draws} == {3}
    draws = decoder.random_sample([], 3000, topk=2, generator=gen)
    counts = torch.bincount(torch.stack(draws)[:, 1], minlength=4).float() / 3000
    torch.testing.assert_close(counts, torch.tensor([0.0, 0.0, 1 / 3, 2 / 3]), atol=0.03, rtol=0)


def test_repetition_penalty_avoids_repeats() -> None:
    # Token 2 is the favourite everywhere; with a strong penalty it is not taken twice.
    table = make_table(5, {t: {2: 0.5, 3: 0.3, 4: 0.2} for t in range(5)})
    decoder = TableDecoder(start_id=0, end_id=END, maxlen=3)
    decoder.table = table
    assert decoder.beam_search([], topk=1).tolist() == [0, 2, 2, 2]
    assert decoder.beam_search([], topk=1, repetition_penalty=5.0).tolist() == [0, 2, 3, 4]


def test_stream_variants_end_with_the_final_output() -> None:
    decoder = ModelDecoder(start_id=2, end_id=END, maxlen=8)
    with torch.no_grad():
        steps = list(decoder.stream_beam_search([PROMPTS[0]], topk=2))
        final = decoder.beam_search([PROMPTS[0]], topk=2)
        assert steps[-1].tolist() == final.tolist()
        assert all(len(a) <= len(b) for a, b in itertools.pairwise(steps))
        stream = list(decoder.stream_random_sample([PROMPTS[1]], n=1, topk=1))
    assert stream[-1][0].tolist() == greedy_loop(PROMPTS[1], 2, 8)
    assert [len(s[0]) for s in stream] == list(range(2, len(stream) + 2))


def test_bad_input_is_named() -> None:
    decoder = ModelDecoder(start_id=2, end_id=END, maxlen=4)
    with pytest.raises(ValueError, match="batch_beam_search"):
        decoder.beam_search([torch.tensor(PROMPTS)], topk=2, add_btz_dim=False)
    with pytest.raises(ValueError, match="ragged"):
        decoder.batch_beam_search([[[1, 2], [3]]], topk=2)
    with pytest.raises(ValueError, match="batch size"):
        decoder.batch_beam_search([torch.zeros(2, 3), torch.zeros(3, 3)], topk=2)
    with pytest.raises(ValueError, match="topk"):
        decoder.beam_search([PROMPTS[0]], topk=0)
    with pytest.raises(ValueError, match="maxlen"):
        ModelDecoder(2, END, 0)
    with pytest.raises(NotImplementedError):
        AutoRegressiveDecoder(2, END, 4).predict([], torch.zeros(1, 1), None)

    class Unwrapped(AutoRegressiveDecoder):
        def predict(self, inputs: Any, output_ids: Any, states: Any) -> Any:
            return torch.ones(output_ids.shape[0], 4)

    with pytest.raises(TypeError, match="wraps"):
        Unwrapped(2, END, 4).beam_search([], topk=2)
    with pytest.raises(TypeError, match="wraps"):
        Unwrapped(2, END, 4).random_sample([], 2)


def test_beam_selection_batched_path_equals_per_problem_topk() -> None:
    gen = torch.Generator().manual_seed(0)
    candidates = torch.randn(9, 7, generator=gen)
    for groups, width in (
        ([(0, 3), (1, 3), (2, 3)], [2, 2, 2]),
        ([(0, 2), (2, 4), (5, 3)], [2, 0, 3, 0, 0, 1]),
    ):
        parent, token, scores, new_groups = select_beams(candidates, groups, width)
        row, expected = 0, []
        for problem, rows in groups:
            block = candidates[row : row + rows].reshape(-1)
            top = block.topk(width[problem])
            expected += [(row + int(i) // 7, int(i) % 7, float(v)) for v, i in zip(*top)]
            row += rows
        assert list(zip(parent.tolist(), token.tolist(), scores.tolist())) == expected
        assert new_groups == [(problem, width[problem]) for problem, _ in groups]


def test_a_tensor_input_keeps_its_shape_lists_and_arrays_get_a_batch_dim() -> None:
    """The T5-PEGASUS pattern: ``beam_search([encoder_output])`` with a ``(1, L, H)`` tensor;
    the model unpacks ``(batch, length, hidden)``, so a fourth dim would fail."""
    proj = torch.randn(8, 11, generator=torch.Generator().manual_seed(0))

    class Seq2Seq(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype="logits")
        def predict(self, inputs, output_ids, states):
            (memory,) = inputs
            batch, _, _ = memory.shape  # "too many values to unpack" on a 4-d memory
            assert batch == output_ids.shape[0]
            return memory.mean(1) @ proj + 0.3 * output_ids.shape[1] * proj[output_ids[:, -1] % 8]

    memory = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1))
    decoder = Seq2Seq(start_id=0, end_id=3, maxlen=6)
    best = decoder.beam_search([memory], topk=3)
    assert best.tolist() == decoder.beam_search([memory[0].tolist()], topk=3).tolist()
    assert best.tolist() == decoder.beam_search([memory[0].numpy()], topk=3).tolist()
    assert best.tolist() == decoder.beam_search([memory], 3, add_btz_dim=False).tolist()
    assert [t.tolist() for t in decoder.stream_beam_search([memory], 3)][-1] == best.tolist()
    draws = []
    for inputs in ([memory], [memory[0].tolist()]):
        torch.manual_seed(5)
        draws.append([t.tolist() for t in decoder.random_sample(inputs, 4, topk=3)])
    assert draws[0] == draws[1]
    torch.manual_seed(5)
    streamed = list(decoder.stream_random_sample([memory], 4, topk=3))
    assert len(streamed[-1]) == 4
