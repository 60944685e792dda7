"""Final-layer heads: pooler, NSP classifier and the MLM head (tied or with its own decoder)."""

from __future__ import annotations

import torch
from torch import nn

from b4t.layers import LayerNorm, get_activation
from b4t.layers.linear import Linear, linear

__all__ = ["MlmHead", "Pooler"]


class Pooler(nn.Module):
    """``act(dense(h[:, 0]))``: ``[B, L, H]`` -> ``[B, H]``.

    ``activation`` is an activation name: ``'tanh'`` (BERT, ``with_pool=True``) or any
    other (``'linear'``: no activation), as bert4torch's ``with_pool='...'``.
    """

    def __init__(self, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = activation
        self.act = get_activation(activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden_states[:, 0]))


class MlmHead(nn.Module):
    """``act_out(LayerNorm(act(dense(h))) @ decoder^T + bias)``: ``[B, L, H]`` -> ``[B, L, V]``.

    With ``tied=True`` (BERT's default) the decoder has no weight of its own: it reads
    the embedding table passed to ``forward``, so fine-tuning one updates the other.
    With ``tied=False`` (a checkpoint saved with ``tie_word_embeddings=False``) the
    decoder is ``decoder.weight [V, E]``. ``activation`` is applied to the scores
    (``'linear'``: logits, ``'softmax'``: probabilities over the vocabulary), as
    bert4torch's ``with_mlm='...'``. ``conditional_size`` makes the LayerNorm
    conditional (``forward(..., cond)``).
    """

    def __init__(
        self,
        hidden_size: int,
        embedding_size: int,
        vocab_size: int,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
        tied: bool = True,
        activation: str = "linear",
        conditional_size: int | None = None,
    ) -> None:
        super().__init__()
        self.tied = tied
        self.dense = nn.Linear(hidden_size, embedding_size)
        self.act = get_activation(hidden_act)
        self.layer_norm = LayerNorm(embedding_size, layer_norm_eps, conditional_size)
        self.decoder = None if tied else Linear(embedding_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.activation = activation
        self.out_act = get_activation(activation)

    def forward(
        self,
        hidden_states: torch.Tensor,
        embedding_weight: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.layer_norm(self.act(self.dense(hidden_states)), cond)
        weight = embedding_weight if self.decoder is None else self.decoder.weight
        return self.out_act(linear(h, weight, self.bias))
