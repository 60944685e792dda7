"""Fixtures for tests/seed_port: the tiny checkpoint and data every port script reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _assets import make_assets


@pytest.fixture(scope="session")
def port_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the scripts read as ``$B4T_PORT_DIR`` (made once per session)."""
    return make_assets(tmp_path_factory.mktemp("port_assets"))
