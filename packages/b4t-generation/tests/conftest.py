"""Test setup for b4t-generation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one thread, restoring the setting afterwards.

    Decoding makes hundreds of very small forward calls; on a shared 2-core
    machine intra-op threads only add contention (10-30x slower per call).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
