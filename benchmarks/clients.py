"""Concurrent clients for the serving benchmarks: threads released together, every
result kept, a failed client an error (never a silently smaller count)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_concurrently(task: Callable[[int], T], clients: int) -> tuple[list[T], float]:
    """Run ``task(k)`` for ``k`` in ``range(clients)``, one thread each, all released by
    one barrier; return the results (in finishing order) and the wall-clock seconds from
    the first start to the last finish. Raises if any client failed."""
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(k: int) -> None:
        barrier.wait()
        try:
            result = task(k)
        except BaseException as error:  # reported below, with the count
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors or len(results) != clients:
        raise RuntimeError(
            f"{clients - len(results)} of {clients} client(s) failed; first error: {errors[0]!r}"
            if errors
            else f"{clients - len(results)} client(s) gave nothing"
        )
    return results, elapsed
