"""GenerationRequest: the one request type and its one validation path; TextDeltas."""

from __future__ import annotations

import pytest
import torch

import b4t.generation
from b4t.generation import GenerationService, RequestError
from b4t.generation.batching import BatchScheduler, SamplingParams, ScheduledRequest
from b4t.generation.protocol import TextDeltas
from b4t.generation.request import GenerationRequest, InvalidParameter
from b4t.generation.testing import TinyCausalLM

BAD = [
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"topk": 0}, "topk"),
    ({"topp": 0.0}, "topp"),
    ({"topp": 1.5}, "topp"),
    ({"seed": 2**63}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
]


def test_one_request_type_under_every_name() -> None:
    assert b4t.generation.GenerationRequest is GenerationRequest
    assert b4t.generation.batching.GenerationRequest is GenerationRequest
    assert b4t.generation.service.GenerationRequest is GenerationRequest
    assert SamplingParams is GenerationRequest


@pytest.mark.parametrize(("fields", "param"), BAD)
def test_every_entry_point_rejects_a_bad_value_through_the_request(fields, param) -> None:
    with pytest.raises(InvalidParameter, match=param) as direct:
        GenerationRequest("hi", **{"max_tokens": 4, **fields})
    assert direct.value.param == param and isinstance(direct.value, ValueError)
    # the scheduler: the same error, before anything is queued
    scheduler = BatchScheduler(TinyCausalLM(seed=0).eval())
    kwargs = {"max_tokens": 4, **fields}
    with pytest.raises(InvalidParameter, match=param) as queued:
        scheduler.submit([5, 6], kwargs.pop("max_tokens"), **kwargs)
    assert str(queued.value) == str(direct.value) and scheduler.waiting == 0
    # the service: a 400 with the same message, naming the HTTP parameter
    service = GenerationService(lambda request: iter(()), max_tokens=8)
    api_kwargs = {"max_tokens": 4, **fields}
    if param == "max_tokens":  # the service's own limit speaks first
        with pytest.raises(RequestError, match=r"max_tokens must be in \[1, 8\]"):
            service.make_request("hi", **api_kwargs)
        return
    with pytest.raises(RequestError) as answered:
        service.make_request("hi", **api_kwargs)
    http_name = {"topk": "top_k", "topp": "top_p"}.get(param, param)
    assert (answered.value.status, answered.value.param) == (400, http_name)
    assert str(answered.value) == str(direct.value)


def test_the_scheduler_queues_the_request_it_is_given() -> None:
    scheduler = BatchScheduler(TinyCausalLM(seed=0).eval())
    handle = scheduler.submit([5, 6], 3, temperature=0, seed=7, stop_ids=[1])
    assert isinstance(handle, ScheduledRequest) and handle.prompt_ids == [5, 6]
    assert handle.request == GenerationRequest(
        max_tokens=3, temperature=0.0, seed=7, prompt_ids=(5, 6), stop_ids=(1,)
    )
    assert handle.params is handle.request
    with pytest.raises(ValueError, match="prompt is empty"):
        scheduler.submit([], 3)


def test_choice_seeds_each_completion_and_wraps_like_torch() -> None:
    request = GenerationRequest("hi", 4, seed=10)
    assert [request.choice(i).seed for i in range(3)] == [10, 11, 12]
    assert GenerationRequest("hi", 4).choice(2).seed is None
    top = GenerationRequest("hi", 4, seed=2**63 - 1)
    wrapped = top.choice(1).seed
    assert wrapped == -(2**63)
    # torch seeds a generator with 2**63 and with -2**63 alike: the draws do not change
    draws = [torch.rand(4, generator=torch.Generator().manual_seed(s)) for s in (2**63, wrapped)]
    assert torch.equal(*draws)


def test_text_deltas_wait_for_a_whole_character() -> None:
    deltas = TextDeltas()
    assert deltas("a") == "a"
    assert deltas("ab\ufffd") == ""  # half of a multi-byte character
    assert deltas("abé") == "bé"
    assert deltas("xyz") == ""  # the text no longer extends what was sent
    assert deltas("abéc") == "c" and deltas.sent == "abéc"
