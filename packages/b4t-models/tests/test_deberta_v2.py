"""DeBERTa-v2/v3 parity with transformers on padded two-segment batches, and round trip."""

from __future__ import annotations

import pytest
import torch

from b4t.models.build import build_transformer_model

transformers = pytest.importorskip("transformers")


def _scramble(model: torch.nn.Module, std: float = 0.3) -> None:
    """Replace transformers' small init (std 0.02) with larger weights, so that every
    term (rotary, relative positions) moves the outputs far beyond the tolerance."""
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * std)


CASES = {
    # v3-like: shared keys, log buckets, normed relative table, no absolute positions
    "v3": dict(
        share_att_key=True,
        position_buckets=8,
        norm_rel_ebd="layer_norm",
        position_biased_input=False,
        type_vocab_size=2,
        pos_att_type="p2c|c2p",
        legacy=True,
    ),
    # v2-like: separate position projections, no buckets, absolute positions, E != H
    "v2": dict(
        share_att_key=False,
        position_buckets=-1,
        max_relative_positions=12,
        position_biased_input=True,
        type_vocab_size=0,
        pos_att_type=["c2p", "p2c"],
        embedding_size=8,
        legacy=True,
    ),
    # DeBERTa-v2-xlarge's convolution beside the first layer
    "conv": dict(
        conv_kernel_size=3,
        conv_act="gelu",
        position_buckets=8,
        type_vocab_size=2,
        pos_att_type="p2c|c2p",
        position_biased_input=False,
        legacy=True,
    ),
    # one term only and the newer MLM head
    "c2p": dict(
        position_buckets=6,
        type_vocab_size=2,
        pos_att_type="c2p",
        position_biased_input=False,
        legacy=False,
    ),
}


def _batch(seq: int = 13) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 70, (2, seq), generator=g)
    segs = torch.zeros(2, seq, dtype=torch.long)
    segs[0, 7:] = 1
    segs[1, 4:9] = 1
    ids[1, 9:] = 0
    segs[1, 9:] = 0
    return ids, segs, ids.ne(0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_deberta_v2_matches_transformers_and_round_trips(tmp_path, case: str):
    config = transformers.DebertaV2Config(
        vocab_size=70,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=40,
        relative_attention=True,
        pad_token_id=0,
        **CASES[case],
    )
    torch.manual_seed(0)
    ref = transformers.DebertaV2ForMaskedLM(config).eval()
    _scramble(ref)
    ref.save_pretrained(tmp_path / "hf")
    model = build_transformer_model(
        tmp_path / "hf", tmp_path / "hf", model="deberta_v2", with_mlm=True
    ).eval()
    ids, segs, mask = _batch()
    inputs = dict(input_ids=ids, attention_mask=mask.long())
    if config.type_vocab_size:
        inputs["token_type_ids"] = segs
    with torch.no_grad():
        hidden, scores = model([ids, segs if config.type_vocab_size else None])
        out = ref(**inputs, output_hidden_states=True)
    torch.testing.assert_close(hidden, out.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, out.logits, atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path / "b4t")
    back = transformers.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "b4t").eval()
    with torch.no_grad():
        again = back(**inputs)
    torch.testing.assert_close(again.logits, out.logits, atol=1e-5, rtol=1e-5)


def test_deberta_v2_unsupported_config_is_named(tmp_path):
    config = {
        "vocab_size": 30,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "conv_kernel_size": 2,
    }
    with pytest.raises(ValueError, match="conv_kernel_size"):
        build_transformer_model(config, model="deberta_v2")
    config["conv_kernel_size"] = 0
    config["pos_att_type"] = "c2p|p3c"
    with pytest.raises(ValueError, match="pos_att_type"):
        build_transformer_model(config, model="deberta_v2")


def test_deberta_v2_gradient_checkpoint_gives_same_grads():
    """The relative tables and the conv hook survive activation checkpointing."""
    config = {
        "vocab_size": 40,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "relative_attention": True,
        "pos_att_type": "p2c|c2p",
        "position_buckets": 8,
        "conv_kernel_size": 3,
    }
    torch.manual_seed(0)
    model = build_transformer_model(
        config,
        model="deberta_v2",
        with_mlm=True,
        gradient_checkpoint=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ).train()
    ids = torch.randint(1, 40, (2, 9))
    ids[1, 6:] = 0
    grads = []
    for checkpointing in (True, False):
        model.gradient_checkpoint = checkpointing
        model.zero_grad()
        model([ids])[1].square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "conv.conv.weight" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)
