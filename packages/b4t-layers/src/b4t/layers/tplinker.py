"""TPLinker's handshaking kernel: one vector per token pair ``(i, j)`` with ``j >= i``."""

from __future__ import annotations

import torch
from torch import nn

from b4t.layers.norms import LayerNorm

__all__ = ["TplinkerHandshakingKernel"]

_SHAKING = ("cat", "cat_plus", "cln", "cln_plus")
_INNER = ("mean_pooling", "max_pooling", "mix_pooling", "lstm")


class TplinkerHandshakingKernel(nn.Module):
    """Pair encodings for TPLinker (Wang et al. 2020), bert4torch's layer and names.

    For every pair ``(i, j)``, ``0 <= i <= j < L``, in the order ``(0,0), (0,1), ...,
    (0,L-1), (1,1), ...``, with ``h_i`` the token states and ``c_ij`` an encoding of the
    span ``h_i .. h_j`` (``inner_enc_type``: mean / max / mix pooling over the span, or
    an LSTM run from ``i`` to ``j``):

    - ``'cat'``: ``tanh(combine_fc([h_i; h_j]))``
    - ``'cat_plus'``: ``tanh(combine_fc([h_i; h_j; c_ij]))``
    - ``'cln'``: conditional LayerNorm of ``h_j`` given ``h_i`` (``tp_cln``)
    - ``'cln_plus'``: that, then conditional LayerNorm given ``c_ij`` (``inner_context_cln``)

    ``mix_pooling`` is ``lamtha * mean + (1 - lamtha) * max`` with a learned ``lamtha``.

    ``forward(seq_hiddens [B, L, H])`` -> ``[B, L * (L + 1) / 2, H]``.
    """

    def __init__(self, hidden_size: int, shaking_type: str, inner_enc_type: str = "") -> None:
        super().__init__()
        if shaking_type not in _SHAKING:
            raise ValueError(f"shaking_type must be one of {_SHAKING}, got {shaking_type!r}")
        if shaking_type.endswith("_plus") and inner_enc_type not in _INNER:
            raise ValueError(
                f"shaking_type {shaking_type!r} needs inner_enc_type in {_INNER}, "
                f"got {inner_enc_type!r}"
            )
        self.shaking_type = shaking_type
        self.inner_enc_type = inner_enc_type
        if shaking_type == "cat":
            self.combine_fc = nn.Linear(hidden_size * 2, hidden_size)
        elif shaking_type == "cat_plus":
            self.combine_fc = nn.Linear(hidden_size * 3, hidden_size)
        else:
            self.tp_cln = LayerNorm(hidden_size, conditional_size=hidden_size)
            if shaking_type == "cln_plus":
                self.inner_context_cln = LayerNorm(hidden_size, conditional_size=hidden_size)
        if inner_enc_type == "mix_pooling":
            self.lamtha = nn.Parameter(torch.rand(hidden_size))
        elif inner_enc_type == "lstm":
            self.inner_context_lstm = nn.LSTM(
                hidden_size, hidden_size, num_layers=1, bidirectional=False, batch_first=True
            )

    def enc_inner_hiddens(
        self, seq_hiddens: torch.Tensor, inner_enc_type: str = "lstm"
    ) -> torch.Tensor:
        """Prefix encodings ``c_j`` of ``h_0..h_j`` for every ``j`` (bert4torch's method):
        ``[B, L, H] -> [B, L, H]``; ``inner_enc_type`` is ``'lstm'`` (this kernel's LSTM),
        ``'mean_pooling'``, ``'max_pooling'`` or ``'mix_pooling'`` (``lamtha`` mixes the
        two)."""
        if inner_enc_type not in _INNER:
            raise ValueError(f"inner_enc_type must be one of {_INNER}, got {inner_enc_type!r}")
        needs = {"lstm": "inner_context_lstm", "mix_pooling": "lamtha"}.get(inner_enc_type)
        if needs is not None and not hasattr(self, needs):
            raise ValueError(
                f"inner_enc_type={inner_enc_type!r} needs the kernel built with it "
                f"(this one has inner_enc_type={self.inner_enc_type!r})"
            )
        if inner_enc_type == "lstm":
            return self.inner_context_lstm(seq_hiddens)[0]
        steps = torch.arange(
            1, seq_hiddens.shape[1] + 1, device=seq_hiddens.device, dtype=seq_hiddens.dtype
        )
        mean = seq_hiddens.cumsum(dim=1) / steps[:, None]
        if inner_enc_type == "mean_pooling":
            return mean
        running_max = seq_hiddens.cummax(dim=1).values
        if inner_enc_type == "max_pooling":
            return running_max
        return self.lamtha * mean + (1 - self.lamtha) * running_max

    def _inner(self, tail: torch.Tensor) -> torch.Tensor:
        """Span encodings ``c_{i, i..L-1}`` from ``tail = h[:, i:]`` ``[B, L-i, H]``."""
        return self.enc_inner_hiddens(tail, self.inner_enc_type)

    def forward(self, seq_hiddens: torch.Tensor) -> torch.Tensor:
        """Encode each pair ``i <= j``: ``seq_hiddens [B, L, H]`` -> ``[B, L * (L + 1) / 2, H]``."""
        if seq_hiddens.dim() != 3:
            raise ValueError(
                f"TplinkerHandshakingKernel expects [batch, seq_len, hidden], "
                f"got {tuple(seq_hiddens.shape)}"
            )
        rows = []
        for i in range(seq_hiddens.shape[1]):
            tail = seq_hiddens[:, i:]  # h_j for j >= i
            head = seq_hiddens[:, i : i + 1].expand_as(tail)  # h_i repeated
            if self.shaking_type == "cat":
                pair = torch.tanh(self.combine_fc(torch.cat([head, tail], dim=-1)))
            elif self.shaking_type == "cat_plus":
                parts = [head, tail, self._inner(tail)]
                pair = torch.tanh(self.combine_fc(torch.cat(parts, dim=-1)))
            else:
                pair = self.tp_cln(tail, head)
                if self.shaking_type == "cln_plus":
                    pair = self.inner_context_cln(pair, self._inner(tail))
            rows.append(pair)
        return torch.cat(rows, dim=1)
