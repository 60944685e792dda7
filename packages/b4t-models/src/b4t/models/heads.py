"""Final-layer heads: pooler, NSP classifier and the MLM head tied to the word embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers import LayerNorm, get_activation

__all__ = ["MlmHead", "Pooler"]


class Pooler(nn.Module):
    """``tanh(dense(h[:, 0]))``: ``[B, L, H]`` -> ``[B, H]``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class MlmHead(nn.Module):
    """``LayerNorm(act(dense(h))) @ word_embeddings^T + bias``: ``[B, L, H]`` -> ``[B, L, V]``.

    The decoder has no weight of its own: it reads the embedding table passed to
    ``forward`` (tied, as in BERT), so fine-tuning one updates the other.
    """

    def __init__(
        self,
        hidden_size: int,
        embedding_size: int,
        vocab_size: int,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, embedding_size)
        self.act = get_activation(hidden_act)
        self.layer_norm = LayerNorm(embedding_size, layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm(self.act(self.dense(hidden_states)))
        return F.linear(h, embedding_weight, self.bias)
