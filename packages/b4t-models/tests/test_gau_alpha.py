"""GAU-alpha: structure, a written-out reference of its layers, and an exact round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from b4t.models.build import build_transformer_model

CONFIG = {
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "attention_key_size": 8,
    "intermediate_size": 24,
    "hidden_act": "swish",
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-12)


def _rope(x: torch.Tensor) -> torch.Tensor:
    seq, d = x.shape[-2:]
    pos = torch.arange(seq, dtype=torch.float64)[:, None]
    angle = pos * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = angle.cos().float(), angle.sin().float()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], -1).flatten(-2)


def _reference(sd: dict[str, torch.Tensor], ids: torch.Tensor, segs: torch.Tensor):
    """GAU-alpha from its description, on the checkpoint tensors."""
    keep = ids.ne(0)
    n = keep.sum(-1).float()[:, None, None]  # visible keys per row
    x = _rms(
        sd["embeddings.word_embeddings.weight"][ids]
        + sd["embeddings.segment_embeddings.weight"][segs]
    )
    e, s = CONFIG["intermediate_size"], CONFIG["attention_key_size"]
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"encoderLayer.{i}.gau."
        h = F.silu(x @ sd[p + "i_dense.weight"].T)
        u, v, z = h[..., :e], h[..., e : 2 * e], h[..., 2 * e :]
        gamma = sd[p + "offsetscale.gamma"]
        q, k = _rope(z * gamma[0]), _rope(z * gamma[1])
        scores = q @ k.transpose(-1, -2) / math.sqrt(s) * torch.log(n) / math.log(512)
        scores = scores.masked_fill(~keep[:, None, :], -1e30)
        out = (u * (torch.softmax(scores, -1) @ v)) @ sd[p + "o_dense.weight"].T
        x = _rms(x + out)
    return x, x @ sd["embeddings.word_embeddings.weight"].T


def test_gau_alpha_structure_formula_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_transformer_model(CONFIG, model="gau_alpha", with_mlm=True).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn_like(param) * 0.3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not [n for n in trainable if "bias" in n or "norm" in n or "beta" in n]
    assert len(model.layers) == 2 and all(hasattr(layer, "gau") for layer in model.layers)

    path = tmp_path / "gau.safetensors"
    model.save_pretrained(path)
    sd = load_file(path)
    assert sorted(sd) == sorted(
        ["embeddings.word_embeddings.weight", "embeddings.segment_embeddings.weight"]
        + [
            f"encoderLayer.{i}.gau.{n}"
            for i in range(2)
            for n in ("i_dense.weight", "o_dense.weight", "offsetscale.gamma")
        ]
    )

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (2, 10), generator=g)
    segs = torch.zeros(2, 10, dtype=torch.long)
    segs[0, 6:] = 1
    ids[1, 6:] = 0
    with torch.no_grad():
        hidden, scores = model([ids, segs])
        ref_hidden, ref_scores = _reference(sd, ids, segs)
    keep = ids.ne(0)[..., None]
    torch.testing.assert_close(hidden * keep, ref_hidden * keep, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores * keep, ref_scores * keep, atol=1e-4, rtol=1e-5)

    loaded = build_transformer_model(CONFIG, path, model="gau_alpha", with_mlm=True).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(loaded([ids, segs])[0], hidden)


def test_gau_alpha_bad_key_size_is_named():
    with pytest.raises(ValueError, match="attention_key_size"):
        build_transformer_model({**CONFIG, "attention_key_size": "big"}, model="gau_alpha")
