"""model='transformer_xl': memory, masks, adaptive embedding, loading and errors.

The comparison with bert4torch 0.2.5 on the same weights is tests/seed/test_seed_xl.py;
here the references are properties any causal relative-position model must have.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import CheckpointError, build_transformer_model
from b4t.models.variants.transformer_xl import XLState

CONFIG = {
    "vocab_size": 45,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def build(**kwargs: Any) -> Any:
    torch.manual_seed(0)
    model = build_transformer_model(dict(CONFIG), model="transformer_xl", **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 45, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kwargs", [{}, {"pre_lnorm": True}])
def test_memory_of_the_first_segment_equals_one_long_forward(kwargs: dict) -> None:
    """Causal + relative: segment 2 with segment 1 as memory = the tail of [1; 2]."""
    model = build(mem_len=6, **kwargs)
    first, second = ids(2, 6), ids(2, 4, seed=2)
    with torch.no_grad():
        full = model([torch.cat([first, second], 1)])
        head = model([first])
        tail = model([second], mems=model.mems)
    torch.testing.assert_close(head, full[:, :6], atol=1e-5, rtol=0)
    torch.testing.assert_close(tail, full[:, 6:], atol=1e-5, rtol=0)
    assert [m.shape for m in model.mems] == [(2, 6, 32)] * 2


def test_memory_keeps_the_last_mem_len_steps() -> None:
    model = build(mem_len=3)
    with torch.no_grad():
        model([ids(1, 5)])
        inputs = model.embeddings(ids(1, 5))
    torch.testing.assert_close(model.mems[0], inputs[:, -3:])


def test_causal_mask_outputs_ignore_the_future() -> None:
    model = build()
    x = ids(2, 7)
    y = x.clone()
    y[:, 4:] = ids(2, 3, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(model([x])[:, :4], model([y])[:, :4], atol=1e-6, rtol=0)


def test_same_length_limits_every_query_to_the_same_span() -> None:
    model = build(same_length=True, mem_len=2)
    keep = model.keep_mask(XLState(token_ids=ids(1, 4)), 4, 2)[0, 0]
    # key j = i + mlen is query i itself; with klen 6 - mem_len 2 = 4 > 0 every query
    # sees mem_len = 2 keys: itself and the one before (Transformer-XL's formula)
    expected = torch.tensor(
        [[i < j <= i + 2 for j in range(6)] for i in range(4)], dtype=torch.bool
    )
    assert torch.equal(keep, expected)


def test_adaptive_embedding_bands() -> None:
    model = build(adaptive_embedding=True, cutoffs=[10, 30], div_val=2, embedding_size=16)
    emb = model.embeddings
    assert [e.weight.shape for e in emb.emb_layers] == [(10, 16), (20, 8), (15, 4)]
    token = torch.tensor([[3, 12, 40]])
    with torch.no_grad():
        out = emb(token)
        band2 = emb.emb_layers[2].weight[40 - 30] @ emb.emb_projs[2].T
    torch.testing.assert_close(out[0, 2], band2 * math.sqrt(32))
    assert model([token]).shape == (1, 3, 32)


def test_with_lm_returns_hidden_and_logits() -> None:
    model = build(with_lm=True)
    x = ids(2, 5)
    with torch.no_grad():
        hidden, logits = model([x])
    torch.testing.assert_close(
        logits, hidden @ model.lm_head.weight.T + model.lm_head.bias, atol=1e-5, rtol=0
    )


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build(with_lm=True, adaptive_embedding=True, cutoffs=[20], div_val=2)
    path = tmp_path / "xl"
    model.save_pretrained(path)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    files = list(path.iterdir()) if path.is_dir() else [path]
    again = build_transformer_model(
        tmp_path / "config.json",
        path,
        model="transformer_xl",
        with_lm=True,
        adaptive_embedding=True,
        cutoffs=[20],
        div_val=2,
    ).eval()
    assert files
    x = ids(2, 5)
    with torch.no_grad():
        for a, b in zip(again([x]), model([x]), strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"'gpt2' config but this is model='transformer_xl'"):
        build_transformer_model(tmp_path / "config.json", model="transformer_xl")
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    bert = build_transformer_model(dict(CONFIG), model="bert")
    torch.save(bert.state_dict(), tmp_path / "bert.bin")
    with pytest.raises(CheckpointError, match=r"encoderLayer\.0\.multiHeadAttention"):
        build_transformer_model(
            tmp_path / "config.json", tmp_path / "bert.bin", model="transformer_xl"
        )


def test_bad_inputs_name_the_problem() -> None:
    model = build(mem_len=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model([ids(1, 3) + 45])
    model([ids(2, 3)])
    with pytest.raises(ValueError, match="mems are for a batch of 2"):
        model([ids(1, 3)], mems=model.mems)
    with pytest.raises(ValueError, match="mems holds 1 tensors"):
        model([ids(2, 3)], mems=model.mems[:1])
    with pytest.raises(ValueError, match="attn_type"):
        build(attn_type="bi")
    with pytest.raises(ValueError, match="adaptive_embedding=True"):
        build(embedding_size=16)


def test_keep_tokens_selects_vocabulary_rows(tmp_path: Path) -> None:
    model = build(with_lm=True)
    model.save_pretrained(tmp_path / "xl.bin")
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    keep = [0, 3, 7, 11, 20, 44]
    small = build_transformer_model(
        tmp_path / "config.json",
        tmp_path / "xl.bin",
        model="transformer_xl",
        with_lm=True,
        keep_tokens=keep,
    ).eval()
    old = torch.tensor([[3, 7, 44, 20]])
    new = torch.tensor([[keep.index(int(t)) for t in old[0]]])
    with torch.no_grad():
        torch.testing.assert_close(small([new])[1], model([old])[1][..., keep])


def test_gradient_checkpoint_gives_the_same_gradients() -> None:
    x = ids(2, 6)
    grads = []
    for flag in (False, True):
        model = build(gradient_checkpoint=flag, with_lm=True).train()
        model.zero_grad()
        model([x])[1].square().mean().backward()
        grads.append(model.layers[0].multiHeadAttention.q.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
