"""Continuous batching: requests join a running decode while others decode.

A :class:`BatchScheduler` owns one decoder model (the protocol of
:mod:`b4t.generation.protocol`) and a worker thread. :meth:`BatchScheduler.submit`
queues a prompt (a :class:`~b4t.generation.request.GenerationRequest`) and returns its
:class:`ScheduledRequest` at once; the worker decodes
every active request together, one token per step, and a request that arrives while
others are decoding joins them instead of waiting for them to finish. Finished or
cancelled requests leave the batch at once, freeing their slot.

.. code-block:: python

    with BatchScheduler(model, max_batch=32, context=1024) as scheduler:
        request = scheduler.submit(prompt_ids, max_tokens=64, topp=0.9)
        for token_id in request:          # streamed as they are produced
            ...
        request.result()                  # all generated ids

**Batch invariance.** A request gives the same logits, bit for bit, alone or among
any others that join and leave at any step, so a greedy or seeded request gives the
same ids. Each row's computation is a function of the request alone:

- a *read* feeds a row's window (with a ``context``: its last ``keep`` tokens, default
  ``3 * context // 4``; without: all its tokens) left-padded to a fixed *read length*
  (``keep``; without a context, its length rounded up to a multiple of 16), with an
  attention mask ``(rows, length)`` from which the model takes each row's positions;
- then one token per step through the cache, until the next step would pass
  ``context``: then the row is read again (its window slides).

Rows read at the same step with the same read length share a *cohort*: one cache of
one length, so attention sees the same keys and padding whatever the other rows are
(the kernels give each row the same bits at a fixed key length). With a ``context``, a
request that arrives while others decode waits for their next read (at most
``context - keep`` steps), so all rows stay one cohort and one forward pass per step;
without one, it starts a cohort of its own at once. Every forward multiplies at least
``min_rows`` rows (copies of a real row fill the rest), since CPU matrix products of
few rows take kernels whose last bits differ from the many-row one. Each
request samples with its own temperature, top-k, top-p and seeded ``torch.Generator``.
The model's cache is row-selected with :func:`~b4t.generation.select_states` when rows
leave.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from b4t.generation.filters import top_k_filter, top_p_filter
from b4t.generation.protocol import TextDeltas, decoder_step, encode_text
from b4t.generation.request import GenerationRequest
from b4t.generation.states import select_states

__all__ = [
    "BatchScheduler",
    "GenerationRequest",
    "SamplingParams",
    "ScheduledRequest",
    "stream_from_scheduler",
]

logger = logging.getLogger("b4t.generation.batching")

_DONE = object()
_BUCKET = 16  # without a context, reads are left-padded to a multiple of this


SamplingParams = GenerationRequest  # the old name of a scheduled request's settings


@dataclass(eq=False)
class ScheduledRequest:
    """A queued :class:`~b4t.generation.request.GenerationRequest`: iterate it for the new
    token ids, or wait with :meth:`result` (what :meth:`BatchScheduler.submit` returns).

    ``finish_reason`` is ``'length'`` (``max_tokens`` reached), ``'stop'`` (a stop id),
    ``'cancelled'`` or ``'error'`` (then ``error`` holds the exception) once
    :attr:`done` is set.
    """

    request: GenerationRequest
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    error: BaseException | None = None
    submitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        if not self.request.prompt_ids:
            raise ValueError("the prompt is empty; give at least one token id")
        self.prompt_ids = list(self.request.prompt_ids)
        self.done = threading.Event()
        self._tokens: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cancelled = False
        self.generator: torch.Generator | None = None
        if self.request.seed is not None:
            self.generator = torch.Generator().manual_seed(int(self.request.seed))

    @property
    def params(self) -> GenerationRequest:
        """How it is decoded (``max_tokens``, ``temperature``, ``stop_ids``, ...): the request."""
        return self.request

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
        """Whether :meth:`cancel` was called."""
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


@dataclass(eq=False)
class _Cohort:
    """Rows that were (re)read together and share one cache of one length.

    Rows ``0 .. len(requests) - 1`` are the requests; any further rows are copies of
    row 0 (filler, so every forward multiplies at least ``min_rows`` rows).
    ``mask`` is ``(rows, cached length)``, ``last_ids`` ``(rows,)`` the tokens to feed next.
    """

    requests: list[ScheduledRequest]
    cache: Any = None
    mask: torch.Tensor | None = None
    last_ids: torch.Tensor | None = None


class BatchScheduler:
    """Decode many requests together with one model; new requests join at the next read.

    Args:
        model: a decoder model: ``model(input_ids, past_key_values=None,
            attention_mask=None) -> (logits (rows, new, vocab), cache)``.
        max_batch: the most requests decoded at once; more wait in a queue.
        context: the most positions the model reads (its ``n_positions``); ``None``
            for no limit.
        keep: with a ``context``, the tokens of a request read at once (its prompt's
            last ``keep`` tokens, then its last ``keep`` tokens at each slide; default
            ``3 * context // 4``).
        pad_id: the id written into left padding (masked out).
        max_queue: the most requests waiting to start; :meth:`submit` raises
            ``queue.Full`` beyond it.
        banned_ids: ids never generated (padding, an unknown-token id, ...).
        device: where ids and masks are placed.
        min_rows: every forward multiplies at least this many rows (tokens x rows;
            copies of a real row fill the rest): matrix products of few rows take
            other CPU kernels whose last bits differ from the many-row kernel's, which
            gives each row the same bits whatever the count. Measured (MKL, AVX-512,
            one thread): ``F.linear`` gives three classes, 1, 2-3 and >= 4 rows;
            ``b4t.layers.linear``'s few-rows path 1-3, 4 and >= 5, and for a wide
            layer of at least 2**18 weights (an LM head) 1-3, 4-11 and >= 12.
        gather: when idle, the decode thread starts once no request came for this many
            seconds (at most ten times as long), so that a burst of requests starts as one
            batch (with a ``context``, a request arriving later waits for the next slide).
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
        min_rows: int = 12,
        gather: float = 0.005,
    ) -> None:
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if context is not None and int(context) < 2:
            raise ValueError(f"context must be >= 2, got {context}")
        if int(min_rows) < 1:
            raise ValueError(f"min_rows must be >= 1, got {min_rows}")
        self.model = model
        self.max_batch = int(max_batch)
        self.context = None if context is None else int(context)
        if keep is None:
            keep = None if self.context is None else max(1, 3 * self.context // 4)
        elif self.context is not None and not 1 <= int(keep) < self.context:
            raise ValueError(f"keep must be in [1, context), got {keep}")
        self.keep = None if keep is None else int(keep)
        self.pad_id = int(pad_id)
        self.max_queue = int(max_queue)
        self.device = torch.device(device)
        self.banned_ids = [int(i) for i in banned_ids]
        self.min_rows = int(min_rows)
        self.gather = float(gather)
        self._pending: list[ScheduledRequest] = []
        self._cohorts: list[_Cohort] = []
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
    ) -> ScheduledRequest:
        """Queue a prompt (a non-empty list of ids); returns its request at once."""
        params = GenerationRequest(
            max_tokens=int(max_tokens),
            temperature=float(temperature),
            topk=topk,
            topp=topp,
            seed=seed,
            prompt_ids=tuple(int(i) for i in prompt_ids),
            stop_ids=tuple(int(s) for s in stop_ids),
        )
        request = ScheduledRequest(params)
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
        return sum(len(c.requests) for c in self._cohorts)

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
            leftover = self._pending + [r for c in self._cohorts for r in c.requests]
            self._pending, self._cohorts = [], []
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
                while self._running and not self._pending and not self._cohorts:
                    self._wake.wait()
                if not self._running:
                    return
                if not self._cohorts:
                    self._gather()
            self.step()

    def _gather(self) -> None:
        """While requests keep coming (one at least every ``gather`` seconds, for at most
        ten times that), wait for them before the first read (the caller holds ``_wake``)."""
        start = time.perf_counter()
        seen, quiet_since = len(self._pending), start
        while self._running and len(self._pending) < self.max_batch:
            now = time.perf_counter()
            if len(self._pending) > seen:
                seen, quiet_since = len(self._pending), now
            left = min(quiet_since + self.gather, start + 10 * self.gather) - now
            if left <= 0:
                return
            self._wake.wait(left)

    @torch.no_grad()
    def step(self) -> int:
        """One decoding step for every active request (admitting waiting ones first).

        Returns the number of requests that got a token. Safe to call by hand
        when the scheduler is not started (tests, single-threaded use).
        """
        for cohort in list(self._cohorts):
            self._drop(cohort, [r for r in cohort.requests if r.cancelled], "cancelled")
        sliding = [c for c in self._cohorts if self._must_slide(c)]
        reading = [r for c in sliding for r in c.requests] + self._admit(bool(sliding))
        cohorts = [c for c in self._cohorts if c not in sliding]
        try:
            cohorts += self._new_cohorts(reading)
            self._cohorts = cohorts
            picks = [(c, self._sample(self._forward(c), c.requests)) for c in cohorts]
        except Exception as exc:  # a failing model must not kill the server
            failed = [r for c in cohorts for r in c.requests]
            logger.exception("decoding step failed; failing %d request(s)", len(failed))
            self._cohorts = []
            for request in failed:
                request._finish("error", exc)
            return 0
        if not picks:
            return 0
        self.steps += 1
        self.largest_batch = max(self.largest_batch, self.active)
        count = 0
        for cohort, next_ids in picks:
            finished: dict[str, list[ScheduledRequest]] = {"stop": [], "length": []}
            tokens = next_ids.tolist()
            for request, token in zip(cohort.requests, tokens, strict=False):
                count += 1
                if token in request.params.stop_ids:
                    finished["stop"].append(request)
                    continue
                request._push(token)
                self.tokens += 1
                if len(request.output_ids) >= request.params.max_tokens:
                    finished["length"].append(request)
            # filler rows copy row 0, so they feed row 0's token
            cohort.last_ids = torch.tensor(
                tokens[: len(cohort.requests)] + tokens[:1] * (len(tokens) - len(cohort.requests)),
                dtype=torch.long,
                device=self.device,
            )
            for reason, requests in finished.items():
                self._drop(cohort, requests, reason)
        return count

    # ------------------------------------------------------------ internals

    def _admit(self, reading_now: bool) -> list[ScheduledRequest]:
        """Waiting requests that start now.

        With a ``context`` they start only when nothing decodes or when the running rows
        are re-read at this step (they slide), so all rows keep one cache length and
        decode as one batch; without one they start at once (a cohort of their own).
        """
        if self.context is not None and self._cohorts and not reading_now:
            return []
        with self._wake:
            room = self.max_batch - self.active
            if room <= 0 or not self._pending:
                return []
            pending = [r for r in self._pending if not r.cancelled]
            for request in self._pending:
                if request.cancelled:
                    request._finish("cancelled")
            joining, self._pending = pending[:room], pending[room:]
        return joining

    def _read_length(self, request: ScheduledRequest) -> int:
        """Positions a (re)read of ``request`` occupies: its tokens, left-padded.

        A function of the request alone: ``keep`` with a context, else its length
        rounded up to a multiple of 16 (so rows of similar lengths share a cohort).
        """
        if self.keep is not None:
            return self.keep
        size = len(request.prompt_ids) + len(request.output_ids)
        return -(-size // _BUCKET) * _BUCKET

    def _window(self, request: ScheduledRequest) -> list[int]:
        """The tokens of ``request`` that a (re)read feeds: at most the read length."""
        ids = request.prompt_ids + request.output_ids
        return ids[-self._read_length(request) :]

    def _new_cohorts(self, requests: list[ScheduledRequest]) -> list[_Cohort]:
        """Cohorts for rows (re)read at this step: one per read length."""
        by_length: dict[int, list[ScheduledRequest]] = {}
        for request in requests:
            by_length.setdefault(self._read_length(request), []).append(request)
        return [_Cohort(rows) for rows in by_length.values()]

    def _drop(self, cohort: _Cohort, requests: list[ScheduledRequest], reason: str) -> None:
        """Remove ``requests`` from ``cohort`` (rows, cache and mask) and finish them."""
        if not requests:
            return
        gone = set(map(id, requests))
        kept = [i for i, r in enumerate(cohort.requests) if id(r) not in gone]
        cohort.requests = [cohort.requests[i] for i in kept]
        if not kept:
            self._cohorts = [c for c in self._cohorts if c is not cohort]
        elif cohort.mask is not None and cohort.last_ids is not None:
            rows = kept + kept[:1] * (self.min_rows - len(kept))
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            cohort.cache = select_states(cohort.cache, index)
            cohort.mask = cohort.mask.index_select(0, index)
            cohort.last_ids = cohort.last_ids.index_select(0, index)
        for request in requests:
            request._finish(reason)

    def _must_slide(self, cohort: _Cohort) -> bool:
        """The next single-token step would pass ``context``."""
        mask = cohort.mask
        return mask is not None and self.context is not None and mask.shape[1] + 1 > self.context

    def _forward(self, cohort: _Cohort) -> torch.Tensor:
        """Next-token logits ``(rows, vocab)`` of ``cohort``; updates its cache and mask.

        A new cohort reads each row's window, left-padded to the read length; a running
        one feeds each row's last token through the cache.
        """
        if cohort.mask is None:
            rows = [self._window(r) for r in cohort.requests]
            length = self._read_length(cohort.requests[0])
            while len(rows) * length < self.min_rows:  # a one-token read of few rows
                rows.append(rows[0])
            ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, length - len(row) :] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            logits, cache = decoder_step(self.model, ids, None, mask)
            self.rebuilds += 1
        else:
            assert cohort.last_ids is not None
            ids = cohort.last_ids.reshape(-1, 1)
            ones = torch.ones((ids.shape[0], 1), dtype=torch.long, device=self.device)
            mask = torch.cat([cohort.mask, ones], 1)
            logits, cache = decoder_step(self.model, ids, cohort.cache, mask)
        logits = logits[:, -1].float()
        if logits.shape[0] < self.min_rows:  # filler rows for the one-token steps to come
            fill = list(range(logits.shape[0])) + [0] * (self.min_rows - logits.shape[0])
            index = torch.tensor(fill, dtype=torch.long, device=self.device)
            logits, cache = logits.index_select(0, index), select_states(cache, index)
            mask = mask.index_select(0, index)
        cohort.cache, cohort.mask = cache, mask
        if self.banned_ids:
            logits[:, self.banned_ids] = -torch.inf
        return logits

    def _sample(self, logits: torch.Tensor, requests: list[ScheduledRequest]) -> torch.Tensor:
        """One token per row (filler rows included, which copy row 0's choice) with that
        row's temperature / top-k / top-p / generator."""
        choices = []
        for row, request in zip(logits, requests, strict=False):
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
        choices += choices[:1] * (logits.shape[0] - len(choices))
        return torch.tensor(choices, dtype=torch.long, device=self.device)


def stream_from_scheduler(
    scheduler: BatchScheduler,
    tokenizer: Any,
    end_id: int | None = None,
    *,
    stop_ids: Iterable[int] = (),
) -> Any:
    """A stream function for :class:`~b4t.generation.service.GenerationService`.

    ``stream(request)`` reads the request's ``prompt_ids`` (or encodes ``prompt``),
    ``max_tokens``, ``temperature`` (0: greedy), ``topk``, ``topp`` and ``seed``,
    submits it to ``scheduler`` and yields the text each new token adds as the
    batch produces it (an incomplete character, decoded as U+FFFD, waits for the
    next token). Closing the iterator early (a client gone, a stop sequence)
    cancels the request, which frees its batch slot at the next step.

    Generation ends (``finish_reason`` ``"stop"``) at ``end_id`` or any id of
    ``stop_ids`` (a chat model's end-of-turn ids, e.g. a byte-level BPE tokenizer's
    ``stop_token_ids``); the stop token adds no text.
    """
    if tokenizer is None or not callable(getattr(tokenizer, "decode", None)):
        raise TypeError("serving text needs a tokenizer with encode(text) and decode(ids)")
    if isinstance(stop_ids, int | str):
        raise TypeError(f"stop_ids must be a collection of token ids, got {stop_ids!r}")
    ends = {int(i) for i in stop_ids} | (set() if end_id is None else {int(end_id)})
    end_ids = tuple(sorted(ends))

    def stream(request: Any) -> Iterator[str]:
        prompt_ids = getattr(request, "prompt_ids", None)
        if prompt_ids is None:
            prompt_ids = encode_text(tokenizer, request.prompt)
        handle = scheduler.submit(
            list(prompt_ids),
            request.max_tokens,
            temperature=request.temperature,
            topk=request.topk,
            topp=request.topp,
            seed=request.seed,
            stop_ids=end_ids,
        )
        ids: list[int] = []
        deltas = TextDeltas()
        try:
            for token_id in handle:
                ids.append(token_id)
                yield deltas(tokenizer.decode(ids))
        finally:
            if not handle.done.is_set():
                handle.cancel()

    return stream
