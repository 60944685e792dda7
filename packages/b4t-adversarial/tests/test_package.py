"""Packaging checks for b4t-adversarial: version, namespace, typed marker."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import b4t.adversarial

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_distribution_metadata() -> None:
    assert b4t.adversarial.__version__ == importlib.metadata.version("b4t-adversarial")


def test_b4t_is_a_namespace_package() -> None:
    b4t = importlib.import_module("b4t")
    # A PEP 420 namespace package has no __file__ and may span several folders.
    assert getattr(b4t, "__file__", None) is None
    assert not (PACKAGE_ROOT / "src" / "b4t" / "__init__.py").exists()


def test_py_typed_marker_ships() -> None:
    assert (Path(b4t.adversarial.__file__).parent / "py.typed").exists()
