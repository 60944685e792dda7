"""``GenerationService``: one text-generation backend behind limits and slots.

The HTTP routes (:mod:`b4t.generation.routes`, :mod:`b4t.generation.openai_api`)
never touch a model. They build a :class:`GenerationRequest`, check it here,
take a slot and iterate a *stream function*:

.. code-block:: python

    def stream(request: GenerationRequest) -> Iterable[str]:
        ...  # yield the text of each generated token, stop at the end token

That callable is the seam: :func:`stream_from_generation` makes one from a
:class:`~b4t.generation.SeqGeneration`; a request-batching scheduler plugs in
by providing the same callable (block until the request's tokens come, yield
them as they do). Closing the returned iterator must release whatever the
request holds (the service closes it when the client disconnects, a stop
sequence matches or ``max_tokens`` is reached).

The service owns the limits every route shares: ``max_tokens`` and ``n``
caps, the prompt length against the model's context, and ``max_concurrency``
slots (a request waits up to ``queue_timeout`` seconds for one, then gets a 503).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

import torch

from b4t.generation.arguments import ClientGone, RequestError
from b4t.generation.protocol import TextDeltas, encode_text
from b4t.generation.request import GenerationRequest, InvalidParameter

__all__ = [
    "CompletionStream",
    "GenerationRequest",
    "GenerationResult",
    "GenerationService",
    "HeldStream",
    "StopScanner",
    "StreamFn",
    "default_chat_prompt",
    "stream_from_generation",
]


StreamFn = Callable[[GenerationRequest], Iterable[str]]


@dataclass
class GenerationResult:
    """A finished completion: its text, why it stopped and its token counts."""

    text: str
    finish_reason: str  # "stop" (end token or stop sequence) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int


def default_chat_prompt(messages: Sequence[dict[str, str]]) -> str:
    """``"role: content"`` lines then ``"assistant:"``: a plain prompt for a base LM."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


class StopScanner:
    """Cut a growing text at the first stop sequence, holding back possible starts.

    ``feed(delta)`` returns the text that is safe to send now and whether a
    stop sequence was found (then nothing after it is ever returned).
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, delta: str) -> tuple[str, bool]:
        """``(safe text, stopped)`` after adding ``delta`` to the text seen so far."""
        if self.stopped:
            return "", True
        text = self.pending + delta
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.pending = ""
            self.stopped = True
            return text[:cut], True
        hold = 0  # the longest suffix of text that starts some stop sequence
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        """What is held back, once the text has ended without a stop sequence."""
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


def _context_of(model: Any) -> int | None:
    """The model's maximum sequence length, from common attribute names."""
    for owner in (model, getattr(model, "config", None)):
        for name in ("max_positions", "max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(owner, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def stream_from_generation(generation: Any, tokenizer: Any = None) -> StreamFn:
    """A stream function over a :class:`~b4t.generation.SeqGeneration` (``random_sample`` mode).

    Each yielded string is the text one generated token adds (the decoded
    output so far minus what was sent; an incomplete multi-byte character,
    decoded as U+FFFD, waits for the next token; the end token adds ``""``, so
    it counts as a generated token). ``temperature=0`` is greedy (top-1);
    ``seed`` seeds a ``torch.Generator`` for this request alone.
    """
    tokenizer = tokenizer if tokenizer is not None else getattr(generation, "tokenizer", None)
    if tokenizer is None or not callable(getattr(tokenizer, "decode", None)):
        raise TypeError("serving text needs a tokenizer with encode(text) and decode(ids)")
    if getattr(generation, "mode", "random_sample") != "random_sample":
        raise ValueError(
            "streaming needs a generation in mode='random_sample' (greedy: temperature 0)"
        )

    device = torch.device(getattr(generation, "device", "cpu"))

    def stream(request: GenerationRequest) -> Iterator[str]:
        greedy = request.temperature == 0
        rng = None
        if request.seed is not None:  # on the decoder's device, where torch.multinomial draws
            rng = torch.Generator(device=device).manual_seed(request.seed)
        prompt: Any = list(request.prompt_ids) if request.prompt_ids is not None else request.prompt
        steps = generation.stream_generate(
            prompt,
            topk=1 if greedy else request.topk,
            topp=None if greedy else request.topp,
            temperature=1.0 if greedy else request.temperature,
            generator=rng,
        )
        deltas, count = TextDeltas(), 0
        try:
            for output in steps:  # one item per decoding step (the end token's adds no text)
                text = output if isinstance(output, str) else tokenizer.decode(list(output))
                count += 1
                yield deltas(text)
                if count >= request.max_tokens:
                    return
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    return stream


@dataclass
class _Limits:
    max_tokens: int
    default_max_tokens: int
    max_n: int
    max_context: int | None
    min_prompt_tokens: int


_API_NAMES = {"topk": "top_k", "topp": "top_p"}  # a request field -> the HTTP parameter


class GenerationService:
    """Limits, slots and streaming around one stream function.

    Args:
        stream_fn: ``request -> iterable of token texts`` (see the module docstring).
        tokenizer: ``encode(text)`` counts prompt tokens and checks them against
            ``max_context`` (optional; without it prompts are not measured).
        model_name: the id shown by ``/v1/models`` and in OpenAI answers.
        max_tokens: the cap on a request's ``max_tokens`` (beyond it: 400).
        default_max_tokens: used when a request gives none.
        max_n: the cap on completions per request (``n``, prompts x ``n``).
        max_context: the model's context; ``prompt + max_tokens`` beyond it is a 400.
        min_prompt_tokens: shorter prompts are a 400 (1 unless the model has a start token).
        max_concurrency: requests generating at once; others wait for a slot.
        queue_timeout: seconds a request waits for a slot before a 503.
        chat_prompt: ``messages -> prompt`` for chat completions.
    """

    def __init__(
        self,
        stream_fn: StreamFn,
        *,
        tokenizer: Any = None,
        model_name: str = "b4t-lm",
        max_tokens: int = 256,
        default_max_tokens: int = 64,
        max_n: int = 4,
        max_context: int | None = None,
        min_prompt_tokens: int = 1,
        max_concurrency: int = 4,
        queue_timeout: float = 30.0,
        chat_prompt: Callable[[Sequence[dict[str, str]]], str] = default_chat_prompt,
    ) -> None:
        if max_tokens < 1 or max_n < 1 or max_concurrency < 1:
            raise ValueError("max_tokens, max_n and max_concurrency must be >= 1")
        self.stream_fn = stream_fn
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.limits = _Limits(
            max_tokens=int(max_tokens),
            default_max_tokens=min(int(default_max_tokens), int(max_tokens)),
            max_n=int(max_n),
            max_context=max_context,
            min_prompt_tokens=int(min_prompt_tokens),
        )
        self.queue_timeout = float(queue_timeout)
        self.chat_prompt = chat_prompt
        self._slots = threading.BoundedSemaphore(int(max_concurrency))
        self._lock = threading.Lock()
        self.active = 0  # requests holding a slot now
        self.served = 0  # requests that released their slot

    @classmethod
    def from_generation(
        cls, generation: Any, tokenizer: Any = None, **kwargs: Any
    ) -> GenerationService:
        """A service over a :class:`~b4t.generation.SeqGeneration`.

        ``max_tokens`` defaults to the generation's ``maxlen``, ``max_context``
        to the model's ``max_positions`` / ``config.max_position_embeddings``
        (when it has one), and an empty prompt is allowed when it has a ``start_id``.
        """
        tokenizer = tokenizer if tokenizer is not None else getattr(generation, "tokenizer", None)
        kwargs.setdefault("max_tokens", generation.maxlen)
        if kwargs["max_tokens"] > generation.maxlen:
            raise ValueError(
                f"max_tokens={kwargs['max_tokens']} is over the generation's "
                f"maxlen={generation.maxlen}"
            )
        kwargs.setdefault("default_max_tokens", min(64, kwargs["max_tokens"]))
        kwargs.setdefault("max_context", _context_of(generation.model))
        kwargs.setdefault("min_prompt_tokens", 0 if generation.start_id is not None else 1)
        return cls(stream_from_generation(generation, tokenizer), tokenizer=tokenizer, **kwargs)

    # ------------------------------------------------------------ requests

    def make_request(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        topk: int | None = None,
        topp: float | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> GenerationRequest:
        """Check a request against the limits.

        Raises:
            RequestError: 400 naming the parameter (``max_tokens``, ``n``,
                ``temperature``, ``top_k``, ``top_p``, ``prompt``) that is out of range.
        """
        limits = self.limits
        max_tokens = limits.default_max_tokens if max_tokens is None else max_tokens
        if not 1 <= max_tokens <= limits.max_tokens:
            raise RequestError(
                f"max_tokens must be in [1, {limits.max_tokens}], got {max_tokens}",
                400,
                "max_tokens",
            )
        if not 1 <= n <= limits.max_n:
            raise RequestError(f"n must be in [1, {limits.max_n}], got {n}", 400, "n")
        try:
            request = GenerationRequest(prompt, max_tokens, temperature, topk, topp, seed)
        except InvalidParameter as exc:
            raise RequestError(str(exc), 400, _API_NAMES.get(exc.param, exc.param)) from exc
        prompt_ids = self._prompt_ids(prompt, max_tokens)
        return request if prompt_ids is None else replace(request, prompt_ids=prompt_ids)

    def _prompt_ids(self, prompt: str, max_tokens: int) -> tuple[int, ...] | None:
        """The prompt's ids (``None`` without a tokenizer), checked against the prompt
        length limits and the context (a 400 :class:`RequestError` naming ``prompt``)."""
        limits = self.limits
        if self.tokenizer is None:
            if len(prompt) < limits.min_prompt_tokens:
                raise RequestError("the prompt is empty", 400, "prompt")
            return None
        try:
            prompt_ids = tuple(encode_text(self.tokenizer, prompt))
        except (TypeError, ValueError) as exc:
            raise RequestError(f"the prompt cannot be encoded: {exc}", 400, "prompt") from exc
        if len(prompt_ids) < limits.min_prompt_tokens:
            raise RequestError(
                f"the prompt must hold at least {limits.min_prompt_tokens} token(s)",
                400,
                "prompt",
            )
        context = limits.max_context
        if context is not None and len(prompt_ids) + max_tokens > context:
            raise RequestError(  # OpenAI's wording and code; nothing is truncated
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in "
                f"the prompt; {max_tokens} for the completion). Please reduce your prompt; "
                "or completion length.",
                400,
                "prompt",
                "context_length_exceeded",
            )
        return prompt_ids

    # ------------------------------------------------------------ slots

    def acquire(self) -> None:
        """Take a slot, waiting up to ``queue_timeout`` (then a 503 :class:`RequestError`)."""
        if not self._slots.acquire(timeout=self.queue_timeout):
            raise RequestError(
                f"the server is busy: no generation slot freed within {self.queue_timeout:g} s", 503
            )
        with self._lock:
            self.active += 1

    def release(self) -> None:
        """Give a slot back (once per :meth:`acquire`)."""
        with self._lock:
            self.active -= 1
            self.served += 1
        self._slots.release()

    # ------------------------------------------------------------ generation

    def stream(self, request: GenerationRequest, stop: Sequence[str] = ()) -> CompletionStream:
        """Iterate ``(text, None)`` pieces, then ``("", finish_reason)`` once.

        The caller holds a slot. Closing the stream early closes the stream
        function's iterator (the decoder stops); ``completion_tokens`` counts
        the tokens generated so far.
        """
        return CompletionStream(self.stream_fn(request), request.max_tokens, stop)

    def complete(
        self,
        request: GenerationRequest,
        stop: Sequence[str] = (),
        gone: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        """Generate a whole completion (the caller holds a slot).

        ``gone``, when given, is asked after every token; once it answers ``True`` (the
        client has left) the decoder is closed and :class:`ClientGone` raised.
        """
        stream = self.stream(request, stop)
        parts: list[str] = []
        reason = "stop"
        with closing(stream):
            for text, finish in stream:
                parts.append(text)
                if finish is not None:
                    reason = finish
                elif gone is not None and gone():
                    raise ClientGone
        return GenerationResult(
            "".join(parts), reason, len(request.prompt_ids or ()), stream.completion_tokens
        )


class CompletionStream:
    """The pieces of one completion: ``(text, None)`` ..., then ``("", finish_reason)``.

    ``finish_reason`` is ``"length"`` when ``max_tokens`` tokens were generated,
    else ``"stop"`` (the end token, or a stop sequence, which is cut off).
    """

    def __init__(self, pieces: Iterable[str], max_tokens: int, stop: Sequence[str] = ()) -> None:
        self._pieces = iter(pieces)
        self._steps = self._run(max_tokens, StopScanner(stop))
        self.completion_tokens = 0

    def _run(self, max_tokens: int, scanner: StopScanner) -> Iterator[tuple[str, str | None]]:
        reason = "stop"
        for piece in self._pieces:
            self.completion_tokens += 1
            text, stopped = scanner.feed(piece)
            if text:
                yield text, None
            if stopped:
                break
            if self.completion_tokens >= max_tokens:
                reason = "length"
                break
        tail = scanner.flush()
        if tail:
            yield tail, None
        self.close()
        yield "", reason

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> tuple[str, str | None]:
        return next(self._steps)

    def close(self) -> None:
        """Stop generating: close the stream function's iterator."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


class HeldStream:
    """An iterator of response chunks that gives its slot back when it ends or is closed.

    WSGI servers call ``close()`` on the response iterable when the answer
    is done *or* the client went away (a write failed), so a disconnecting
    client frees its slot and stops its decoder at the next token. ``close``
    is idempotent and also works on a stream never started.
    """

    def __init__(self, service: GenerationService, chunks: Iterator[bytes]) -> None:
        self._service = service
        self._chunks = chunks
        self._held = True

    def __iter__(self) -> HeldStream:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the chunks (the decoder stops) and give the slot back, once."""
        if not self._held:
            return
        self._held = False
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._service.release()
