"""GenerationService pieces without HTTP: stop sequences, deltas, limits, finish reasons."""

from __future__ import annotations

import random

import pytest
import torch

from b4t.generation import GenerationService, RequestError, SeqGeneration, stream_from_generation
from b4t.generation.service import CompletionStream, StopScanner
from b4t.generation.sse import Event, format_event, parse_events
from b4t.generation.testing import TinyCausalLM


def cut_reference(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text before the earliest stop sequence, found by a plain scan."""
    for end in range(len(text) + 1):
        for stop in stops:
            if stop and text[:end].endswith(stop):
                return text[: end - len(stop)], True
    return text, False


@pytest.mark.parametrize("seed", range(40))
def test_stop_scanner_matches_a_plain_scan_for_any_split(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 30)))
    stops = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) for _ in range(2)]
    pieces, rest = [], text
    while rest:
        size = rng.randint(1, 4)
        pieces.append(rest[:size])
        rest = rest[size:]
    scanner = StopScanner(stops)
    out, stopped = "", False
    for piece in pieces:
        sent, stopped = scanner.feed(piece)
        out += sent
        if stopped:
            break
    out += scanner.flush()
    assert (out, stopped) == cut_reference(text, stops)


class ByteTokenizer:
    """UTF-8 bytes as ids 2..257: decoding a prefix can end in half a character."""

    def encode(self, text: str) -> list[int]:
        return [2 + b for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 2 for i in ids if 2 <= i < 258).decode("utf-8", errors="replace")


def test_deltas_never_split_a_multibyte_character() -> None:
    class Scripted:  # replays fixed outputs, as SeqGeneration.stream_generate would
        mode, tokenizer = "random_sample", ByteTokenizer()

        def stream_generate(self, prompt, **kwargs):
            ids = [2 + b for b in "a\u00e9\u4f60b".encode()]  # 1 + 2 + 3 + 1 bytes
            for end in range(1, len(ids) + 1):
                yield ids[:end]

    stream = stream_from_generation(Scripted())
    request = GenerationService(stream, max_tokens=50).make_request("x", max_tokens=50)
    deltas = list(stream(request))
    assert deltas == ["a", "", "\u00e9", "", "", "\u4f60", "b"]  # one entry per token


def test_completion_stream_reasons_and_token_count() -> None:
    done = CompletionStream(iter(["a", "b"]), max_tokens=5)
    assert list(done) == [("a", None), ("b", None), ("", "stop")]
    assert done.completion_tokens == 2
    cut = CompletionStream(iter("abcdef"), max_tokens=3)
    assert list(cut) == [("a", None), ("b", None), ("c", None), ("", "length")]
    stopped = CompletionStream(iter(["he", "ll", "o!"]), max_tokens=9, stop=["lo"])
    assert list(stopped) == [("he", None), ("l", None), ("", "stop")]


def test_make_request_checks_every_limit() -> None:
    service = GenerationService(
        lambda r: iter(()), tokenizer=ByteTokenizer(), max_tokens=8, max_n=2, max_context=12
    )
    assert service.make_request("abcd", max_tokens=8).prompt_ids == (99, 100, 101, 102)
    for kwargs, param in [
        ({"max_tokens": 9}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 3}, "n"),
        ({"temperature": float("nan")}, "temperature"),
        ({"topk": 0}, "top_k"),
        ({"topp": 0.0}, "top_p"),
        ({"seed": 2**63}, "seed"),
    ]:
        with pytest.raises(RequestError) as info:
            service.make_request("ab", **kwargs)
        assert (info.value.status, info.value.param) == (400, param)
    with pytest.raises(RequestError, match="maximum context length is 12") as info:
        service.make_request("abcdefg", max_tokens=6)  # 7 + 6 > 12
    assert info.value.param == "prompt"
    with pytest.raises(RequestError, match="at least 1 token"):
        service.make_request("")


def test_from_generation_reads_maxlen_and_the_model_context() -> None:
    model = TinyCausalLM(vocab_size=258, max_positions=48)
    generation = SeqGeneration(model, ByteTokenizer(), end_id=1, maxlen=20)
    service = GenerationService.from_generation(generation)
    assert (service.limits.max_tokens, service.limits.max_context) == (20, 48)
    assert service.limits.min_prompt_tokens == 1
    with pytest.raises(ValueError, match="maxlen=20"):
        GenerationService.from_generation(generation, max_tokens=21)
    beam = SeqGeneration(model, ByteTokenizer(), end_id=1, maxlen=20, mode="beam_search")
    with pytest.raises(ValueError, match="random_sample"):
        stream_from_generation(beam)


def test_greedy_stream_equals_the_written_out_argmax(generation, greedy_reference) -> None:
    service = GenerationService.from_generation(generation)
    request = service.make_request("To be", max_tokens=15, temperature=0)
    result = service.complete(request)
    assert (result.text, result.finish_reason) == greedy_reference("To be", 15)
    seeded = service.make_request("To be", max_tokens=15, temperature=1.0, seed=7)
    assert service.complete(seeded).text == service.complete(seeded).text
    torch.manual_seed(0)  # the global RNG plays no part once a seed is given
    first = service.complete(seeded).text
    torch.manual_seed(1)
    assert service.complete(seeded).text == first


def test_sse_format_and_parse_round_trip() -> None:
    raw = format_event({"t": "a\nb"}) + format_event("two\nlines", event="done", id="7")
    assert raw == b'data: {"t": "a\\nb"}\n\nevent: done\nid: 7\ndata: two\ndata: lines\n\n'
    split = [raw[i : i + 3] for i in range(0, len(raw), 3)]  # any chunking
    assert list(parse_events([b": comment\n\n", *split])) == [
        Event('{"t": "a\\nb"}'),
        Event("two\nlines", "done", "7"),
    ]
    with pytest.raises(ValueError):
        format_event("x", event="a\nb")


def test_the_end_token_counts_as_a_token_and_finishes_with_stop() -> None:
    class Ending:  # stream_generate's decoded outputs; the last step is the end token
        mode, tokenizer = "random_sample", ByteTokenizer()

        def stream_generate(self, prompt, **kwargs):
            yield from ["a", "ab", "ab"]

    service = GenerationService(stream_from_generation(Ending()), max_tokens=5)
    result = service.complete(service.make_request("x", max_tokens=5))
    assert (result.text, result.finish_reason, result.completion_tokens) == ("ab", "stop", 3)
    result = service.complete(service.make_request("x", max_tokens=2))
    assert (result.text, result.finish_reason, result.completion_tokens) == ("ab", "length", 2)
