"""The encoder-decoder families are data read by one composed class (b4t.models.seq2seq)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from b4t.models import build_transformer_model, get_variant
from b4t.models.encoder_decoder import EncoderDecoder, Seq2SeqStack
from b4t.models.seq2seq import BART, T5, BartStack, GenericStack, SeedTransformer, T5Stack
from b4t.models.variants.bart import SeedBART, SeedBartStack
from b4t.models.variants.gpt2_ml import GPT2ML, Gpt2MlBlock

BART_CONFIG = dict(
    model_type="bart", vocab_size=61, d_model=32, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
    decoder_ffn_dim=37, max_position_embeddings=24, pad_token_id=1, dropout=0.0,
)  # fmt: skip


def test_each_family_is_the_one_composed_class_named_not_a_subclass_of_another() -> None:
    models = (T5, BART, SeedTransformer, SeedBART)
    stacks = (T5Stack, BartStack, GenericStack, SeedBartStack)
    for classes, base in ((models, EncoderDecoder), (stacks, Seq2SeqStack)):
        for cls in classes:
            assert cls.__bases__ == (base,), cls
            assert not any(issubclass(cls, other) for other in classes if other is not cls)


def _bart_and_seed_bart(tmp_path: Path) -> tuple[Any, Any]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BART_CONFIG))
    torch.manual_seed(0)
    bart = build_transformer_model(config_path=path, model="bart").eval()
    rows = BART_CONFIG["max_position_embeddings"]  # 0.2.5's converted table: no offset rows
    seed_layout = get_variant("bart").resolve(  # type: ignore[misc]
        {"encoder.embed_positions.weight": torch.zeros(rows, 1)}, BART_CONFIG
    )
    seed = build_transformer_model(config_path=path, model=seed_layout).eval()
    state = bart.state_dict()
    for stack in ("encoder", "decoder"):
        key = f"{stack}.position_embeddings.weight"
        state[key] = state[key][2:]  # position p: BART's row p + 2, the seed layout's row p
    seed.load_state_dict(state)
    return bart, seed


def test_seed_bart_is_bart_with_its_stack_data_changed(tmp_path: Path) -> None:
    """SeedBART differs from BART only by two fields of its StackSpec: positions without
    offset (same logits from the shifted table) and a decoder that masks its padding."""
    bart, seed = _bart_and_seed_bart(tmp_path)
    assert type(seed) is not type(bart) and type(seed.decoder).spec.position_offset == 0
    g = torch.Generator().manual_seed(1)
    enc = torch.randint(3, 61, (2, 9), generator=g)
    enc[1, 6:] = 1
    dec = torch.randint(3, 61, (2, 6), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(seed([enc, dec])[-1], bart([enc, dec])[-1])
        padded = dec.clone()
        padded[1, 2] = 1  # a padded key inside the decoder input: only the seed masks it
        ours, theirs = seed([enc, padded])[-1], bart([enc, padded])[-1]
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1, :2], theirs[1, :2])  # before the pad: causal
    assert not torch.allclose(ours[1, 2:], theirs[1, 2:], atol=1e-4)


def test_gpt2_ml_builds_its_block_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2)
    path.write_text(json.dumps(dict(config, intermediate_size=24, max_position_embeddings=32)))
    model = build_transformer_model(config_path=path, model="gpt2_ml")
    assert GPT2ML.block_cls is Gpt2MlBlock
    assert [type(layer) for layer in model.layers] == [Gpt2MlBlock, Gpt2MlBlock]
