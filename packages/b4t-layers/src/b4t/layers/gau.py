"""Gated attention unit (GAU) of "Transformer Quality in Linear Time", as in GAU-alpha.

One projection gives ``u``, ``v`` (``intermediate_size`` each) and a shared
``z`` (``key_size``); per-dimension scale and offset turn ``z`` into single-head
queries and keys, optionally rotated (RoPE); the attention output gates ``u``:

    x -> act(W_i x) = [u, v, z];  q, k = z * gamma_q + beta_q, z * gamma_k + beta_k
    A = normalize(q k^T / sqrt(key_size));  out = W_o (u * (A v))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from b4t.layers.activations import get_activation
from b4t.layers.rotary import RoPEPositionEncoding

__all__ = ["GatedAttentionUnit", "OffsetScale", "attention_normalize"]

_NORMALIZATIONS = ("softmax", "softmax_plus", "squared_relu")


def attention_normalize(
    scores: Tensor, mask: Tensor | None, method: str = "softmax_plus"
) -> Tensor:
    """Normalise attention scores ``(..., q, k)`` over keys.

    Args:
        scores: raw scores.
        mask: bool ``(..., q or 1, k)``, True where a key may be attended; None for all.
        method: ``softmax``; ``softmax_plus`` (softmax of ``scores * log(n) / log(512)``,
            ``n`` the number of visible keys, GAU-alpha's length-aware scale);
            ``squared_relu`` (``relu(scores) ** 2 / n``).
    """
    if method not in _NORMALIZATIONS:
        raise ValueError(
            f"unknown attention normalization {method!r}; use one of {_NORMALIZATIONS}"
        )
    if mask is None:
        n = torch.full((*scores.shape[:-1], 1), scores.shape[-1], dtype=scores.dtype)
        n = n.to(scores.device)
    else:
        n = mask.sum(-1, keepdim=True).clamp(min=1).to(scores.dtype)
    if method == "squared_relu":
        out = F.relu(scores) ** 2 / n
        return out if mask is None else out.masked_fill(~mask, 0.0)
    if method == "softmax_plus":
        scores = scores * torch.log(n) / math.log(512)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return F.softmax(scores, dim=-1)


class OffsetScale(nn.Module):
    """Per-feature scale (and offset) into ``heads`` copies: ``(..., d) -> heads x (..., d)``.

    Parameters ``gamma`` and ``beta`` have shape ``(heads, d)``.
    """

    def __init__(self, head_size: int, heads: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(heads, head_size))
        nn.init.normal_(self.gamma, std=0.02)
        self.beta = nn.Parameter(torch.zeros(heads, head_size)) if bias else None

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = x.unsqueeze(-2) * self.gamma  # (..., heads, d)
        if self.beta is not None:
            out = out + self.beta
        return out.unbind(dim=-2)


class GatedAttentionUnit(nn.Module):
    """A GAU layer (no residual or norm: the block around it adds those).

    bert4torch 0.2.5's arguments, in its order:

    Args:
        hidden_size: model width.
        attention_key_size: size of the shared query/key projection ``z`` (128 in
            GAU-alpha); ``key_size=`` is b4t's keyword for it.
        intermediate_size: size of ``u`` and ``v``.
        attention_probs_dropout_prob: dropout on the attention probabilities, applied
            when ``is_dropout`` (as in bert4torch).
        hidden_act: name of the activation on the input projection (``swish`` in
            GAU-alpha); b4t's ``activation=`` takes a callable instead.
        is_dropout: apply ``attention_probs_dropout_prob``.
        attention_scale: divide scores by ``sqrt(key_size)``.
        bias: biases in the projections and the offset.
        normalization: see :func:`attention_normalize`.
        **kwargs: bert4torch's ``p_bias='rotary'`` applies RoPE to queries and keys
            (``max_position`` its length limit); other keys of a bert4torch config are
            ignored, as there.

    b4t's keywords: ``key_size``, ``activation`` (a callable), ``rotary`` (a bool, over
    ``p_bias``), ``max_position``, ``dropout`` (a rate applied always, over
    ``attention_probs_dropout_prob`` / ``is_dropout``).
    """

    def __init__(
        self,
        hidden_size: int,
        attention_key_size: int | None = None,
        intermediate_size: int | None = None,
        attention_probs_dropout_prob: float = 0.0,
        hidden_act: str | Callable[[Tensor], Tensor] = "swish",
        is_dropout: bool = False,
        attention_scale: bool = True,
        bias: bool = True,
        normalization: str = "softmax_plus",
        *,
        key_size: int | None = None,
        activation: Callable[[Tensor], Tensor] | None = None,
        rotary: bool | None = None,
        max_position: int | None = None,
        dropout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"unknown attention normalization {normalization!r}; use one of {_NORMALIZATIONS}"
            )
        if (attention_key_size is None) == (key_size is None):
            raise TypeError("GatedAttentionUnit needs attention_key_size (or key_size=), once")
        if intermediate_size is None:
            raise TypeError("GatedAttentionUnit needs intermediate_size")
        key_size = attention_key_size if key_size is None else key_size
        if dropout is None:
            dropout = attention_probs_dropout_prob if is_dropout else 0.0
        if rotary is None:
            rotary = kwargs.get("p_bias") == "rotary"
        self.key_size = key_size
        self.intermediate_size = intermediate_size
        self.activation = get_activation(hidden_act) if activation is None else activation
        self.normalization = normalization
        self.attention_scale = attention_scale
        self.i_dense = nn.Linear(hidden_size, 2 * intermediate_size + key_size, bias=bias)
        self.offsetscale = OffsetScale(key_size, heads=2, bias=bias)
        self.o_dense = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.rotary = RoPEPositionEncoding(max_position, key_size) if rotary else None
        self.dropout = nn.Dropout(dropout)

    def attention_normalize(self, a: Tensor, dim: int = -1, method: str = "softmax") -> Tensor:
        """bert4torch's method: normalise scores ``a`` over ``dim`` (see
        :func:`attention_normalize`); entries at or below ``-1e11`` (0.2.5's additive
        mask) count as masked."""
        scores = a.movedim(dim, -1)
        out = attention_normalize(scores, scores > -1e11, method)
        return out.movedim(-1, dim)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Args:
            hidden_states: ``(batch, seq, hidden_size)``.
            attention_mask: bool, True = visible key: ``(batch, seq)`` key padding
                or ``(batch, 1 or seq, seq)`` / ``(batch, 1, 1 or seq, seq)``.

        Returns:
            ``(batch, seq, hidden_size)``.
        """
        x = self.activation(self.i_dense(hidden_states))
        u, v, z = x.split([self.intermediate_size, self.intermediate_size, self.key_size], dim=-1)
        q, k = self.offsetscale(z)  # (batch, seq, key_size) each
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        scores = q @ k.transpose(-1, -2)  # (batch, seq, seq)
        if self.attention_scale:
            scores = scores / math.sqrt(self.key_size)
        mask = _as_3d_mask(attention_mask)
        probs = self.dropout(attention_normalize(scores, mask, self.normalization))
        return self.o_dense(u * (probs @ v))


def _as_3d_mask(mask: Tensor | None) -> Tensor | None:
    """Bool ``(batch, q or 1, k)`` from a 2-D key mask or a 3-/4-D (one head) mask."""
    if mask is None:
        return None
    mask = mask.bool()
    if mask.dim() == 2:
        return mask[:, None, :]
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"GAU has one head; got a per-head mask of shape {tuple(mask.shape)}")
        return mask[:, 0]
    if mask.dim() == 3:
        return mask
    raise ValueError(f"attention_mask must be 2-, 3- or 4-D, got shape {tuple(mask.shape)}")
