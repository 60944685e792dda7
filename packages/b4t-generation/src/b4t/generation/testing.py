"""Tiny torch models that follow the b4t decoder protocol, for tests and benchmarks.

They are small random transformers with a real KV cache; they exist so the
decoding code can be checked and timed without a checkpoint. Not for
production use.

- :class:`TinyCausalLM` follows :class:`b4t.generation.protocol.DecoderModel`.
- :class:`TinySeq2SeqLM` follows :class:`b4t.generation.protocol.Seq2SeqModel`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinyCausalLM", "TinySeq2SeqLM"]

KV = tuple[torch.Tensor, torch.Tensor]


class _Attention(nn.Module):
    """Multi-head attention with an optional cache of past keys/values."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        past: KV | None = None,
    ) -> tuple[torch.Tensor, KV]:
        """x: (B, new, H); memory: (B, new_kv, H); mask: (B, 1, new, all_kv) bool."""
        q = self._split(self.q(x))
        k, v = (self._split(t) for t in self.kv(memory).chunk(2, dim=-1))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        batch, _, length, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(batch, length, -1)), (k, v)


class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = _Attention(hidden, heads)
        self.cross = _Attention(hidden, heads) if cross else None
        self.norm_cross = nn.LayerNorm(hidden) if cross else None
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden)
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        past: KV | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KV]:
        h = self.norm1(x)
        y, cache = self.attn(h, h, mask, past)
        x = x + y
        if self.cross is not None and self.norm_cross is not None and memory is not None:
            y, _ = self.cross(self.norm_cross(x), memory, memory_mask)
            x = x + y
        return x + self.ffn(self.norm2(x)), cache


def _causal_mask(attention_mask: torch.Tensor, new: int) -> torch.Tensor:
    """(B, all) 1/0 padding mask -> (B, 1, new, all) bool; a query always sees itself."""
    total = attention_mask.shape[1]
    query_pos = torch.arange(total - new, total, device=attention_mask.device)
    key_pos = torch.arange(total, device=attention_mask.device)
    causal = key_pos[None, :] <= query_pos[:, None]
    visible = causal[None] & attention_mask.bool()[:, None, :]
    visible = visible | (key_pos[None, :] == query_pos[:, None])[None]
    return visible[:, None]


class _TinyLM(nn.Module):
    """Token and position embeddings, the model's blocks, a final norm and an LM head,
    created in that order after ``torch.manual_seed(seed)`` (so the weights depend on the
    arguments alone). Subclasses build their blocks in :meth:`build_blocks`."""

    def __init__(
        self,
        vocab_size: int = 64,
        hidden_size: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        max_positions: int = 256,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.vocab_size = vocab_size
        self.max_positions = max_positions
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.positions = nn.Embedding(max_positions, hidden_size)
        self.build_blocks(hidden_size, num_heads, num_layers)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        with torch.no_grad():  # sharper random logits, so decoding choices are clear-cut
            self.head.weight.mul_(8.0)

    def build_blocks(self, hidden_size: int, num_heads: int, num_layers: int) -> None:
        """Create the model's transformer blocks (between the embeddings and the head)."""
        raise NotImplementedError


class TinyCausalLM(_TinyLM):
    """A small GPT-style decoder with learned positions and a KV cache.

    ``forward(input_ids, past_key_values=None, attention_mask=None)``:

    - ``input_ids``: ``(B, new)`` the new tokens only when a cache is given;
    - ``past_key_values``: ``None`` or a tuple per layer of ``(k, v)``, each
      ``(B, heads, past, head_dim)``;
    - ``attention_mask``: ``(B, past + new)`` 1 for real tokens, 0 for (left)
      padding; positions count real tokens only.

    Returns ``(logits (B, new, vocab), past_key_values)``.
    """

    def build_blocks(self, hidden_size: int, num_heads: int, num_layers: int) -> None:
        """``blocks``: ``num_layers`` causal self-attention blocks."""
        self.blocks = nn.ModuleList(
            _Block(hidden_size, num_heads, cross=False) for _ in range(num_layers)
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: tuple[KV, ...] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[KV, ...]]:
        """The decoder protocol call (see the class docstring)."""
        batch, new = input_ids.shape
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if attention_mask is None:
            attention_mask = torch.ones(
                batch, past + new, dtype=torch.long, device=input_ids.device
            )
        if attention_mask.shape != (batch, past + new):
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != {(batch, past + new)}"
            )
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]
        if int(positions.max()) >= self.max_positions:
            raise ValueError(f"sequence longer than max_positions={self.max_positions}")
        x = self.embed(input_ids) + self.positions(positions)
        mask = _causal_mask(attention_mask, new)
        caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, mask, None if past_key_values is None else past_key_values[i])
            caches.append(cache)
        return self.head(self.norm(x)), tuple(caches)


class TinySeq2SeqLM(_TinyLM):
    """A small encoder-decoder (T5/BART shape) with a decoder KV cache.

    - ``encode(input_ids (B, S), attention_mask (B, S) | None) -> (B, S, hidden)``
    - ``decode(input_ids (B, new), encoder_hidden_states, encoder_attention_mask,
      past_key_values=None) -> (logits (B, new, vocab), past_key_values)``

    ``encode_calls`` counts encoder runs (tests check the encoder runs once).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encode_calls = 0

    def build_blocks(self, hidden_size: int, num_heads: int, num_layers: int) -> None:
        """``encoder`` and ``decoder``: ``num_layers`` blocks each (with cross-attention in
        the decoder)."""
        self.encoder = nn.ModuleList(
            _Block(hidden_size, num_heads, cross=False) for _ in range(num_layers)
        )
        self.decoder = nn.ModuleList(
            _Block(hidden_size, num_heads, cross=True) for _ in range(num_layers)
        )

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, S)`` ids -> ``(B, S, hidden)`` encoder states (counted in ``encode_calls``)."""
        self.encode_calls += 1
        batch, length = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pos = torch.arange(length, device=input_ids.device)
        x = self.embed(input_ids) + self.positions(pos)[None]
        visible = attention_mask.bool()[:, None, None, :].expand(batch, 1, length, length)
        visible = visible | torch.eye(length, dtype=torch.bool, device=input_ids.device)
        for block in self.encoder:
            x, _ = block(x, visible)
        return x

    def decode(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple[KV, ...] | None = None,
    ) -> tuple[torch.Tensor, tuple[KV, ...]]:
        """``(B, new)`` decoder ids over the encoder states -> ``(logits, past_key_values)``."""
        batch, new = input_ids.shape
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        pos = torch.arange(past, past + new, device=input_ids.device)
        x = self.embed(input_ids) + self.positions(pos)[None]
        mask = _causal_mask(torch.ones(batch, past + new, device=input_ids.device), new)
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(encoder_hidden_states.shape[:2])
        memory_mask = encoder_attention_mask.bool().to(input_ids.device)[:, None, None, :]
        caches = []
        for i, block in enumerate(self.decoder):
            layer_past = None if past_key_values is None else past_key_values[i]
            x, cache = block(x, mask, layer_past, encoder_hidden_states, memory_mask)
            caches.append(cache)
        return self.head(self.norm(x)), tuple(caches)
