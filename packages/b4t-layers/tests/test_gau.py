"""Gated attention unit: against a loop-by-loop reference of the GAU formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from b4t.layers.gau import GatedAttentionUnit, OffsetScale, attention_normalize


def _rotate(x: torch.Tensor, pos: int) -> torch.Tensor:
    """RoPE on one vector, pair by pair."""
    out = x.clone()
    d = x.shape[-1]
    for i in range(d // 2):
        a = pos * 10000 ** (-2 * i / d)
        c, s = math.cos(a), math.sin(a)
        out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s
        out[2 * i + 1] = x[2 * i + 1] * c + x[2 * i] * s
    return out


def _reference(gau: GatedAttentionUnit, x: torch.Tensor, valid: int, method: str) -> torch.Tensor:
    """GAU on one sequence whose first ``valid`` tokens are real, written out in loops."""
    seq = x.shape[0]
    h = F.silu(x @ gau.i_dense.weight.T + gau.i_dense.bias)
    e = gau.intermediate_size
    u, v, z = h[:, :e], h[:, e : 2 * e], h[:, 2 * e :]
    g, b = gau.offsetscale.gamma, gau.offsetscale.beta
    q = torch.stack([_rotate(z[i] * g[0] + b[0], i) for i in range(seq)])
    k = torch.stack([_rotate(z[j] * g[1] + b[1], j) for j in range(seq)])
    out = torch.empty(seq, e)
    for i in range(seq):
        s = torch.stack([q[i] @ k[j] for j in range(valid)]) / math.sqrt(gau.key_size)
        if method == "softmax_plus":
            p = torch.softmax(s * math.log(valid) / math.log(512), -1)
        else:
            p = torch.relu(s) ** 2 / valid
        out[i] = u[i] * sum(p[j] * v[j] for j in range(valid))
    return out @ gau.o_dense.weight.T + gau.o_dense.bias


@pytest.mark.parametrize("method", ["softmax_plus", "squared_relu"])
def test_matches_written_out_formula_on_padded_batch(method: str):
    torch.manual_seed(0)
    gau = GatedAttentionUnit(
        12, key_size=6, intermediate_size=10, normalization=method, rotary=True
    ).eval()
    with torch.no_grad():
        gau.offsetscale.beta.normal_()
        gau.offsetscale.gamma.normal_()
    x = torch.randn(2, 7, 12)
    lengths = [7, 4]
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        out = gau(x, mask)
        for b, n in enumerate(lengths):
            ref = _reference(gau, x[b], n, method)
            torch.testing.assert_close(out[b, :n], ref[:n], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(1)
    gau = GatedAttentionUnit(8, 4, 6, bias=False, p_bias="rotary").eval()
    assert gau.offsetscale.beta is None and gau.i_dense.bias is None
    x = torch.randn(1, 5, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    with torch.no_grad():
        torch.testing.assert_close(gau(padded, mask)[:, :5], gau(x), atol=1e-6, rtol=1e-6)


def test_offset_scale_and_errors():
    os_ = OffsetScale(3, heads=2)
    q, k = os_(torch.ones(4, 3))
    torch.testing.assert_close(q, os_.gamma[0].expand(4, 3) + os_.beta[0])
    torch.testing.assert_close(k, os_.gamma[1].expand(4, 3) + os_.beta[1])
    with pytest.raises(ValueError, match="normalization 'bogus'"):
        attention_normalize(torch.zeros(1, 2, 2), None, "bogus")
    with pytest.raises(ValueError, match="one head"):
        GatedAttentionUnit(8, 4, 6)(torch.randn(1, 3, 8), torch.ones(1, 2, 3, 3, dtype=torch.bool))
