"""RoFormer parity with transformers; RoFormer-v2 structure, formula and round trip."""

from __future__ import annotations

import math

import pytest
import torch

from b4t.models.build import build_transformer_model

transformers = pytest.importorskip("transformers")


def _scramble(model: torch.nn.Module, std: float = 0.3) -> None:
    """Replace transformers' small init (std 0.02) with larger weights, so that every
    term (rotary, relative positions) moves the outputs far beyond the tolerance."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # not RoFormer's fixed sinusoid table
                param.copy_(torch.randn_like(param) * std)


def _batch(vocab: int, seq: int = 11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two padded two-segment rows (pad id 0)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (2, seq), generator=g)
    segments = torch.zeros(2, seq, dtype=torch.long)
    segments[0, 6:] = 1
    segments[1, 4:7] = 1
    ids[1, 7:] = 0
    segments[1, 7:] = 0
    return ids, segments, ids.ne(0)


def _tiny_roformer(tmp_path, embedding_size: int):
    config = transformers.RoFormerConfig(
        vocab_size=60,
        embedding_size=embedding_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        hidden_act="gelu",
        pad_token_id=0,
    )
    torch.manual_seed(0)
    ref = transformers.RoFormerForMaskedLM(config).eval()
    _scramble(ref)
    ref.save_pretrained(tmp_path / "hf")
    return ref


@pytest.mark.parametrize("embedding_size", [16, 8])
def test_roformer_matches_transformers_and_round_trips(tmp_path, embedding_size: int):
    ref = _tiny_roformer(tmp_path, embedding_size)
    model = build_transformer_model(
        tmp_path / "hf", tmp_path / "hf", model="roformer", with_mlm=True
    ).eval()
    ids, segs, mask = _batch(60)
    with torch.no_grad():
        hidden, scores = model([ids, segs])
        out = ref(
            input_ids=ids, token_type_ids=segs, attention_mask=mask, output_hidden_states=True
        )
    torch.testing.assert_close(hidden, out.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, out.logits, atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path / "b4t")
    back = transformers.RoFormerForMaskedLM.from_pretrained(tmp_path / "b4t").eval()
    with torch.no_grad():
        again = back(input_ids=ids, token_type_ids=segs, attention_mask=mask)
    torch.testing.assert_close(again.logits, out.logits, atol=1e-5, rtol=1e-5)


def test_roformer_too_long_sequence_names_the_limit(tmp_path):
    _tiny_roformer(tmp_path, 16)
    model = build_transformer_model(tmp_path / "hf", tmp_path / "hf", model="roformer")
    with pytest.raises(ValueError, match="max_position=32"):
        model(torch.ones(1, 33, dtype=torch.long))


V2_CONFIG = {
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "hidden_act": "relu",
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-12)


def _rope(x: torch.Tensor) -> torch.Tensor:
    """Rotate ``(..., seq, d)`` pair by pair with the RoFormer angles."""
    seq, d = x.shape[-2:]
    pos = torch.arange(seq, dtype=torch.float64)[:, None]
    angle = pos * 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = angle.cos().float(), angle.sin().float()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], -1).flatten(-2)


def _v2_reference(
    sd: dict[str, torch.Tensor], ids, segs, mask
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoFormer-v2 written from its description, on the checkpoint tensors."""
    p = "roformer."
    x = sd[p + "embeddings.word_embeddings.weight"][ids]
    x = _rms(x + sd[p + "embeddings.token_type_embeddings.weight"][segs])
    b, seq, h = x.shape
    heads, d = 2, h // 2
    bias = (~mask)[:, None, None, :].float() * -1e30
    for i in range(V2_CONFIG["num_hidden_layers"]):
        lp = f"{p}encoder.layer.{i}."

        def proj(name: str, t: torch.Tensor, lp: str = lp) -> torch.Tensor:
            return t @ sd[lp + name + ".weight"].T

        q, k, v = (
            proj(f"attention.self.{n}", x).view(b, seq, heads, d).transpose(1, 2)
            for n in ("query", "key", "value")
        )
        att = torch.softmax(_rope(q) @ _rope(k).transpose(-1, -2) / math.sqrt(d) + bias, -1)
        ctx = (att @ v).transpose(1, 2).reshape(b, seq, h)
        x = _rms(x + proj("attention.output.dense", ctx))
        x = _rms(x + proj("output.dense", torch.relu(proj("intermediate.dense", x))))
    return x, x @ sd[p + "embeddings.word_embeddings.weight"].T


def test_roformer_v2_structure_formula_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_transformer_model(V2_CONFIG, model="roformer_v2", with_mlm=True).eval()
    # no biases and no trainable norm gains anywhere
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not [n for n in names if n.endswith("bias") or "norm" in n]
    mapping = model.variable_mapping()
    assert all(v is None or "bias" not in str(v) for v in mapping.values())

    model.save_weights(tmp_path / "v2.safetensors")
    from safetensors.torch import load_file

    sd = load_file(tmp_path / "v2.safetensors")
    assert "roformer.encoder.layer.1.attention.self.query.weight" in sd
    assert not [k for k in sd if "bias" in k or "LayerNorm" in k]

    ids, segs, mask = _batch(40)
    with torch.no_grad():
        hidden, scores = model([ids, segs])
        ref_hidden, ref_scores = _v2_reference(sd, ids, segs, mask)
    keep = mask[..., None]
    torch.testing.assert_close(hidden * keep, ref_hidden * keep, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores * keep, ref_scores * keep, atol=1e-4, rtol=1e-5)

    loaded = build_transformer_model(
        V2_CONFIG, tmp_path / "v2.safetensors", model="roformer_v2", with_mlm=True
    ).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_roformer_unilm_source_ignores_target(tmp_path):
    """With application='unilm', source tokens (segment 0) never see the target."""
    _tiny_roformer(tmp_path, 16)
    model = build_transformer_model(
        tmp_path / "hf", tmp_path / "hf", model="roformer", application="unilm"
    ).eval()
    ids = torch.randint(1, 60, (1, 10))
    segs = torch.tensor([[0] * 6 + [1] * 4])
    other = ids.clone()
    other[0, 8:] = torch.randint(1, 60, (2,))
    other[0, 8] = (ids[0, 8] % 58) + 1  # surely different
    with torch.no_grad():
        a, b = model([ids, segs])[0], model([other, segs])[0]  # unilm adds the MLM head
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])
