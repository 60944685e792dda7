"""Input embeddings: word + segment + position (learned or sinusoid), LayerNorm, dropout.

Also the two helpers users know from bert4torch: :func:`get_sinusoid_encoding_table`
and :func:`create_position_ids_from_input_ids`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from b4t.layers.norms import LayerNorm

__all__ = [
    "Embeddings",
    "SinusoidalPositionEncoding",
    "check_token_ids",
    "create_position_ids_from_input_ids",
    "get_sinusoid_encoding_table",
]


def get_sinusoid_encoding_table(
    n_position: int, d_hid: int, padding_idx: int | None = None
) -> torch.Tensor:
    """Sinusoid position table ``[n_position, d_hid]`` (float32).

    Even columns ``2i`` hold ``sin(pos / 10000^(2i/d_hid))``, odd columns ``2i+1`` the
    matching cosine (the Transformer paper's layout). Row ``padding_idx`` is zeros
    (bert4torch 0.2.5 accepts ``padding_idx`` and ignores it; see ``MIGRATION.md``).
    An odd ``d_hid`` keeps its last sine column.
    """
    position = torch.arange(n_position, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, d_hid, 2, dtype=torch.float32) * (-math.log(10000.0) / d_hid)
    )
    table = torch.zeros(n_position, d_hid)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)[:, : d_hid // 2]
    if padding_idx is not None:
        table[padding_idx] = 0.0
    return table


def create_position_ids_from_input_ids(
    input_ids: torch.Tensor, padding_idx: int, past_key_values_length: int = 0
) -> torch.Tensor:
    """RoBERTa positions: real tokens count up from ``padding_idx + 1``; pads get ``padding_idx``.

    ``input_ids`` ``[B, L]`` (long) -> position ids ``[B, L]`` (long).
    """
    mask = input_ids.ne(padding_idx).int()
    incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_key_values_length) * mask
    return incremental.long() + padding_idx


def check_token_ids(token_ids: torch.Tensor, vocab_size: int) -> None:
    """Raise a ``ValueError`` naming an id of ``token_ids`` (any shape) outside
    ``[0, vocab_size)``: the largest if it is too large, else the smallest."""
    if token_ids.numel():
        low, high = int(token_ids.min()), int(token_ids.max())
        if low < 0 or high >= vocab_size:
            bad = high if high >= vocab_size else low
            raise ValueError(f"token id {bad} is outside the vocabulary (size {vocab_size})")


def _type_embedding(table: nn.Embedding, ids: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``table`` for ``ids`` ``[B, N]`` -> ``[B, N, E]``; without ids, row 0 ``[E]``
    (every token of type 0, broadcast by the caller's sum)."""
    return table.weight[0] if ids is None else table(ids)


class SinusoidalPositionEncoding(nn.Module):
    """A fixed sinusoid position table, looked up by id (bert4torch's layer).

    ``SinusoidalPositionEncoding(max_position, embedding_size)``; the table
    (:func:`get_sinusoid_encoding_table`) is the frozen ``position_embeddings.weight``, as
    bert4torch saves it. ``forward(position_ids [...])`` -> ``[..., embedding_size]``.
    """

    def __init__(self, max_position: int, embedding_size: int) -> None:
        super().__init__()
        table = get_sinusoid_encoding_table(max_position, embedding_size)
        self.position_embeddings = nn.Embedding.from_pretrained(table, freeze=True)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Look up ``position_ids [...]`` (long) -> ``[..., embedding_size]``."""
        return self.position_embeddings(position_ids)


def _embedding(num_embeddings: int, embedding_dim: int) -> nn.Embedding:
    """An ``nn.Embedding`` initialised N(0, 1) like torch's, but free to build on ``meta``.

    ``torch.nn.init.normal_`` on a ``meta`` tensor allocates real memory the size of
    the table (measured: 68 MiB for a 21128 x 768 vocabulary, kept by the allocator),
    so under ``torch.device("meta")`` the init is skipped: the loader assigns the
    checkpoint tensor or initialises the parameter once it has real storage.
    """
    weight = torch.empty(num_embeddings, embedding_dim)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(num_embeddings, embedding_dim, _weight=weight)


class Embeddings(nn.Module):
    """Token + segment + position embeddings, then LayerNorm, dropout and an optional projection.

    Args:
        vocab_size: rows of the word table.
        embedding_size: embedding width ``E`` (ALBERT/ELECTRA use ``E < H``).
        hidden_size: model width ``H``; when it differs from ``E`` a ``projection``
            Linear ``E -> H`` runs last.
        max_position: rows of the position table (0: no absolute positions).
        segment_vocab_size: rows of the segment table (0: no segment embeddings).
        dropout_rate: dropout after the norm.
        layer_norm_eps: LayerNorm epsilon; ``None`` drops the norm.
        pad_token_id: padding id (also the RoBERTa position offset).
        position_type: ``'learned'``, ``'sinusoid'`` (fixed table) or ``None``.
        roberta_positions: positions from :func:`create_position_ids_from_input_ids`.
        layer_add_embs: extra embedding modules, one per extra id tensor passed to
            ``forward(..., extra_ids=...)``; their outputs are added to the sum.
        task_type_vocab_size: rows of ERNIE's task-type table (0: none); task ids come
            as ``forward(..., task_type_ids=...)`` and default to task 0.

    ``forward(token_ids [B, L], segment_ids [B, L] | None)`` -> ``[B, L, H]``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        max_position: int = 512,
        segment_vocab_size: int = 2,
        dropout_rate: float = 0.1,
        layer_norm_eps: float | None = 1e-12,
        pad_token_id: int = 0,
        position_type: str | None = "learned",
        roberta_positions: bool = False,
        layer_add_embs: Sequence[nn.Module] | nn.Module | None = None,
        task_type_vocab_size: int = 0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.max_position = max_position
        self.roberta_positions = roberta_positions
        self.word_embeddings = _embedding(vocab_size, embedding_size)
        self.segment_embeddings = (
            _embedding(segment_vocab_size, embedding_size) if segment_vocab_size > 0 else None
        )
        self.position_embeddings: nn.Embedding | None = None
        if position_type == "learned" and max_position > 0:
            self.position_embeddings = _embedding(max_position, embedding_size)
        elif position_type == "sinusoid" and max_position > 0:
            table = get_sinusoid_encoding_table(max_position, embedding_size)
            self.position_embeddings = nn.Embedding.from_pretrained(table, freeze=True)
        elif position_type not in (None, "none", "learned", "sinusoid"):
            raise ValueError(f"unknown position_type {position_type!r}")
        self.task_type_embeddings = (
            _embedding(task_type_vocab_size, embedding_size) if task_type_vocab_size else None
        )
        if isinstance(layer_add_embs, nn.Module) and not isinstance(layer_add_embs, nn.ModuleList):
            layer_add_embs = [layer_add_embs]
        self.layer_add_embs = nn.ModuleList(layer_add_embs) if layer_add_embs else None
        self.layer_norm = LayerNorm(embedding_size, layer_norm_eps) if layer_norm_eps else None
        self.dropout = nn.Dropout(dropout_rate)
        self.projection = (
            nn.Linear(embedding_size, hidden_size) if embedding_size != hidden_size else None
        )

    def check_inputs(self, token_ids: torch.Tensor) -> None:
        """Raise ``ValueError`` for ids outside ``[0, vocab_size)`` or a too-long sequence."""
        if token_ids.dim() != 2:
            raise ValueError(
                f"token_ids must be [batch, seq_len], got shape {tuple(token_ids.shape)}"
            )
        length = token_ids.shape[1]
        if self.position_embeddings is not None:
            needed = length + (self.pad_token_id + 1 if self.roberta_positions else 0)
            if needed > self.max_position:
                reserved = (
                    f", {self.pad_token_id + 1} reserved by the padding offset"
                    if self.roberta_positions
                    else ""
                )
                raise ValueError(
                    f"sequence length {length} is longer than the position table "
                    f"({self.max_position} positions{reserved})"
                )
        check_token_ids(token_ids, self.vocab_size)

    def forward(
        self,
        token_ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        extra_ids: Sequence[torch.Tensor] = (),
        task_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum the tables, normalise, drop out, project: ``token_ids [B, L]`` -> ``[B, L, H]``.

        ``segment_ids [B, L]`` (None: segment 0), ``position_ids [B, L]`` (None: ``0 .. L-1``, or
        RoBERTa's offsets with ``roberta_positions``), ``extra_ids`` one ``[B, L]`` tensor per
        ``layer_add_embs`` module, ``task_type_ids [B, L]`` (None: task 0).
        """
        x = self.word_embeddings(token_ids)
        if self.segment_embeddings is not None:
            x = x + _type_embedding(self.segment_embeddings, segment_ids)
        if self.position_embeddings is not None:
            if position_ids is not None:
                x = x + self.position_embeddings(position_ids)
            elif self.roberta_positions:
                pos = create_position_ids_from_input_ids(token_ids, self.pad_token_id)
                x = x + self.position_embeddings(pos)
            else:
                x = x + self.position_embeddings.weight[: token_ids.shape[1]]
        if self.task_type_embeddings is not None:
            x = x + _type_embedding(self.task_type_embeddings, task_type_ids)
        if self.layer_add_embs is not None:
            if len(extra_ids) != len(self.layer_add_embs):
                raise ValueError(
                    f"layer_add_embs has {len(self.layer_add_embs)} modules but "
                    f"{len(extra_ids)} extra id tensors were given"
                )
            for emb, ids in zip(self.layer_add_embs, extra_ids, strict=True):
                x = x + emb(ids)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = self.dropout(x)
        if self.projection is not None:
            x = self.projection(x)
        return x
