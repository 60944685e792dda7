"""Built-in variants. Every module in this folder is imported and registers itself.

Add a variant by dropping a module here (see :mod:`b4t.models.registry`).
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
