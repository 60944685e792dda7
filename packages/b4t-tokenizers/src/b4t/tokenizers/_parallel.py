"""``parallel_apply`` / ``parallel_apply_generator``: a bounded, seeded multiprocess map."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any


_WORKER_FUNC: Callable[[Any], Any] | None = None


def _init_worker(
    func: Callable[[Any], Any], seeds: Sequence[int | None] | None, counter: Any
) -> None:
    """Runs once in each worker: remember ``func``; seed the RNGs with this worker's seed."""
    global _WORKER_FUNC
    _WORKER_FUNC = func
    if not seeds:
        return
    with counter.get_lock():
        rank = counter.value
        counter.value += 1
    seed = seeds[rank] if rank < len(seeds) else None
    import random

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def _run(item: tuple[int, Any]) -> tuple[int, Any]:
    index, data = item
    assert _WORKER_FUNC is not None
    return index, _WORKER_FUNC(data)


def _make_pool(
    func: Callable[[Any], Any],
    workers: int,
    dummy: bool,
    random_seeds: bool | Sequence[int | None] | None,
) -> Any:
    """A pool of ``workers`` threads (``dummy``) or forked processes (seeded as
    ``parallel_apply_generator`` says), each running ``_init_worker`` once."""
    if dummy:
        from multiprocessing.pool import ThreadPool

        return ThreadPool(workers, _init_worker, (func, None, None))
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    if random_seeds is True:
        random_seeds = [None] * workers
    seeds = list(random_seeds or ())
    return context.Pool(workers, _init_worker, (func, seeds, context.Value("i", 0)))


def parallel_apply_generator(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    workers: int,
    max_queue_size: int,
    dummy: bool = False,
    random_seeds: bool | Sequence[int | None] | None = True,
    unordered: bool = True,
) -> Iterator[tuple[int, Any]]:
    """Apply ``func`` to every item on ``workers`` processes (threads with ``dummy=True``).

    Yields ``(index, func(item))`` as results arrive (in input order with
    ``unordered=False``). At most ``max_queue_size`` items are in flight, so
    an endless ``iterable`` is fine. ``random_seeds=True`` gives each worker
    process a fresh random seed (``random`` and, if loaded, ``numpy``); a list
    gives the k-th started worker ``random_seeds[k]`` (``None``: fresh);
    ``False``/``None`` leaves the forked state (threads are never reseeded).
    On Linux workers are forked, so ``func`` may be a lambda or a closure.
    An exception raised by ``func`` is raised here.
    """
    if workers < 1 or max_queue_size < 1:
        raise ValueError(
            f"workers and max_queue_size must be >= 1, got {workers}, {max_queue_size}"
        )
    pool = _make_pool(func, workers, dummy, random_seeds)
    arrivals = _Arrivals(unordered)
    try:
        for index, data in enumerate(iterable):
            while arrivals.in_flight >= max_queue_size:
                yield from arrivals.take()
            pool.apply_async(
                _run,
                ((index, data),),
                callback=arrivals.succeeded,
                error_callback=arrivals.failed,
            )
            arrivals.in_flight += 1
        while arrivals.in_flight:
            yield from arrivals.take()
    finally:
        pool.terminate()
        pool.join()


class _Arrivals:
    """The pool's results as they arrive, handed on as ``(index, result)`` pairs (in input
    order unless ``unordered``); a worker's exception is raised where it is taken."""

    def __init__(self, unordered: bool) -> None:
        import queue

        self.unordered = unordered
        self.done: queue.Queue = queue.Queue()
        self.waiting: dict[int, Any] = {}
        self.next_out = 0
        self.in_flight = 0  # items sent to the pool and not taken yet

    def succeeded(self, result: tuple[int, Any]) -> None:
        """The pool's callback (runs on its result thread)."""
        self.done.put((True, result))

    def failed(self, error: BaseException) -> None:
        """The pool's error callback (runs on its result thread)."""
        self.done.put((False, error))

    def take(self) -> Iterator[tuple[int, Any]]:
        """Wait for one result; yield it, or (ordered) every result now due."""
        ok, payload = self.done.get()
        self.in_flight -= 1
        if not ok:
            raise payload
        if self.unordered:
            yield payload
            return
        self.waiting[payload[0]] = payload[1]
        while self.next_out in self.waiting:
            yield self.next_out, self.waiting.pop(self.next_out)
            self.next_out += 1


def parallel_apply(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    workers: int,
    max_queue_size: int,
    callback: Callable[[Any], Any] | None = None,
    dummy: bool = False,
    random_seeds: bool | Sequence[int | None] | None = True,
    unordered: bool = True,
) -> list[Any] | None:
    """``func`` over ``iterable`` in parallel; a list of results, or ``None`` with ``callback``.

    ``unordered=True`` returns results as they finish; ``False`` in input order.
    With ``callback`` every result is passed to it (in the same order) instead.
    """
    generator = parallel_apply_generator(
        func, iterable, workers, max_queue_size, dummy, random_seeds, unordered
    )
    if callback is None:
        return [result for _, result in generator]
    for _, result in generator:
        callback(result)
    return None
