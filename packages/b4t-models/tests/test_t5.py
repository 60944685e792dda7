"""t5 / t5.1.1 / mt5.1.1 against tiny random transformers models (the numeric reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.kv_cache import KVCache

transformers = pytest.importorskip("transformers")

SIZES = dict(
    vocab_size=60, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
    num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
)  # fmt: skip
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "t5": ("T5Config", "T5ForConditionalGeneration", {"feed_forward_proj": "relu"}),
    "t5.1.1": (
        "T5Config",
        "T5ForConditionalGeneration",
        {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    ),
    "mt5.1.1": ("MT5Config", "MT5ForConditionalGeneration", {"tie_word_embeddings": False}),
}
ATOL = 1e-5


def make(name: str, tmp_path: Path, spread: bool = False, **more: Any) -> tuple[Any, Any, Path]:
    cfg, cls, extra = CASES[name]
    torch.manual_seed(0)
    config = getattr(transformers, cfg)(**{**SIZES, **extra, **more})
    hf = getattr(transformers, cls)(config).eval()
    if spread:  # larger logits, so greedy and beam choices are not near-ties
        with torch.no_grad():
            hf.shared.weight.mul_(3.0)
    path = tmp_path / name
    hf.save_pretrained(path)
    return hf, build_transformer_model(checkpoint_path=path, model=name).eval(), path


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    enc = torch.randint(2, 60, (3, 9), generator=g)
    enc[1, 6:] = 0  # right padding
    enc[2, 3:] = 0
    dec = torch.randint(2, 60, (3, 7), generator=g)
    dec[:, 0] = 0  # decoder start token
    return enc, dec


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_equal_transformers_on_padded_batches(name: str, tmp_path: Path) -> None:
    hf, ours, _ = make(name, tmp_path)
    enc, dec = batch()
    with torch.no_grad():
        memory, hidden, logits = ours([enc, dec])
        ref = hf(input_ids=enc, attention_mask=enc.ne(0).long(), decoder_input_ids=dec)
    keep = enc.ne(0)
    torch.testing.assert_close(memory[keep], ref.encoder_last_hidden_state[keep], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=ATOL, rtol=0)
    assert hidden.shape == (3, 7, 32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_style_encoder_decoder_predict_and_cache(name: str, tmp_path: Path) -> None:
    _, ours, _ = make(name, tmp_path)
    enc, dec = batch()
    with torch.no_grad():
        full = ours([enc, dec])[-1]
        encoded = ours.encoder.predict([enc])  # [hidden, mask [B, 1, 1, S]] as the seed
        assert encoded[1].shape == (3, 1, 1, 9)
        _, logits = ours.decoder.predict([dec, *encoded])
        torch.testing.assert_close(logits, full, atol=ATOL, rtol=0)
        memory = ours.encode(enc, enc.ne(0))
        parts, cache = [], None
        for start, stop in ((0, 3), (3, 4), (4, 7)):
            step, cache = ours.decode(dec[:, start:stop], memory, enc.ne(0), cache)
            parts.append(step)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=ATOL, rtol=0)
    assert isinstance(cache, KVCache) and cache.seq_len == 7 and len(cache.cross) == 3
    order = torch.tensor([2, 2, 0])
    with torch.no_grad():
        again = ours([enc[order], torch.cat([dec[order], dec[:, :1] * 0 + 5], 1)])[-1]
    beams = cache.index_select(order)  # a new cache; the old one stays as it was
    in_place = cache.index_select(torch.arange(3)).index_select(torch.tensor([0, 1, 2, 2]))
    in_place.reorder(torch.tensor([3, 3, 0]))  # rows 2, 2, 0 of the original, in place
    assert cache.batch_size == 3 and beams.batch_size == 3 and in_place.batch_size == 3
    for selected in (beams, in_place):
        # the cross-attention keys/values follow the rows: the memory is not read again
        assert all(kv is not None and kv[0].shape[0] == 3 for kv in selected.cross)
        with torch.no_grad():
            step, _ = ours.decode(
                dec[order, 6:7] * 0 + 5, memory[order] * 0, enc.ne(0)[order], selected
            )
        torch.testing.assert_close(step[:, -1], again[:, -1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_weights_round_trip(name: str, tmp_path: Path) -> None:
    _, ours, _ = make(name, tmp_path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    out = tmp_path / "saved"
    ours.save_pretrained(out)
    reloaded = getattr(transformers, CASES[name][1]).from_pretrained(out).eval()
    enc, dec = batch()
    with torch.no_grad():
        ref = reloaded(input_ids=enc, attention_mask=enc.ne(0).long(), decoder_input_ids=dec)
        # the perturbed logits reach |10|: torch's float32 rtol (1.3e-6) on top of ATOL
        # (torch 2.6's kernels differ by 1.24e-5 at 9.8 there, 1.3e-6 relative)
        torch.testing.assert_close(ours([enc, dec])[-1], ref.logits, atol=ATOL, rtol=1.3e-6)


@pytest.mark.parametrize("name", ["t5", "t5.1.1"])
def test_seq2seq_generation_equals_transformers_generate(name: str, tmp_path: Path) -> None:
    generation = pytest.importorskip("b4t.generation")
    # transformers' generate() sizes its cache by num_layers: equal depths here
    hf, ours, _ = make(name, tmp_path, spread=True, num_decoder_layers=2)
    sources = [[5, 6, 7, 8, 1], [20, 21, 1], [33, 2, 40, 41, 9, 1]]
    for topk, extra in ((1, {}), (3, {"num_beams": 3, "length_penalty": 0.0})):
        gen = generation.Seq2SeqGeneration(
            ours, start_id=0, end_id=None, maxlen=8, mode="beam_search"
        )
        for src in sources:
            ids = torch.tensor([src])
            with torch.no_grad():
                ref = hf.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                    min_new_tokens=8, do_sample=False, eos_token_id=None,
                    decoder_start_token_id=0, **extra,
                )[0, 1:].tolist()  # fmt: skip
            assert gen.generate(src, topk=topk) == ref, (topk, src)
        uncached = generation.Seq2SeqGeneration(
            ours, start_id=0, end_id=None, maxlen=8, mode="beam_search", use_states=False
        )
        assert gen.batch_generate(sources, topk=topk) == uncached.batch_generate(sources, topk=topk)


def test_wrong_architecture_and_heads(tmp_path: Path) -> None:
    _, _, path = make("t5", tmp_path)
    with pytest.raises(ValueError, match="'t5' config but this is 'gpt2'"):
        build_transformer_model(checkpoint_path=path, model="gpt2")
    with pytest.raises(TypeError, match="takes no with_mlm"):
        build_transformer_model(checkpoint_path=path, model="t5", with_mlm=True)


@pytest.mark.parametrize("name", ["t5", "t5.1.1", "mt5.1.1"])
def test_encoder_and_decoder_alone(name: str, tmp_path: Path) -> None:
    hf, _, path = make(name, tmp_path)
    encoder = build_transformer_model(checkpoint_path=path, model=f"{name}_encoder").eval()
    decoder = build_transformer_model(checkpoint_path=path, model=f"{name}_decoder").eval()
    enc, dec = batch()
    with torch.no_grad():
        ref = hf(input_ids=enc, attention_mask=enc.ne(0).long(), decoder_input_ids=dec)
        hidden, mask = encoder.predict([enc])
        logits = decoder.predict([dec, hidden, mask])[-1]
    keep = enc.ne(0)
    torch.testing.assert_close(hidden[keep], ref.encoder_last_hidden_state[keep], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, ref.logits, atol=ATOL, rtol=0)
    assert not hasattr(encoder, "lm_head") or encoder.lm_head is None
