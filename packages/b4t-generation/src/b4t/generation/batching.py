"""Continuous batching: requests join a running decode at the next step.

A :class:`BatchScheduler` owns one decoder model (the protocol of
:mod:`b4t.generation.protocol`) and a worker thread. :meth:`BatchScheduler.submit`
queues a prompt and returns a :class:`GenerationRequest` at once; the worker decodes
every active request together, one token per step, and a request that arrives while
others are decoding joins at the next step instead of waiting for them to finish.
Finished or cancelled requests leave the batch at once, freeing their slot.

.. code-block:: python

    with BatchScheduler(model, max_batch=32, context=1024) as scheduler:
        request = scheduler.submit(prompt_ids, max_tokens=64, topp=0.9)
        for token_id in request:          # streamed as they are produced
            ...
        request.result()                  # all generated ids

How the batch is kept: rows are left-padded to one length and carry an attention
mask ``(rows, length)``; positions come from the mask, as the protocol says. The model's
cache is row-selected with :func:`~b4t.generation.select_states` when rows leave. When
rows join, or when the padded length would pass ``context``, the batch is *rebuilt*:
each row's last ``keep`` tokens (prompt and output so far) are re-read in one forward
pass without a cache, and decoding goes on from the new cache. ``keep`` defaults to
three quarters of ``context``, so a model with learned positions (GPT-2) keeps writing
past its context with a sliding window, re-reading once every ``context / 4`` steps.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from b4t.generation.filters import top_k_filter, top_p_filter
from b4t.generation.protocol import split_model_output
from b4t.generation.states import select_states

__all__ = ["BatchScheduler", "GenerationRequest", "SamplingParams", "stream_from_scheduler"]

logger = logging.getLogger("b4t.generation.batching")

_DONE = object()


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded.

    Args:
        max_tokens: the most tokens to generate (>= 1).
        temperature: softmax temperature; ``0`` picks the most probable token (greedy).
        topk: sample among the ``topk`` most probable tokens only.
        topp: sample among the most probable tokens whose mass reaches ``topp``.
        seed: seeds this request's own ``torch.Generator`` (reproducible output).
        stop_ids: ids that end the request (the stop id is not part of the output).
    """

    max_tokens: int = 64
    temperature: float = 1.0
    topk: int | None = None
    topp: float | None = None
    seed: int | None = None
    stop_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if int(self.max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.topk is not None and int(self.topk) < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.topp is not None and not 0 < self.topp <= 1:
            raise ValueError(f"topp must be in (0, 1], got {self.topp}")


@dataclass(eq=False)
class GenerationRequest:
    """A submitted prompt: iterate it for the new token ids, or wait with :meth:`result`.

    ``finish_reason`` is ``'length'`` (``max_tokens`` reached), ``'stop'`` (a stop id),
    ``'cancelled'`` or ``'error'`` (then ``error`` holds the exception) once
    :attr:`done` is set.
    """

    prompt_ids: list[int]
    params: SamplingParams
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    error: BaseException | None = None
    submitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.done = threading.Event()
        self._tokens: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cancelled = False
        self.generator: torch.Generator | None = None
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(int(self.params.seed))

    # ------------------------------------------------------------ consumer side

    def __iter__(self) -> Iterator[int]:
        """Yield each new token id as it is produced; raise the error if decoding failed."""
        while True:
            item = self._tokens.get()
            if item is _DONE:
                break
            yield item
        if self.error is not None:
            raise RuntimeError(f"generation failed: {self.error}") from self.error

    def result(self, timeout: float | None = None) -> list[int]:
        """Block until finished; the generated ids (without a stop id)."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"generation did not finish within {timeout} s")
        if self.error is not None:
            raise RuntimeError(f"generation failed: {self.error}") from self.error
        return list(self.output_ids)

    def cancel(self) -> None:
        """Stop generating (e.g. the client went away); the slot is freed at the next step."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # ------------------------------------------------------------ scheduler side

    def _push(self, token_id: int) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.output_ids.append(token_id)
        self._tokens.put(token_id)

    def _finish(self, reason: str, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.finish_reason, self.error = reason, error
        self.finished_at = time.perf_counter()
        self._tokens.put(_DONE)
        self.done.set()


class BatchScheduler:
    """Decode many requests together with one model; new requests join at the next step.

    Args:
        model: a decoder model: ``model(input_ids, past_key_values=None,
            attention_mask=None) -> (logits (rows, new, vocab), cache)``.
        max_batch: the most requests decoded at once; more wait in a queue.
        context: the most positions the model reads (its ``n_positions``); ``None``
            for no limit.
        keep: tokens of each row re-read when the batch slides past ``context``
            (default ``3 * context // 4``).
        pad_id: the id written into left padding (masked out).
        max_queue: the most requests waiting to start; :meth:`submit` raises
            ``queue.Full`` beyond it.
        banned_ids: ids never generated (padding, an unknown-token id, ...).
        device: where ids and masks are placed.
    """

    def __init__(
        self,
        model: Any,
        max_batch: int = 32,
        context: int | None = None,
        keep: int | None = None,
        pad_id: int = 0,
        max_queue: int = 1024,
        banned_ids: Sequence[int] = (),
        device: str | torch.device = "cpu",
    ) -> None:
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if context is not None and int(context) < 2:
            raise ValueError(f"context must be >= 2, got {context}")
        self.model = model
        self.max_batch = int(max_batch)
        self.context = None if context is None else int(context)
        if keep is None:
            keep = None if self.context is None else max(1, 3 * self.context // 4)
        elif self.context is not None and not 1 <= int(keep) < self.context:
            raise ValueError(f"keep must be in [1, context), got {keep}")
        self.keep = keep
        self.pad_id = int(pad_id)
        self.max_queue = int(max_queue)
        self.device = torch.device(device)
        self.banned_ids = [int(i) for i in banned_ids]
        self._pending: list[GenerationRequest] = []
        self._active: list[GenerationRequest] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # (rows, cached length)
        self._last_ids = torch.empty(0, dtype=torch.long)  # (rows,) the tokens to feed next
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self.steps = 0
        self.rebuilds = 0
        self.tokens = 0
        self.largest_batch = 0

    # ------------------------------------------------------------ public API

    def submit(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int = 64,
        *,
        temperature: float = 1.0,
        topk: int | None = None,
        topp: float | None = None,
        seed: int | None = None,
        stop_ids: Sequence[int] = (),
    ) -> GenerationRequest:
        """Queue a prompt (a non-empty list of ids); returns its request at once."""
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise ValueError("the prompt is empty; give at least one token id")
        params = SamplingParams(
            int(max_tokens), float(temperature), topk, topp, seed, tuple(int(s) for s in stop_ids)
        )
        request = GenerationRequest(ids, params)
        with self._wake:
            if len(self._pending) >= self.max_queue:
                raise queue.Full(f"{len(self._pending)} requests are already waiting")
            self._pending.append(request)
            self._wake.notify()
        return request

    def generate(self, prompt_ids: Sequence[int], max_tokens: int = 64, **kwargs: Any) -> list[int]:
        """Submit and wait: the generated ids (needs :meth:`start`, or a thread calling step)."""
        return self.submit(prompt_ids, max_tokens, **kwargs).result()

    @property
    def active(self) -> int:
        """Requests decoding now."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        """Requests queued, not yet decoding."""
        return len(self._pending)

    def start(self) -> BatchScheduler:
        """Run the decode loop on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the scheduler is already running")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="b4t-batching", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop; requests still queued or decoding finish as ``'cancelled'``."""
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._wake:
            leftover, self._pending = self._pending + self._active, []
            self._active = []
        self._cache, self._mask = None, None
        for request in leftover:
            request._finish("cancelled")

    def __enter__(self) -> BatchScheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._running and not self._pending and not self._active:
                    self._wake.wait()
                if not self._running:
                    return
            self.step()

    @torch.no_grad()
    def step(self) -> int:
        """One decoding step for every active request (admitting waiting ones first).

        Returns the number of requests that got a token. Safe to call by hand
        when the scheduler is not started (tests, single-threaded use).
        """
        self._drop([r for r in self._active if r.cancelled], "cancelled")
        joined = self._admit()
        if not self._active:
            return 0
        try:
            logits = self._forward(rebuild=joined or self._must_slide())
            next_ids = self._sample(logits)
        except Exception as exc:  # a failing model must not kill the server
            logger.exception("decoding step failed; failing %d request(s)", len(self._active))
            failed, self._active = self._active, []
            self._cache, self._mask = None, None
            for request in failed:
                request._finish("error", exc)
            return 0
        self.steps += 1
        self.largest_batch = max(self.largest_batch, len(self._active))
        finished: list[tuple[GenerationRequest, str]] = []
        for request, token in zip(self._active, next_ids.tolist(), strict=True):
            if token in request.params.stop_ids:
                finished.append((request, "stop"))
                continue
            request._push(token)
            self.tokens += 1
            if len(request.output_ids) >= request.params.max_tokens:
                finished.append((request, "length"))
        self._last_ids = next_ids
        for request, reason in finished:
            self._drop([request], reason)
        return len(next_ids)

    # ------------------------------------------------------------ internals

    def _admit(self) -> bool:
        with self._wake:
            room = self.max_batch - len(self._active)
            if room <= 0 or not self._pending:
                return False
            pending = [r for r in self._pending if not r.cancelled]
            for request in self._pending:
                if request.cancelled:
                    request._finish("cancelled")
            joining, self._pending = pending[:room], pending[room:]
        self._active.extend(joining)
        return bool(joining)

    def _drop(self, requests: list[GenerationRequest], reason: str) -> None:
        """Remove ``requests`` from the batch (rows, cache and mask) and finish them."""
        if not requests:
            return
        gone = set(map(id, requests))
        keep = [i for i, r in enumerate(self._active) if id(r) not in gone]
        self._active = [self._active[i] for i in keep]
        if self._mask is not None:
            if keep:
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                self._cache = select_states(self._cache, index)
                self._mask = self._mask.index_select(0, index)
                self._last_ids = self._last_ids.index_select(0, index)
            else:
                self._cache, self._mask = None, None
        for request in requests:
            request._finish(reason)

    def _must_slide(self) -> bool:
        """The next single-token step would pass ``context`` (or there is no cache)."""
        if self._mask is None:
            return True
        return self.context is not None and self._mask.shape[1] + 1 > self.context

    def _window(self, request: GenerationRequest) -> list[int]:
        ids = request.prompt_ids + request.output_ids
        if self.context is None:
            return ids
        # Fresh requests keep up to context - 1 prompt tokens; a slide keeps `keep`.
        limit = self.keep if request.output_ids else self.context - 1
        return ids[-limit:]

    def _forward(self, rebuild: bool) -> torch.Tensor:
        """Next-token logits ``(rows, vocab)``; updates the cache and the mask."""
        if rebuild:
            rows = [self._window(r) for r in self._active]
            longest = max(len(r) for r in rows)
            ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, longest - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, longest - len(row) :] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            output = self.model(ids, past_key_values=None, attention_mask=mask)
            self.rebuilds += 1
        else:
            assert self._mask is not None
            ids = self._last_ids.reshape(-1, 1)
            ones = torch.ones((len(self._active), 1), dtype=torch.long, device=self.device)
            mask = torch.cat([self._mask, ones], 1)
            output = self.model(ids, past_key_values=self._cache, attention_mask=mask)
        logits, cache = split_model_output(output)
        self._cache, self._mask = cache, mask
        logits = logits[:, -1].float()
        if self.banned_ids:
            logits[:, self.banned_ids] = -torch.inf
        return logits

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One token per row with that row's temperature / top-k / top-p / generator."""
        choices = []
        for row, request in zip(logits, self._active, strict=True):
            p = request.params
            if p.temperature == 0:
                choices.append(int(row.argmax()))
                continue
            probas = torch.softmax(row / p.temperature, dim=-1)[None]
            if p.topk is not None:
                probas = top_k_filter(probas, p.topk)
            if p.topp is not None:
                probas = top_p_filter(probas, p.topp)
            choices.append(int(torch.multinomial(probas[0], 1, generator=request.generator)))
        return torch.tensor(choices, dtype=torch.long, device=self.device)


def stream_from_scheduler(
    scheduler: BatchScheduler, tokenizer: Any, end_id: int | None = None
) -> Any:
    """A stream function for :class:`~b4t.generation.service.GenerationService`.

    ``stream(request)`` reads the request's ``prompt_ids`` (or encodes ``prompt``),
    ``max_tokens``, ``temperature`` (0: greedy), ``topk``, ``topp`` and ``seed``,
    submits it to ``scheduler`` and yields the text each new token adds as the
    batch produces it (an incomplete character, decoded as U+FFFD, waits for the
    next token). Closing the iterator early (a client gone, a stop sequence)
    cancels the request, which frees its batch slot at the next step.
    """
    if tokenizer is None or not callable(getattr(tokenizer, "decode", None)):
        raise TypeError("serving text needs a tokenizer with encode(text) and decode(ids)")
    stop_ids = () if end_id is None else (int(end_id),)

    def stream(request: Any) -> Iterator[str]:
        prompt_ids = getattr(request, "prompt_ids", None)
        if prompt_ids is None:
            from b4t.generation.protocol import encode_text

            prompt_ids = encode_text(tokenizer, request.prompt)
        handle = scheduler.submit(
            list(prompt_ids),
            request.max_tokens,
            temperature=request.temperature,
            topk=request.topk,
            topp=request.topp,
            seed=request.seed,
            stop_ids=stop_ids,
        )
        ids: list[int] = []
        sent = ""
        try:
            for token_id in handle:
                ids.append(token_id)
                text = tokenizer.decode(ids)
                delta = text[len(sent) :] if text.startswith(sent) else ""
                if delta.endswith("\ufffd"):
                    delta = ""
                sent += delta
                yield delta
        finally:
            if not handle.done.is_set():
                handle.cancel()

    return stream
