"""Fixtures for b4t-adversarial: a tiny classifier and a fake trainer with the callback contract.

``FakeTrainer`` implements exactly what ``b4t.trainer.callback`` promises a
callback: ``module``, ``current_batch``, ``compute_loss(X, y) -> (loss, extra logs)``,
``autocast()``, ``forward(X)`` (under an optional CPU bf16 autocast) and ``backward(loss)``
scaling by ``1 / grad_accumulation_steps``; ``on_after_backward`` after each micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class TinyClassifier(nn.Module):
    """token ids [B, L] -> logits [B, C]: embedding, mean pool, tanh layer, linear head."""

    def __init__(self, vocab: int = 12, hidden: int = 6, classes: int = 3, tuple_out: bool = False):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)
        self.tuple_out = tuple_out

    def forward(self, token_ids: torch.Tensor) -> Any:
        h = torch.tanh(self.dense(self.word_embeddings(token_ids))).mean(dim=1)
        logits = self.head(h)
        return (h, logits) if self.tuple_out else logits


class FakeTrainer:
    """The slice of ``b4t.trainer.Trainer`` a callback may use, plus a tiny fit loop."""

    def __init__(
        self,
        module: nn.Module,
        loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
        grad_accumulation_steps: int = 1,
        bf16: bool = False,
    ) -> None:
        self.module = module
        self.loss_fn = loss_fn or (lambda out, y: F.cross_entropy(out, y))
        self.grad_accumulation_steps = grad_accumulation_steps
        self.bf16 = bf16
        self.current_batch: tuple[Any, Any] | None = None

    def autocast(self) -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def forward(self, X: Any) -> Any:
        return self.module(X)

    def compute_loss(self, X: Any, y: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        with self.autocast():
            out = self.forward(X)
            loss = self.loss_fn(out, y)
        return loss, {}

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accumulation_steps).backward()

    def accumulate(self, callback: Any, batches: list[tuple[Any, Any]], global_step: int = 0):
        """Forward/backward each micro-batch and call ``on_after_backward``; no optimizer step."""
        losses = []
        for local_step, (X, y) in enumerate(batches):
            self.current_batch = (X, y)
            loss, _ = self.compute_loss(X, y)
            self.backward(loss)
            logs = {"loss": float(loss.detach())}
            if callback is not None:
                callback.on_after_backward(global_step, local_step, logs)
            losses.append(logs["loss"])
        return losses


@pytest.fixture
def tiny_model() -> TinyClassifier:
    torch.manual_seed(0)
    return TinyClassifier()


@pytest.fixture
def tiny_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randint(0, 12, (4, 5), generator=g), torch.randint(0, 3, (4,), generator=g))
        for _ in range(2)
    ]


@pytest.fixture
def fake_trainer_cls() -> type[FakeTrainer]:
    return FakeTrainer


@pytest.fixture
def tiny_model_cls() -> type[TinyClassifier]:
    return TinyClassifier
