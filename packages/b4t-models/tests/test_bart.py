"""bart against a tiny random transformers BartForConditionalGeneration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.kv_cache import KVCache

transformers = pytest.importorskip("transformers")

SIZES = dict(
    vocab_size=60, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=40, max_position_embeddings=40,
)  # fmt: skip
ATOL = 1e-5
PAD, START = 1, 2


def make(tmp_path: Path, spread: bool = False, **more: Any) -> tuple[Any, Any, Path]:
    torch.manual_seed(0)
    hf = transformers.BartForConditionalGeneration(transformers.BartConfig(**{**SIZES, **more}))
    hf.eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_()
        if spread:  # larger logits, so greedy and beam choices are not near-ties
            hf.model.shared.weight.mul_(3.0)
    path = tmp_path / "bart"
    hf.save_pretrained(path)
    return hf, build_transformer_model(checkpoint_path=path, model="bart").eval(), path


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    enc = torch.randint(3, 60, (3, 9), generator=g)
    enc[1, 6:] = PAD
    enc[2, 3:] = PAD
    dec = torch.randint(3, 60, (3, 7), generator=g)
    dec[:, 0] = START
    return enc, dec


def test_logits_equal_transformers_on_padded_batches(tmp_path: Path) -> None:
    hf, ours, _ = make(tmp_path)
    enc, dec = batch()
    keep = enc.ne(PAD)
    with torch.no_grad():
        memory, _, logits = ours([enc, dec])
        ref = hf(input_ids=enc, attention_mask=keep.long(), decoder_input_ids=dec)
    torch.testing.assert_close(memory[keep], ref.encoder_last_hidden_state[keep], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=ATOL, rtol=0)


def test_encoder_decoder_predict_and_cache(tmp_path: Path) -> None:
    _, ours, _ = make(tmp_path)
    enc, dec = batch()
    keep = enc.ne(PAD)
    with torch.no_grad():
        full = ours([enc, dec])[-1]
        encoded = ours.encoder.predict([enc])
        torch.testing.assert_close(
            ours.decoder.predict([dec, *encoded])[-1], full, atol=ATOL, rtol=0
        )
        memory = ours.encode(enc, keep)
        parts, cache = [], None
        for start, stop in ((0, 3), (3, 4), (4, 7)):
            step, cache = ours.decode(dec[:, start:stop], memory, keep, cache)
            parts.append(step)
        assert isinstance(cache, KVCache) and cache.seq_len == 7
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=ATOL, rtol=0)
        with pytest.raises(ValueError, match="position table has 40 rows"):
            ours.decode(torch.full((3, 34), 5), memory, keep, cache)


def test_save_weights_round_trip(tmp_path: Path) -> None:
    _, ours, _ = make(tmp_path)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = tmp_path / "saved"
    ours.save_pretrained(out)
    reloaded = transformers.BartForConditionalGeneration.from_pretrained(out).eval()
    enc, dec = batch()
    with torch.no_grad():
        ref = reloaded(input_ids=enc, attention_mask=enc.ne(PAD).long(), decoder_input_ids=dec)
        torch.testing.assert_close(ours([enc, dec])[-1], ref.logits, atol=ATOL, rtol=0)


def test_seq2seq_generation_equals_transformers_generate(tmp_path: Path) -> None:
    generation = pytest.importorskip("b4t.generation")
    hf, ours, _ = make(tmp_path, spread=True, decoder_layers=2)
    sources = [[5, 6, 7, 8, 2], [20, 21, 2], [33, 4, 40, 41, 9, 2]]
    for topk, extra in ((1, {}), (3, {"num_beams": 3, "length_penalty": 0.0})):
        gen = generation.Seq2SeqGeneration(
            ours, start_id=START, end_id=None, maxlen=8, mode="beam_search", pad_id=PAD
        )
        for src in sources:
            ids = torch.tensor([src])
            with torch.no_grad():
                ref = hf.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                    min_new_tokens=8, do_sample=False, eos_token_id=None,
                    forced_eos_token_id=None, forced_bos_token_id=None,
                    decoder_start_token_id=START, **extra,
                )[0, 1:].tolist()  # fmt: skip
            assert gen.generate(src, topk=topk) == ref, (topk, src)
        padded = gen.batch_generate(sources, topk=topk)
        assert padded == [gen.generate(s, topk=topk) for s in sources]


def test_headless_bart_model_checkpoint(tmp_path: Path) -> None:
    """A ``BartModel`` checkpoint (no ``model.`` prefix, no LM head): zero logits bias."""
    torch.manual_seed(0)
    base = transformers.BartModel(transformers.BartConfig(**SIZES)).eval()
    base.save_pretrained(tmp_path / "base")
    ours = build_transformer_model(checkpoint_path=tmp_path / "base", model="bart").eval()
    enc, dec = batch()
    keep = enc.ne(PAD)
    with torch.no_grad():
        ref = base(input_ids=enc, attention_mask=keep.long(), decoder_input_ids=dec)
        _, hidden, logits = ours([enc, dec])
    torch.testing.assert_close(hidden, ref.last_hidden_state, atol=ATOL, rtol=0)
    expected = hidden @ base.shared.weight.T
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
    assert not ours.decoder.final_logits_bias.any()
