"""The smallest shims that let bert4torch 0.2.5 / torch4keras 0.0.4 import on Python 3.11.

Test-tree only: no b4t package ever imports this (`seed_module` imports a seed module
or skips). bert4torch 0.2.5 calls
``inspect.getargspec`` (removed in Python 3.11) in ``snippets.insert_arguments``;
``getfullargspec`` returns the same first field (the argument names) it reads. It
also imports ``six`` and ``packaging``, which the ``seed`` session installs, and
torch4keras 0.0.4's ``EarlyStopping`` reads ``np.Inf``, which NumPy 2 removed
(``np.inf`` is the same value).
"""

from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType

import pytest


def install() -> None:
    """Patch what bert4torch 0.2.5 needs from older Pythons (idempotent)."""
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = inspect.getfullargspec  # type: ignore[attr-defined]
    import numpy as np

    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # type: ignore[attr-defined]


def seed_module(name: str) -> ModuleType:
    """Import ``bert4torch.<name>`` / ``torch4keras.<name>``; skip if the seed is absent."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("B4T_SEED") == "1":  # inside `nox -s seed` a missing seed fails
            raise
        pytest.skip(f"bert4torch 0.2.5 not installed (run `nox -s seed`): {exc}")
