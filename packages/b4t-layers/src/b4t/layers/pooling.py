"""Sentence embeddings from encoder outputs: ``get_pool_emb`` (bert4torch's strategies).

``hidden_state`` is either the last layer ``(batch, seq_len, hidden)`` or the list of
all layers as returned with ``output_all_encoded_layers=True``, where index 0 is the
embedding output and index i the output of transformer layer i.

Strategies (``attention_mask`` is ``(batch, seq_len)``, 1 on real tokens):

- ``'pooler'``: the model's pooled output ``(batch, hidden)`` passed as ``pooler``.
- ``'cls'``: the first token of the last layer, ``h[:, 0]``.
- ``'last-avg'`` / ``'mean'``: mean of the last layer over real tokens.
- ``'last-max'`` / ``'max'``: max of the last layer over real tokens. bert4torch
  multiplies by the mask before the max, so padding counts as 0; here padded
  positions are excluded, which differs only where a feature is negative on every
  real token.
- ``'first-last-avg'``: mean over real tokens of ``(layers[1] + layers[-1]) / 2``
  (layer 1 is the first transformer layer, not the embeddings, as in bert4torch).
- ``'custom'``: mean over real tokens of the average of ``layers[i]`` for ``i`` in
  ``custom_layer`` (an int or a list of ints).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["POOL_STRATEGIES", "get_pool_emb"]

POOL_STRATEGIES = (
    "pooler",
    "cls",
    "last-avg",
    "mean",
    "last-max",
    "max",
    "first-last-avg",
    "custom",
)

HiddenState = torch.Tensor | Sequence[torch.Tensor]


def _last(hidden_state: HiddenState | None, strategy: str) -> torch.Tensor:
    """The last layer from a tensor or a list of layers."""
    if isinstance(hidden_state, (list, tuple)):
        if not hidden_state:
            raise ValueError(f"pool_strategy {strategy!r}: hidden_state is an empty list")
        hidden_state = hidden_state[-1]
    if not isinstance(hidden_state, torch.Tensor):
        raise TypeError(
            f"pool_strategy {strategy!r} needs hidden_state as a tensor or a list of tensors, "
            f"got {type(hidden_state).__name__}"
        )
    _check_3d(hidden_state, strategy)
    return hidden_state


def _layers(hidden_state: HiddenState | None, strategy: str) -> Sequence[torch.Tensor]:
    if not isinstance(hidden_state, (list, tuple)):
        raise TypeError(
            f"pool_strategy {strategy!r} needs hidden_state as the list of all layers "
            "(build the model with output_all_encoded_layers=True), "
            f"got {type(hidden_state).__name__}"
        )
    return hidden_state


def _check_3d(h: torch.Tensor, strategy: str) -> None:
    if h.dim() != 3:
        raise ValueError(
            f"pool_strategy {strategy!r}: hidden states must be (batch, seq_len, hidden), "
            f"got {tuple(h.shape)}"
        )


def _float_mask(
    attention_mask: torch.Tensor | None, h: torch.Tensor, strategy: str
) -> torch.Tensor:
    """``(batch, seq_len, 1)`` mask in ``h``'s dtype, checked against ``h``'s shape."""
    if attention_mask is None:
        raise ValueError(f"pool_strategy {strategy!r} needs attention_mask (batch, seq_len)")
    if tuple(attention_mask.shape) != tuple(h.shape[:2]):
        raise ValueError(
            f"pool_strategy {strategy!r}: attention_mask shape {tuple(attention_mask.shape)} "
            f"does not match hidden states (batch, seq_len) {tuple(h.shape[:2])}"
        )
    return attention_mask.to(h.dtype).unsqueeze(-1)


def _masked_mean(layers: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of the average of ``layers``: -> ``(batch, hidden)``."""
    total = sum((layer * mask).sum(dim=1) for layer in layers)
    return total / (len(layers) * mask.sum(dim=1))


def _pick(layers: Sequence[torch.Tensor], index: int, strategy: str) -> torch.Tensor:
    if not -len(layers) <= index < len(layers):
        raise IndexError(
            f"pool_strategy {strategy!r}: layer {index} out of range for {len(layers)} layers"
        )
    layer = layers[index]
    _check_3d(layer, strategy)
    return layer


def get_pool_emb(
    hidden_state: HiddenState | None = None,
    pooler: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    pool_strategy: str = "cls",
    custom_layer: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Pool encoder outputs into one vector per sequence, ``(batch, hidden)``.

    Args:
        hidden_state: last layer ``(B, N, H)`` or the list of all layers.
        pooler: pooled output ``(B, H)`` for ``'pooler'``.
        attention_mask: ``(B, N)`` with 1 on real tokens (needed by the averaging and
            max strategies).
        pool_strategy: one of :data:`POOL_STRATEGIES`.
        custom_layer: layer index or indices for ``'custom'``.
    """
    s = pool_strategy
    if s == "pooler":
        if not isinstance(pooler, torch.Tensor):
            raise ValueError("pool_strategy 'pooler' needs the pooled output tensor as pooler")
        return pooler
    if s == "cls":
        return _last(hidden_state, s)[:, 0]
    if s in ("last-avg", "mean"):
        h = _last(hidden_state, s)
        return _masked_mean([h], _float_mask(attention_mask, h, s))
    if s in ("last-max", "max"):
        h = _last(hidden_state, s)
        keep = _float_mask(attention_mask, h, s).bool()
        return h.masked_fill(~keep, float("-inf")).amax(dim=1)
    if s == "first-last-avg":
        layers = _layers(hidden_state, s)
        picked = [_pick(layers, 1, s), _pick(layers, -1, s)]
        return _masked_mean(picked, _float_mask(attention_mask, picked[-1], s))
    if s == "custom":
        layers = _layers(hidden_state, s)
        if isinstance(custom_layer, int):
            custom_layer = [custom_layer]
        if not isinstance(custom_layer, (list, tuple)) or not custom_layer:
            raise ValueError(
                "pool_strategy 'custom' needs custom_layer as an int or a non-empty list of "
                f"ints, got {custom_layer!r}"
            )
        picked = [_pick(layers, i, s) for i in custom_layer]
        return _masked_mean(picked, _float_mask(attention_mask, picked[-1], s))
    raise ValueError(f"unknown pool_strategy {pool_strategy!r}; expected one of {POOL_STRATEGIES}")
