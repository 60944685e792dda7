"""The smallest shims that let bert4torch 0.2.5 / torch4keras 0.0.4 import on Python 3.11.

Test-tree only: no b4t package ever imports this. bert4torch 0.2.5 calls
``inspect.getargspec`` (removed in Python 3.11) in ``snippets.insert_arguments``;
``getfullargspec`` returns the same first field (the argument names) it reads. It
also imports ``six`` and ``packaging``, which the ``seed`` session installs, and
torch4keras 0.0.4's ``EarlyStopping`` reads ``np.Inf``, which NumPy 2 removed
(``np.inf`` is the same value).
"""

from __future__ import annotations

import inspect


def install() -> None:
    """Patch what bert4torch 0.2.5 needs from older Pythons (idempotent)."""
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = inspect.getfullargspec  # type: ignore[attr-defined]
    import numpy as np

    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # type: ignore[attr-defined]
