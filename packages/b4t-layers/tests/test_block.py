"""TransformerBlock against transformers' BertLayer (post-norm) and a written-out pre-norm."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.layers import TransformerBlock

HID, HEADS, INNER, EPS = 8, 2, 12, 1e-6


def _block(pre_norm: bool, act: str = "gelu", dropout: float = 0.1) -> TransformerBlock:
    torch.manual_seed(0)
    block = TransformerBlock(
        HID,
        HEADS,
        INNER,
        act,
        dropout_rate=dropout,
        attention_dropout=dropout,
        pre_norm=pre_norm,
        layer_norm_eps=EPS,
    )
    with torch.no_grad():  # norms away from their (1, 0) init so a swapped norm shows
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return block.eval()


def _padding(batch: int = 2, length: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(0/1 keep mask [B, L], additive mask [B, 1, 1, L])."""
    keep = torch.ones(batch, length)
    keep[1, -2:] = 0
    return keep, (1.0 - keep)[:, None, None, :] * torch.finfo(torch.float32).min


def _hf_bert_layer(block: TransformerBlock):
    modeling = pytest.importorskip("transformers.models.bert.modeling_bert")
    from transformers import BertConfig

    config = BertConfig(
        hidden_size=HID,
        num_attention_heads=HEADS,
        intermediate_size=INNER,
        hidden_act="gelu",
        layer_norm_eps=EPS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    layer = modeling.BertLayer(config).eval()
    q, k, v = block.attention.qkv.weight.chunk(3)
    qb, kb, vb = block.attention.qkv.bias.chunk(3)
    att = layer.attention
    pairs = [
        (att.self.query, q, qb),
        (att.self.key, k, kb),
        (att.self.value, v, vb),
        (att.output.dense, block.attention.o.weight, block.attention.o.bias),
        (att.output.LayerNorm, block.norm1.weight, block.norm1.bias),
        (layer.intermediate.dense, block.ffn.intermediate.weight, block.ffn.intermediate.bias),
        (layer.output.dense, block.ffn.output.weight, block.ffn.output.bias),
        (layer.output.LayerNorm, block.norm2.weight, block.norm2.bias),
    ]
    with torch.no_grad():
        for module, w, b in pairs:
            module.weight.copy_(w)
            module.bias.copy_(b)
    return layer


def test_post_norm_equals_transformers_bert_layer() -> None:
    block = _block(False)
    ref = _hf_bert_layer(block)
    x = torch.randn(2, 4, HID)
    keep, additive = _padding()
    with torch.no_grad():
        want = ref(x, attention_mask=additive)
        want = want[0] if isinstance(want, tuple) else want
        got = block(x, additive)[0]
    torch.testing.assert_close(got[keep.bool()], want[keep.bool()], atol=1e-5, rtol=1e-5)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * w + b


def test_pre_norm_equals_written_out_formula() -> None:
    """x + attn(LN1(x)), then + ffn(LN2(.)), with attention and GELU written by hand."""
    block = _block(True, act="gelu_new")
    p = {n: t.detach() for n, t in block.named_parameters()}
    x = torch.randn(2, 4, HID)
    _, additive = _padding()
    d = HID // HEADS

    h = _layer_norm(x, p["norm1.weight"], p["norm1.bias"])
    qkv = h @ p["attention.qkv.weight"].T + p["attention.qkv.bias"]
    q, k, v = (t.view(2, 4, HEADS, d).transpose(1, 2) for t in qkv.split(HID, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + additive
    ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 4, HID)
    x1 = x + ctx @ p["attention.o.weight"].T + p["attention.o.bias"]
    h = _layer_norm(x1, p["norm2.weight"], p["norm2.bias"])
    inner = h @ p["ffn.intermediate.weight"].T + p["ffn.intermediate.bias"]
    act = 0.5 * inner * (1 + torch.tanh(math.sqrt(2 / math.pi) * (inner + 0.044715 * inner**3)))
    want = x1 + act @ p["ffn.output.weight"].T + p["ffn.output.bias"]

    with torch.no_grad():
        got = block(x, additive)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training() -> None:
    """Eval equals the dropout-free reference; training mode drops (two calls differ, and
    differ from eval); with rates 0 training mode equals eval."""
    block = _block(False)
    ref = _hf_bert_layer(block)
    x = torch.randn(2, 4, HID)
    with torch.no_grad():
        want = ref(x)
        want = want[0] if isinstance(want, tuple) else want
        torch.testing.assert_close(block(x)[0], want, atol=1e-5, rtol=1e-5)
        block.train()
        first, second = block(x)[0], block(x)[0]
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, want, atol=1e-3)
    no_drop = _block(False, dropout=0.0).train()
    with torch.no_grad():
        torch.testing.assert_close(no_drop(x)[0], no_drop.eval()(x)[0])
