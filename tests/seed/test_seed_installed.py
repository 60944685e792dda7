"""The seed session really runs the seed: the exact versions, importable with the shims."""

from __future__ import annotations

import os
from importlib.metadata import version

import pytest


@pytest.mark.skipif(os.environ.get("B4T_SEED") != "1", reason="only in `nox -s seed`")
def test_seed_versions_installed() -> None:
    assert version("bert4torch") == "0.2.5"
    assert version("torch4keras") == "0.0.4"
    import bert4torch.models
    import bert4torch.snippets

    assert callable(bert4torch.snippets.insert_arguments)
