"""BatchScheduler: continuous batching checked against one-at-a-time greedy decoding."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from b4t.generation.batching import BatchScheduler, SamplingParams
from b4t.generation.testing import TinyCausalLM


@pytest.fixture(scope="module")
def model() -> TinyCausalLM:
    return TinyCausalLM(vocab_size=50, hidden_size=32, num_heads=2, num_layers=2, seed=3).eval()


@torch.no_grad()
def greedy_reference(model: TinyCausalLM, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding re-reading the whole sequence every step, no cache, no padding."""
    ids = list(prompt)
    for _ in range(n):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


@torch.no_grad()
def sliding_reference(model: TinyCausalLM, prompt: list[int], n: int, context: int, keep: int):
    """Greedy decoding with the scheduler's window rule, written out without a cache:
    a read takes the last ``keep`` tokens (``keep`` positions with its padding), each
    token adds one position, and the next token that would pass ``context`` re-reads."""
    ids, start, length = list(prompt), 0, context  # length: positions the row holds
    for _ in range(n):
        if length + 1 > context:
            start, length = max(0, len(ids) - keep), keep
        else:
            length += 1
        logits, _ = model(torch.tensor([ids[start:]]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


PROMPTS = [[1, 2, 3], [7], [4, 9, 9, 9, 9, 9, 2], [30, 31]]


def test_batched_greedy_equals_one_at_a_time(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model, max_batch=8)
    requests = [scheduler.submit(p, max_tokens=6, temperature=0) for p in PROMPTS]
    while scheduler.step():
        pass
    for prompt, request in zip(PROMPTS, requests, strict=True):
        assert request.result(timeout=0) == greedy_reference(model, prompt, 6)
        assert request.finish_reason == "length"
    assert scheduler.largest_batch == len(PROMPTS)
    assert scheduler.rebuilds == 1  # one prefill, then one cached token per step
    assert scheduler.steps == 6


def test_request_joins_a_running_batch_at_the_next_step(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model, max_batch=8)
    first = scheduler.submit(PROMPTS[0], max_tokens=10, temperature=0)
    for _ in range(3):
        scheduler.step()
    late = scheduler.submit(PROMPTS[2], max_tokens=4, temperature=0)
    scheduler.step()
    # the late request got its first token while the first one is still decoding
    assert len(late.output_ids) == 1 and len(first.output_ids) == 4
    assert not first.done.is_set()
    while scheduler.step():
        pass
    assert first.result(0) == greedy_reference(model, PROMPTS[0], 10)
    assert late.result(0) == greedy_reference(model, PROMPTS[2], 4)
    # the late one finished first and left; the first one kept decoding alone
    assert late.finished_at < first.finished_at
    assert scheduler.active == 0


def test_max_batch_queues_the_rest(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model, max_batch=2)
    requests = [scheduler.submit(p, max_tokens=3, temperature=0) for p in PROMPTS]
    scheduler.step()
    assert scheduler.active == 2 and scheduler.waiting == 2
    while scheduler.step():
        pass
    for prompt, request in zip(PROMPTS, requests, strict=True):
        assert request.result(0) == greedy_reference(model, prompt, 3)
    assert scheduler.largest_batch == 2


def test_stop_id_ends_a_request_without_the_stop_token(model: TinyCausalLM) -> None:
    expected = greedy_reference(model, PROMPTS[0], 6)
    stop = expected[2]
    scheduler = BatchScheduler(model)
    request = scheduler.submit(PROMPTS[0], max_tokens=6, temperature=0, stop_ids=[stop])
    while scheduler.step():
        pass
    assert request.result(0) == expected[: expected.index(stop)]
    assert request.finish_reason == "stop"


class _Recording(torch.nn.Module):
    """Wraps a model and records how many positions each call reads."""

    def __init__(self, inner: TinyCausalLM) -> None:
        super().__init__()
        self.inner, self.lengths = inner, []

    def forward(self, input_ids, past_key_values=None, attention_mask=None):
        self.lengths.append(attention_mask.shape[1])
        return self.inner(input_ids, past_key_values, attention_mask)


def test_sliding_window_never_reads_past_the_context() -> None:
    inner = TinyCausalLM(vocab_size=40, hidden_size=16, num_heads=2, num_layers=1, max_positions=8)
    model = _Recording(inner.eval())
    scheduler = BatchScheduler(model, context=8, keep=5)
    request = scheduler.submit([1, 2, 3], max_tokens=20, temperature=0)
    while scheduler.step():
        pass
    assert len(request.result(0)) == 20
    assert max(model.lengths) == 8
    assert scheduler.rebuilds == 5  # tokens 1, 5, 9, 13, 17 come from a (re)read
    # the first 4 tokens (before any slide) are the plain greedy ones
    assert request.output_ids[:4] == greedy_reference(inner, [1, 2, 3], 4)
    assert request.output_ids == sliding_reference(inner, [1, 2, 3], 20, context=8, keep=5)


def test_long_prompt_is_cut_to_keep_tokens() -> None:
    inner = TinyCausalLM(vocab_size=40, hidden_size=16, num_heads=2, num_layers=1, max_positions=8)
    scheduler = BatchScheduler(inner.eval(), context=8)  # keep: 6
    prompt = list(range(1, 21))
    request = scheduler.submit(prompt, max_tokens=1, temperature=0)
    scheduler.step()
    assert request.result(0) == greedy_reference(inner, prompt[-6:], 1)


def test_seeded_sampling_is_reproducible_and_batch_independent(model: TinyCausalLM) -> None:
    def run(prompts: list[list[int]]) -> list[list[int]]:
        scheduler = BatchScheduler(model)
        reqs = [scheduler.submit(p, 8, temperature=1.0, topk=10, seed=11) for p in prompts]
        while scheduler.step():
            pass
        return [r.result(0) for r in reqs]

    alone = run([PROMPTS[1]])[0]
    together = run(PROMPTS)
    assert together[1] == alone  # other rows in the batch do not change a seeded sample
    assert all(0 <= t < 50 for row in together for t in row)


def test_banned_ids_are_never_generated(model: TinyCausalLM) -> None:
    greedy = greedy_reference(model, PROMPTS[0], 4)
    scheduler = BatchScheduler(model, banned_ids=[greedy[0]])
    request = scheduler.submit(PROMPTS[0], 4, temperature=0)
    sampled = scheduler.submit(PROMPTS[0], 30, temperature=5.0, seed=1)
    while scheduler.step():
        pass
    assert request.result(0)[0] != greedy[0]
    assert greedy[0] not in request.result(0) + sampled.result(0)


def test_topk_one_is_greedy(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model)
    request = scheduler.submit(PROMPTS[0], 5, temperature=0.7, topk=1, seed=0)
    while scheduler.step():
        pass
    assert request.result(0) == greedy_reference(model, PROMPTS[0], 5)


def test_cancel_frees_the_slot(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model, max_batch=1)
    first = scheduler.submit(PROMPTS[0], max_tokens=50, temperature=0)
    second = scheduler.submit(PROMPTS[1], max_tokens=2, temperature=0)
    scheduler.step()
    first.cancel()
    scheduler.step()
    scheduler.step()
    assert first.finish_reason == "cancelled" and len(first.output_ids) == 1
    assert second.result(0) == greedy_reference(model, PROMPTS[1], 2)


def test_model_error_fails_the_batch_and_the_scheduler_goes_on(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model)
    bad = scheduler.submit([999], max_tokens=3)  # outside the 50-token vocabulary
    scheduler.step()
    assert bad.finish_reason == "error"
    with pytest.raises(RuntimeError, match="generation failed"):
        bad.result(0)
    good = scheduler.submit(PROMPTS[0], max_tokens=2, temperature=0)
    while scheduler.step():
        pass
    assert good.result(0) == greedy_reference(model, PROMPTS[0], 2)


def test_threaded_clients_stream_their_tokens(model: TinyCausalLM) -> None:
    results: dict[int, list[int]] = {}
    with BatchScheduler(model, max_batch=4) as scheduler:

        def client(k: int) -> None:
            request = scheduler.submit(PROMPTS[k % len(PROMPTS)], 5, temperature=0)
            results[k] = list(request)  # streamed ids, in order

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for k in range(8):
        assert results[k] == greedy_reference(model, PROMPTS[k % len(PROMPTS)], 5)


def test_stop_cancels_what_is_left(model: TinyCausalLM) -> None:
    scheduler = BatchScheduler(model)
    request = scheduler.submit(PROMPTS[0], 5)
    scheduler.stop()
    assert request.finish_reason == "cancelled"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"topk": 0}, "topk"),
        ({"topp": 1.5}, "topp"),
    ],
)
def test_bad_sampling_params(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_bad_scheduler_arguments(model: TinyCausalLM) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchScheduler(model, max_batch=0)
    with pytest.raises(ValueError, match="keep"):
        BatchScheduler(model, context=8, keep=8)
    with pytest.raises(ValueError, match="empty"):
        BatchScheduler(model).submit([])


class _Digits:
    """Ids 0..49 as two-character strings, so decoded text maps back to ids."""

    def encode(self, text: str) -> list[int]:
        return [int(text[i : i + 2]) for i in range(0, len(text), 2)]

    def decode(self, ids: list[int]) -> str:
        return "".join(f"{i:02d}" for i in ids)


class _Req:
    prompt, prompt_ids, max_tokens, seed = "010203", None, 4, None
    temperature, topk, topp = 0, None, None


def test_stream_function_yields_token_texts_and_cancels_on_close(model: TinyCausalLM) -> None:
    from b4t.generation.batching import stream_from_scheduler

    with BatchScheduler(model) as scheduler:
        stream = stream_from_scheduler(scheduler, _Digits())
        pieces = list(stream(_Req()))
        assert pieces == [f"{t:02d}" for t in greedy_reference(model, [1, 2, 3], 4)]
        long = _Req()
        long.max_tokens = 10_000
        iterator = stream(long)
        next(iterator)
        iterator.close()  # the client went away
        deadline = time.monotonic() + 10
        while scheduler.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.active == 0 and scheduler.tokens < 100


def test_stream_function_stops_at_any_of_its_stop_ids(model: TinyCausalLM) -> None:
    """A chat model ends its turn with one of several ids (a tokenizer's stop_token_ids):
    the stream ends at the first one generated, adds no text for it, and the service
    reports finish_reason 'stop' (not 'length')."""
    from b4t.generation.batching import stream_from_scheduler
    from b4t.generation.service import GenerationService

    expected = greedy_reference(model, [1, 2, 3], 8)
    first = expected[3]
    cut = expected.index(first)
    unused = next(i for i in range(50) if i not in expected)
    with BatchScheduler(model) as scheduler:
        stream = stream_from_scheduler(scheduler, _Digits(), stop_ids={unused, first})
        assert list(stream(_Req())) == [f"{t:02d}" for t in expected[:cut]][:4]
        service = GenerationService(stream, tokenizer=_Digits())
        result = service.complete(service.make_request("010203", max_tokens=8, temperature=0))
        assert result.text == "".join(f"{t:02d}" for t in expected[:cut])
        assert result.finish_reason == "stop"
        # without the stop ids the same request runs to max_tokens
        plain = GenerationService(stream_from_scheduler(scheduler, _Digits()), tokenizer=_Digits())
        result = plain.complete(plain.make_request("010203", max_tokens=8, temperature=0))
        assert result.finish_reason == "length" and len(result.text) == 16
    with pytest.raises(TypeError, match="stop_ids"):
        stream_from_scheduler(scheduler, _Digits(), stop_ids=2)  # type: ignore[arg-type]


def test_a_model_with_decode_step_is_scheduled_through_it(model: TinyCausalLM) -> None:
    calls: list[int] = []

    class StepOnly(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the decoder protocol goes through decode_step")

        def decode_step(self, input_ids, past_key_values=None, attention_mask=None):
            calls.append(input_ids.shape[1])
            return model(input_ids, past_key_values, attention_mask)

    scheduler = BatchScheduler(StepOnly(), max_batch=4)
    requests = [scheduler.submit(p, 5, temperature=0) for p in PROMPTS[:2]]
    while scheduler.step():
        pass
    assert [r.result() for r in requests] == [greedy_reference(model, p, 5) for p in PROMPTS[:2]]
    assert calls[0] > 1 and set(calls[1:]) == {1}
