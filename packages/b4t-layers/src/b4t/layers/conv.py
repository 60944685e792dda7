"""DeBERTa-v2's convolution branch (bert4torch's ``ConvLayer``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.layers.activations import get_activation

__all__ = ["ConvLayer"]


class ConvLayer(nn.Module):
    """``LayerNorm(residual + act(dropout(conv(x))))``, zeroed at padded positions.

    Args (bert4torch's order): ``hidden_size, dropout_rate=0.1, layer_norm_eps=1e-12,
    conv_kernel_size=3, conv_groups=1, conv_act='tanh', **kwargs`` (others ignored).
    The convolution runs along the sequence with ``(kernel - 1) // 2`` padding; its
    output is zeroed at padded positions before the activation. Parameter names are
    bert4torch's (``conv``, ``LayerNorm`` (a ``torch.nn.LayerNorm``)).

    ``forward(hidden_states [B, L, H], residual_states [B, L, H], input_mask [B, L] or
    [B, 1, 1, L] (1 = real token) or None)`` -> ``[B, L, H]``.
    """

    def __init__(
        self,
        hidden_size: int,
        dropout_rate: float = 0.1,
        layer_norm_eps: float = 1e-12,
        conv_kernel_size: int = 3,
        conv_groups: int = 1,
        conv_act: str = "tanh",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.conv_act = conv_act
        self.act = get_activation(conv_act)
        self.conv = nn.Conv1d(
            hidden_size,
            hidden_size,
            conv_kernel_size,
            padding=(conv_kernel_size - 1) // 2,
            groups=conv_groups,
        )
        self.LayerNorm = nn.LayerNorm(hidden_size, layer_norm_eps)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(
        self,
        hidden_states: torch.Tensor,
        residual_states: torch.Tensor,
        input_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Mix neighbouring positions: ``hidden_states [B, L, H]``, ``residual_states [B, L, H]``,
        ``input_mask [B, L]`` or ``[B, 1, 1, L]`` (1 = real token) or None -> ``[B, L, H]``.
        """
        out = self.conv(hidden_states.transpose(1, 2)).transpose(1, 2)
        keep = None
        if input_mask is not None:
            keep = input_mask.reshape(input_mask.shape[0], -1)[:, :, None].to(out.dtype)
            if keep.shape[1] != out.shape[1]:
                raise ValueError(
                    f"ConvLayer input_mask shape {tuple(input_mask.shape)} does not match "
                    f"hidden_states {tuple(hidden_states.shape)}"
                )
            out = out * keep
        out = self.act(self.dropout(out))
        x = residual_states + out
        out = self.LayerNorm(x).to(x.dtype)
        return out if keep is None else out * keep
