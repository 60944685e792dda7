"""GlobalPointer / EfficientGlobalPointer against a hand-written reference and masking rules."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers.global_pointer import EfficientGlobalPointer, GlobalPointer

B, N, HIDDEN, HEADS, D = 2, 6, 8, 3, 4


def _rope_by_hand(x: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) at position p by p * 10000**(-2i/D); x: (N, D)."""
    out = torch.empty_like(x)
    n, d = x.shape
    for p in range(n):
        for i in range(d // 2):
            a = p * 10000.0 ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            x0, x1 = x[p, 2 * i], x[p, 2 * i + 1]
            out[p, 2 * i] = x0 * c - x1 * s
            out[p, 2 * i + 1] = x1 * c + x0 * s
    return out


def _inputs(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(B, N, HIDDEN, dtype=torch.double)
    mask = torch.tensor([[1] * N, [1] * 4 + [0] * (N - 4)])
    return x, mask


def _check_masked(logits: torch.Tensor, mask: torch.Tensor, tril: bool) -> torch.Tensor:
    """Assert masked cells hold the large negative; return the boolean 'kept' map (B,1,N,N)."""
    keep = (mask.bool()[:, None, :, None] & mask.bool()[:, None, None, :]).expand_as(logits)
    if tril:
        keep = keep & ~torch.ones(N, N, dtype=torch.bool).tril(-1)
    assert (logits[~keep] == -1e12).all()
    assert (logits[keep] > -1e6).all()
    return keep


@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("tril", [True, False])
def test_global_pointer_matches_hand_reference(rope, tril):
    x, mask = _inputs()
    gp = GlobalPointer(HIDDEN, HEADS, D, RoPE=rope, tril_mask=tril).double()
    logits = gp(x, mask)
    assert logits.shape == (B, HEADS, N, N)
    w, bias = gp.dense.weight, gp.dense.bias
    ref = torch.empty(B, HEADS, N, N, dtype=torch.double)
    for b in range(B):
        proj = x[b] @ w.T + bias  # (N, HEADS * 2D), head h owns a contiguous 2D block
        for h in range(HEADS):
            q = proj[:, h * 2 * D : h * 2 * D + D]
            k = proj[:, h * 2 * D + D : (h + 1) * 2 * D]
            if rope:
                q, k = _rope_by_hand(q), _rope_by_hand(k)
            ref[b, h] = torch.einsum("md,nd->mn", q, k) / math.sqrt(D)
    keep = _check_masked(logits, mask, tril)
    torch.testing.assert_close(logits[keep], ref[keep])


@pytest.mark.parametrize("rope", [True, False])
def test_efficient_global_pointer_matches_hand_reference(rope):
    x, mask = _inputs(1)
    egp = EfficientGlobalPointer(HIDDEN, HEADS, D, RoPE=rope).double()
    logits = egp(x, mask)
    assert logits.shape == (B, HEADS, N, N)
    ref = torch.empty(B, HEADS, N, N, dtype=torch.double)
    for b in range(B):
        proj = x[b] @ egp.p_dense.weight.T + egp.p_dense.bias  # (N, 2D)
        q, k = proj[:, :D], proj[:, D:]
        if rope:
            q, k = _rope_by_hand(q), _rope_by_hand(k)
        shared = q @ k.T / math.sqrt(D)
        # (N, 2 * HEADS), added unhalved as bert4torch 0.2.5 does (bert4keras halves)
        head_bias = proj @ egp.q_dense.weight.T + egp.q_dense.bias
        for h in range(HEADS):
            start = head_bias[:, 2 * h][:, None]  # depends on the row (span start)
            end = head_bias[:, 2 * h + 1][None, :]  # depends on the column (span end)
            ref[b, h] = shared + start + end
    keep = _check_masked(logits, mask, tril=True)
    torch.testing.assert_close(logits[keep], ref[keep])


def test_rope_makes_scores_depend_on_relative_offset_only():
    gp = GlobalPointer(HIDDEN, 1, D, tril_mask=False).double()
    token = torch.randn(1, 1, HIDDEN, dtype=torch.double)
    logits = gp(token.expand(1, N, HIDDEN).contiguous())[0, 0]  # same token everywhere
    for offset in range(N):
        diag = torch.diagonal(logits, offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag))
    assert not torch.allclose(torch.diagonal(logits, 0)[0], torch.diagonal(logits, 2)[0])


def test_padding_does_not_change_real_scores():
    x, mask = _inputs(2)
    gp = GlobalPointer(HIDDEN, HEADS, D).double()
    full = gp(x[1:2, :4])
    padded = gp(x[1:2], mask[1:2])
    torch.testing.assert_close(padded[..., :4, :4], full)


def test_rope_table_length_and_shape_errors():
    gp = GlobalPointer(HIDDEN, HEADS, D, max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        gp(torch.randn(1, 5, HIDDEN))
    with pytest.raises(ValueError, match="hidden_size=8"):
        gp(torch.randn(1, 3, HIDDEN + 1))
    with pytest.raises(ValueError, match="mask shape"):
        gp(torch.randn(1, 3, HIDDEN), torch.ones(1, 4))
    with pytest.raises(ValueError, match="even"):
        EfficientGlobalPointer(HIDDEN, HEADS, 3)
    with pytest.raises(ValueError, match="heads"):
        GlobalPointer(HIDDEN, 0, D)


def test_half_precision_uses_a_finite_large_negative():
    gp = GlobalPointer(HIDDEN, HEADS, D).to(torch.bfloat16)
    x, mask = _inputs()
    logits = gp(x.to(torch.bfloat16), mask)
    assert torch.isfinite(logits).all()
    assert logits.min().item() < -1e11
