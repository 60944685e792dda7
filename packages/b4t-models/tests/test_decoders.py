"""gpt, gpt2 and llama against tiny random transformers models (the numeric reference).

Each case saves a transformers LM head model with ``save_pretrained``, loads it through
``build_transformer_model`` and compares logits on right- and left-padded batches,
the incremental (KV-cache) path with the full forward, and the ``save_weights`` round
trip back into transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import CheckpointError, build_transformer_model
from b4t.models.kv_cache import KVCache

transformers = pytest.importorskip("transformers")

# model= name -> (config class, LM head model class, config keywords)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt": (
        "OpenAIGPTConfig",
        "OpenAIGPTLMHeadModel",
        dict(vocab_size=61, n_positions=40, n_embd=32, n_layer=2, n_head=4),
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(
            vocab_size=61,
            n_positions=40,
            n_embd=32,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=1,
        ),
    ),
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            vocab_size=61,
            hidden_size=32,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=40,
            rope_theta=500.0,
        ),
    ),
}
ATOL = 1e-5


def make_hf(name: str, tmp_path: Path, **overrides: Any) -> tuple[Any, Path]:
    cfg_name, model_name, kwargs = CASES[name]
    torch.manual_seed(0)
    config = getattr(transformers, cfg_name)(**{**kwargs, **overrides})
    model = getattr(transformers, model_name)(config).eval()
    out = tmp_path / f"{name}-hf"
    model.save_pretrained(out)
    return model, out


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 61, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    return ids, mask


def hf_logits(hf: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf(ids, attention_mask=mask, position_ids=position_ids).logits


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_equal_transformers(name: str, tmp_path: Path) -> None:
    hf, path = make_hf(name, tmp_path)
    model = build_transformer_model(
        checkpoint_path=path, model=name, final_activation="linear"
    ).eval()
    ids, mask = batch()
    with torch.no_grad():
        full = model([ids])  # no padding: the seed-style call, SDPA's causal path
        torch.testing.assert_close(full, hf(ids).logits, atol=ATOL, rtol=0)
        probs = build_transformer_model(checkpoint_path=path, model=name).eval()([ids])
        torch.testing.assert_close(probs, torch.softmax(full, -1), atol=ATOL, rtol=0)
        logits, cache = model.decode_step(ids, past_key_values=None, attention_mask=mask)
    keep = mask.bool()
    torch.testing.assert_close(logits[keep], hf_logits(hf, ids, mask)[keep], atol=ATOL, rtol=0)
    assert isinstance(cache, KVCache) and cache.seq_len == 9 and cache.batch_size == 3


@pytest.mark.parametrize("name", sorted(CASES))
def test_right_padded_batch_equals_transformers(name: str, tmp_path: Path) -> None:
    hf, path = make_hf(name, tmp_path)
    model = build_transformer_model(
        checkpoint_path=path, model=name, final_activation="linear"
    ).eval()
    ids, _ = batch()
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(ids, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_incremental_decoding_equals_full_forward(name: str, tmp_path: Path) -> None:
    _, path = make_hf(name, tmp_path)
    model = build_transformer_model(
        checkpoint_path=path, model=name, final_activation="linear"
    ).eval()
    ids, mask = batch()
    with torch.no_grad():
        full, _ = model.decode_step(ids, past_key_values=None, attention_mask=mask)
        parts, cache = [], None
        for start, stop in ((0, 5), (5, 6), (6, 9)):  # a prompt, one token, a chunk
            logits, cache = model.decode_step(
                ids[:, start:stop], past_key_values=cache, attention_mask=mask[:, :stop]
            )
            parts.append(logits)
    keep = mask.bool()
    torch.testing.assert_close(torch.cat(parts, 1)[keep], full[keep], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_weights_round_trip_loads_in_transformers(name: str, tmp_path: Path) -> None:
    _, path = make_hf(name, tmp_path)
    model = build_transformer_model(
        checkpoint_path=path, model=name, final_activation="linear"
    ).eval()
    with torch.no_grad():
        for p in model.parameters():  # change every weight so the round trip is visible
            p.add_(0.01 * torch.randn_like(p))
    out = tmp_path / "saved"
    model.save_pretrained(out)
    reloaded = getattr(transformers, CASES[name][1]).from_pretrained(out).eval()
    ids, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model([ids]), atol=ATOL, rtol=0)
    again = build_transformer_model(checkpoint_path=out, model=name, final_activation="linear")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()([ids]), model([ids]), atol=0, rtol=0)


def test_llama_tied_and_mha_configs(tmp_path: Path) -> None:
    hf, path = make_hf("llama", tmp_path, num_key_value_heads=4, tie_word_embeddings=True)
    model = build_transformer_model(checkpoint_path=path, model="llama", final_activation="linear")
    assert model.lm_head is None
    ids, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()([ids]), hf(ids).logits, atol=ATOL, rtol=0)


def test_gpt_token_types_use_the_word_table(tmp_path: Path) -> None:
    hf, path = make_hf("gpt", tmp_path)
    model = build_transformer_model(
        checkpoint_path=path, model="gpt", final_activation="linear", shared_segment_embeddings=True
    ).eval()
    ids, _ = batch()
    types = torch.full_like(ids, 7)
    with torch.no_grad():
        theirs = hf(ids, token_type_ids=types).logits
        torch.testing.assert_close(model([ids, types]), theirs, atol=ATOL, rtol=0)


def test_wrong_architecture_checkpoint_is_an_error(tmp_path: Path) -> None:
    _, path = make_hf("llama", tmp_path)
    with pytest.raises(ValueError, match="'llama' config but this is 'gpt2'"):
        build_transformer_model(checkpoint_path=path, model="gpt2")
    _, gpt_path = make_hf("gpt", tmp_path)
    _, gpt2_path = make_hf("gpt2", tmp_path)
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight"):  # GPT weights
        build_transformer_model(gpt2_path / "config.json", gpt_path, model="gpt2")


def test_prompt_longer_than_the_position_table(tmp_path: Path) -> None:
    _, path = make_hf("gpt2", tmp_path)
    model = build_transformer_model(checkpoint_path=path, model="gpt2").eval()
    with pytest.raises(ValueError, match="position table has 40 rows"):
        model([torch.ones(1, 41, dtype=torch.long)])
    _, cache = model.decode_step(torch.ones(1, 39, dtype=torch.long), past_key_values=None)
    with pytest.raises(ValueError, match="reaches position 41"):
        model.decode_step(torch.ones(1, 2, dtype=torch.long), past_key_values=cache)


def test_cache_from_another_batch_is_an_error(tmp_path: Path) -> None:
    _, path = make_hf("gpt2", tmp_path)
    model = build_transformer_model(checkpoint_path=path, model="gpt2").eval()
    ids, mask = batch()
    with torch.no_grad():
        _, cache = model.decode_step(ids, past_key_values=None, attention_mask=mask)
        with pytest.raises(ValueError, match="cache holds 3 rows but the input has 2"):
            model.decode_step(ids[:2, :1], past_key_values=cache)
        with pytest.raises(TypeError, match="b4t KVCache"):
            model.decode_step(ids[:, :1], past_key_values=((torch.zeros(1),),))
        with pytest.raises(ValueError, match=r"attention_mask shape \(3, 4\) should be"):
            model.decode_step(ids[:, :1], past_key_values=cache, attention_mask=mask[:, :4])


def test_gpt2_from_a_config_dict_trains() -> None:
    config = {
        "vocab_size": 30,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
    }
    torch.manual_seed(0)
    model = build_transformer_model(config, model="gpt2", final_activation="linear")
    assert model.config.hidden_act == "gelu_new" and model.config.pre_norm
    assert model.embeddings.segment_embeddings is None and model.lm_head is None
    ids = torch.randint(0, 30, (4, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = model([ids])
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 30), ids[:, 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_forward_with_past_key_values_is_a_deprecated_decode_step(tmp_path: Path) -> None:
    _, path = make_hf("gpt2", tmp_path)
    model = build_transformer_model(checkpoint_path=path, model="gpt2").eval()
    ids, mask = batch()
    with torch.no_grad():
        logits, cache = model.decode_step(ids, attention_mask=mask)
        assert isinstance(cache, KVCache) and logits.shape == (*ids.shape, 61)
        with pytest.warns(DeprecationWarning, match="decode_step"):
            old, old_cache = model(ids, past_key_values=None, attention_mask=mask)
        torch.testing.assert_close(old, logits, atol=0, rtol=0)
        assert old_cache.seq_len == cache.seq_len
        last, _ = model.decode_step(ids, attention_mask=mask, logits_to_keep=1)
        torch.testing.assert_close(last, logits[:, -1:], atol=ATOL, rtol=0)
        probs = model(ids)  # the seed-style call: softmax probabilities
        torch.testing.assert_close(probs.sum(-1), torch.ones(ids.shape), atol=1e-5, rtol=0)
