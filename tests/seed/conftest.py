"""Fixtures for the ``seed`` session: bert4torch 0.2.5 (+ torch4keras 0.0.4) beside b4t.

Every test here compares b4t with the seed on the same weights and inputs. The seed
is installed only by ``nox -s seed``; anywhere else these tests are skipped with
that reason; inside the session (``B4T_SEED=1``) a missing seed is an error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shims
from _shims import seed_module

_shims.install()


@pytest.fixture(scope="session")
def b4t_seed() -> dict[str, ModuleType]:
    """The seed's modules: ``models``, ``layers``, ``tokenizers``, ``snippets``, ``losses``,
    ``activations``, ``optimizers`` (bert4torch) and ``t4k_model``, ``t4k_snippets``
    (torch4keras)."""
    mods = {
        n: seed_module(f"bert4torch.{n}")
        for n in (
            "models",
            "layers",
            "tokenizers",
            "snippets",
            "losses",
            "activations",
            "optimizers",
        )
    }
    mods["t4k_model"] = seed_module("torch4keras.model")
    mods["t4k_snippets"] = seed_module("torch4keras.snippets")
    return mods
