"""CPU defaults that keep a b4t job fast when other processes share the cores.

torch's CPU kernels run on OpenMP threads (libgomp in the Linux wheels). By default an
idle OpenMP thread *spins* for a while before it sleeps, and every parallel region
waits for its slowest thread. On a machine where another process competes for the
cores, the spinning threads burn the CPU the others need and each region waits for a
descheduled thread: a small model's training step measured 10-30x slower instead of
the 1-2x its share of the CPU explains (``benchmarks/bench_contention.py``).

Two knobs, applied in this order:

1. :func:`passive_openmp` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once)
   unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. libgomp reads its
   environment once, when torch loads it, so this only works before ``import torch``:
   ``import b4t.trainer`` calls it first thing, which is early enough when b4t.trainer
   is imported before torch (the examples do; otherwise export the variable).
2. :func:`configure_threads` sets torch's intra-op thread count: an explicit count
   (``--threads``) wins, then the user's ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``;
   otherwise torch's default is kept when OpenMP waits passively, and one thread is used
   when it was too late for (1) (torch was loaded first with the spinning default),
   since a single thread never waits on another.

This module imports nothing heavy at import time (torch only inside
:func:`configure_threads`), so it runs before torch is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

__all__ = ["configure_threads", "openmp_loaded", "passive_openmp", "passive_wait_in_effect"]

WAIT_POLICY = "OMP_WAIT_POLICY"
# Variables by which a user chose how OpenMP threads wait; b4t leaves them alone.
USER_WAIT_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# Variables by which a user chose torch's thread count (torch reads them at start).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp")

# What passive_openmp found the first time it ran: None until then, else the policy
# the OpenMP runtime of this process reads ('PASSIVE', the user's value, or '' for the
# runtime's spinning default because torch had loaded it first).
_policy_seen: str | None = None


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime is already mapped into this process (Linux: read from
    ``/proc/self/maps``; elsewhere: whether torch is imported)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(name in line for line in maps for name in OPENMP_LIBRARIES)
    except OSError:
        return "torch" in sys.modules


def passive_openmp(environ: MutableMapping[str, str] | None = None) -> str:
    """Make idle OpenMP threads sleep instead of spinning; runs once per process.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) when no
    wait knob (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``) is set and no
    OpenMP runtime is loaded yet. Returns the policy the runtime reads: ``'PASSIVE'``,
    the user's own ``OMP_WAIT_POLICY`` (``'user'`` for a spin-count knob), or ``''``
    when the runtime was loaded first with its spinning default. Later calls return the
    first answer and change nothing (child processes inherit the variable).
    """
    global _policy_seen
    if _policy_seen is not None:
        return _policy_seen
    env = os.environ if environ is None else environ
    if any(knob in env for knob in USER_WAIT_KNOBS):
        _policy_seen = env.get(WAIT_POLICY, "user").upper()
    elif openmp_loaded():
        _policy_seen = ""
    else:
        env[WAIT_POLICY] = "PASSIVE"
        _policy_seen = "PASSIVE"
    return _policy_seen


def passive_wait_in_effect() -> bool:
    """Whether this process's OpenMP threads wait passively (see :func:`passive_openmp`)."""
    return passive_openmp() == "PASSIVE"


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads for a job that may share the machine.

    Args:
        threads: an explicit count (a ``--threads`` option); ``None`` chooses: the user's
            ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` if set (torch read them), torch's
            default when OpenMP waits passively, else 1 (spinning threads collapse under
            contention).

    Returns:
        the thread count now in effect (``torch.get_num_threads()``).
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    elif not any(v in os.environ for v in THREAD_VARIABLES) and passive_openmp() == "":
        torch.set_num_threads(1)
    return torch.get_num_threads()


# Importing this module (b4t.trainer's __init__ does it first) applies the wait policy.
passive_openmp()
