"""Small models and data shared by the b4t-trainer tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import BaseModel


class TinyNet(BaseModel):
    """An MLP classifier: ``(batch, 6) -> (batch, 3)`` logits."""

    def __init__(self, dropout: float = 0.0, in_dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, 16)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.tanh(self.fc1(x))))


def make_data(n: int = 24, in_dim: int = 6, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


@pytest.fixture
def tiny_net() -> type[TinyNet]:
    return TinyNet


@pytest.fixture
def loader() -> Callable[..., DataLoader]:
    def build(n: int = 24, batch_size: int = 4, shuffle: bool = False, seed: int = 0, **kw):
        x, y = make_data(n, seed=seed)
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, **kw)

    return build


@pytest.fixture
def data() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return make_data
