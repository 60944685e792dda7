"""NEZHA against a written-out reference of its relative-position attention.

transformers 5 no longer ships NEZHA, so the reference is the formula itself, evaluated
on the tensors of the saved checkpoint.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from b4t.models.build import build_transformer_model

CONFIG = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "hidden_act": "gelu",
    "max_position_embeddings": 64,
    "max_relative_position": 3,
    "type_vocab_size": 2,
}


def _relative_table(seq: int, depth: int, max_rel: int) -> torch.Tensor:
    """R[i, j] = [sin(r w_0), cos(r w_0), sin(r w_1), ...] with r = clip(j - i) + max_rel."""
    out = torch.empty(seq, seq, depth)
    for i in range(seq):
        for j in range(seq):
            r = max(-max_rel, min(max_rel, j - i)) + max_rel
            for k in range(depth // 2):
                w = 10000 ** (-2 * k / depth)
                out[i, j, 2 * k] = math.sin(r * w)
                out[i, j, 2 * k + 1] = math.cos(r * w)
    return out


def _reference(sd: dict[str, torch.Tensor], ids: torch.Tensor, segs: torch.Tensor):
    def lin(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    def ln(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], 1e-12)

    keep = ids.ne(0)
    x = sd["bert.embeddings.word_embeddings.weight"][ids]
    x = ln(
        x + sd["bert.embeddings.token_type_embeddings.weight"][segs], "bert.embeddings.LayerNorm"
    )
    b, seq, h = x.shape
    heads, d = 2, h // 2
    rel = _relative_table(seq, d, CONFIG["max_relative_position"])
    for layer in range(CONFIG["num_hidden_layers"]):
        p = f"bert.encoder.layer.{layer}."
        q, k, v = (
            lin(x, p + f"attention.self.{n}").view(b, seq, heads, d)
            for n in ("query", "key", "value")
        )
        ctx = torch.zeros(b, seq, heads, d)
        for bi in range(b):
            for hi in range(heads):
                for i in range(seq):
                    js = [j for j in range(seq) if keep[bi, j]]
                    s = torch.stack([q[bi, i, hi] @ (k[bi, j, hi] + rel[i, j]) for j in js])
                    prob = torch.softmax(s / math.sqrt(d), -1)
                    ctx[bi, i, hi] = sum(pj * (v[bi, j, hi] + rel[i, j]) for pj, j in zip(prob, js))
        x = ln(
            x + lin(ctx.reshape(b, seq, h), p + "attention.output.dense"),
            p + "attention.output.LayerNorm",
        )
        inner = F.gelu(lin(x, p + "intermediate.dense"))
        x = ln(x + lin(inner, p + "output.dense"), p + "output.LayerNorm")
    pooled = torch.tanh(lin(x[:, 0], "bert.pooler.dense"))
    t = ln(F.gelu(lin(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    # the MLM decoder is its own weight (0.2.5's default), saved untied
    scores = t @ sd["cls.predictions.decoder.weight"].T + sd["cls.predictions.decoder.bias"]
    return x, pooled, scores


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_transformer_model(CONFIG, model="nezha", with_pool=True, with_mlm=True).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    path = tmp_path_factory.mktemp("nezha") / "model.safetensors"
    model.save_pretrained(path)
    return model, path


def test_nezha_matches_written_out_formula(saved):
    model, path = saved
    sd = load_file(path)
    assert not [k for k in sd if "position_embeddings" in k]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (2, 9), generator=g)
    segs = torch.zeros(2, 9, dtype=torch.long)
    segs[0, 5:] = 1
    segs[1, 3:6] = 1
    ids[1, 6:] = 0
    segs[1, 6:] = 0
    with torch.no_grad():
        hidden, pooled, scores = model([ids, segs])
        ref_hidden, ref_pooled, ref_scores = _reference(sd, ids, segs)
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref_pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)


def test_nezha_load_round_trip_is_exact(saved):
    model, path = saved
    loaded = build_transformer_model(CONFIG, path, model="nezha", with_pool=True, with_mlm=True)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_nezha_bad_max_relative_position_is_named():
    with pytest.raises(ValueError, match="max_relative_position"):
        build_transformer_model({**CONFIG, "max_relative_position": 0}, model="nezha")
