"""b4t.generation driving b4t's decoder LMs with b4t's KV cache, against transformers.

Greedy and beam outputs of ``SeqGeneration`` on a b4t model must equal, token for
token, ``generate()`` of the transformers model the weights came from; the cached
path must equal the uncached one; the cache follows beams and drops finished rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.kv_cache import KVCache

transformers = pytest.importorskip("transformers")
generation = pytest.importorskip("b4t.generation")

END = 1
PROMPTS = [[5, 6, 7, 8], [20, 21], [33, 2, 40, 41, 9]]
CASES = {
    "gpt": ("OpenAIGPTConfig", "OpenAIGPTLMHeadModel",
            dict(vocab_size=48, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                 bos_token_id=0, eos_token_id=END, pad_token_id=0)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=48, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                  bos_token_id=0, eos_token_id=END, pad_token_id=0)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   bos_token_id=0, eos_token_id=END, pad_token_id=0)),
}  # fmt: skip


def make(name: str, tmp_path: Path) -> tuple[Any, Any]:
    cfg, cls, kwargs = CASES[name]
    torch.manual_seed(0)
    hf = getattr(transformers, cls)(getattr(transformers, cfg)(**kwargs)).eval()
    with torch.no_grad():  # spread the logits so greedy choices are not near-ties
        hf.lm_head.weight.mul_(4.0)
    hf.save_pretrained(tmp_path / name)
    ours = build_transformer_model(checkpoint_path=tmp_path / name, model=name).eval()
    return hf, ours


def hf_generate(hf: Any, prompt: list[int], new: int, **kwargs: Any) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, pad_token_id=0,
            do_sample=False, **kwargs,
        )[0, len(prompt):].tolist()  # fmt: skip
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_greedy_equals_transformers_generate(name: str, tmp_path: Path) -> None:
    hf, ours = make(name, tmp_path)
    gen = generation.SeqGeneration(ours, end_id=END, maxlen=12, mode="beam_search")
    for prompt in PROMPTS:
        reference = hf_generate(hf, prompt, 12, eos_token_id=END)
        if END in reference:
            reference = reference[: reference.index(END)]
        assert gen.generate(prompt) == reference
    # a left-padded batch decodes like each prompt alone
    assert gen.batch_generate(PROMPTS) == [gen.generate(p) for p in PROMPTS]


@pytest.mark.parametrize("name", sorted(CASES))
def test_beam_search_equals_transformers_generate(name: str, tmp_path: Path) -> None:
    hf, ours = make(name, tmp_path)
    gen = generation.SeqGeneration(ours, end_id=None, maxlen=8, mode="beam_search")
    for prompt in PROMPTS:
        reference = hf_generate(hf, prompt, 8, num_beams=3, eos_token_id=None, length_penalty=0.0)
        assert gen.generate(prompt, topk=3) == reference


@pytest.mark.parametrize("name", sorted(CASES))
def test_cached_equals_uncached_for_beams_and_samples(name: str, tmp_path: Path) -> None:
    _, ours = make(name, tmp_path)
    for mode, kwargs in (("beam_search", {"topk": 3}), ("random_sample", {"topk": 5, "n": 3})):
        outputs = []
        for use_states in (True, False):
            gen = generation.SeqGeneration(
                ours, end_id=END, maxlen=10, mode=mode, use_states=use_states
            )
            g = torch.Generator().manual_seed(0)
            extra = {"generator": g} if mode == "random_sample" else {}
            outputs.append(gen.batch_generate(PROMPTS, **kwargs, **extra))
        assert outputs[0] == outputs[1], mode


def test_autoregressive_decoder_with_the_cache_as_states(tmp_path: Path) -> None:
    """A seed-style predict passes the model's cache through ``states``: no cache code."""
    _, ours = make("gpt2", tmp_path)

    class Writer(generation.AutoRegressiveDecoder):
        @generation.AutoRegressiveDecoder.wraps(default_rtype="logits", use_states=True)
        def predict(self, inputs, output_ids, states):  # type: ignore[no-untyped-def]
            (token_ids,) = inputs
            if states is None:
                ids = torch.cat([token_ids, output_ids], 1)
                logits, cache = ours.decode_step(ids, past_key_values=None)
            else:
                logits, cache = ours.decode_step(output_ids[:, -1:], past_key_values=states)
            return logits[:, -1], cache

    class Plain(generation.AutoRegressiveDecoder):
        @generation.AutoRegressiveDecoder.wraps(default_rtype="probas")
        def predict(self, inputs, output_ids, states):  # type: ignore[no-untyped-def]
            (token_ids,) = inputs
            return ours([torch.cat([token_ids, output_ids], 1)])[:, -1]

    with torch.no_grad():
        for prompt in PROMPTS:
            a = Writer(None, END, 8).beam_search([prompt], topk=3)
            b = Plain(None, END, 8).beam_search([prompt], topk=3)
            assert a.tolist() == b.tolist()
        streamed = list(Writer(None, END, 6).stream_beam_search([PROMPTS[0]], topk=2))
        assert streamed[-1].tolist() == Plain(None, END, 6).beam_search([PROMPTS[0]], 2).tolist()


def test_cache_reorder_and_prune_follow_the_rows(tmp_path: Path) -> None:
    _, ours = make("gpt2", tmp_path)
    ids = torch.tensor([[5, 6, 7], [8, 9, 10], [11, 12, 13]])
    with torch.no_grad():
        _, cache = ours.decode_step(ids, past_key_values=None)
        order = torch.tensor([2, 0, 0])
        beams = cache.index_select(order)
        assert isinstance(beams, KVCache) and beams.batch_size == 3
        nxt = torch.tensor([[3], [4], [5]])
        step, _ = ours.decode_step(nxt, past_key_values=beams)
        full, _ = ours.decode_step(torch.cat([ids[order], nxt], 1), past_key_values=None)
        torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=0)
        # prune in place: keep rows 1 and 2 only
        cache.select(torch.tensor([1, 2]))
        assert cache.batch_size == 2 and cache.seq_len == 3
        step, _ = ours.decode_step(nxt[:2], past_key_values=cache)
        full, _ = ours.decode_step(torch.cat([ids[1:], nxt[:2]], 1), past_key_values=None)
        torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=0)
        assert cache.index_select(torch.arange(2)) is cache  # identity: no copy
        with pytest.raises(IndexError, match="row 5"):
            cache.index_select(torch.tensor([5]))


def test_cache_grows_past_its_first_buffer(tmp_path: Path) -> None:
    _, ours = make("llama", tmp_path)  # rotary: no position table to run out of
    ids = torch.randint(2, 48, (2, 150), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, _ = ours.decode_step(ids, past_key_values=None)
        _, cache = ours.decode_step(ids[:, :3], past_key_values=None)
        steps = [
            ours.decode_step(ids[:, i : i + 1], past_key_values=cache)[0] for i in range(3, 150)
        ]
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 3:], atol=1e-5, rtol=0)
    assert cache.seq_len == 150
    # it grew by an eighth at a time: at most 150 + 150 / 8 + 16 positions are held
    assert all(150 <= layer.capacity <= 150 + 150 // 8 + 16 for layer in cache)


def test_limit_length_keeps_the_buffers_to_the_run(tmp_path: Path) -> None:
    _, ours = make("gpt2", tmp_path)
    ids = torch.randint(2, 48, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = ours.decode_step(ids, past_key_values=None)
        _, cache = ours.decode_step(ids[:, :3], past_key_values=None)
        cache.limit_length(20)
        steps = [
            ours.decode_step(ids[:, i : i + 1], past_key_values=cache)[0] for i in range(3, 20)
        ]
        assert all(layer.capacity == 20 for layer in cache)  # grew to the limit, no further
        steps += [
            ours.decode_step(ids[:, i : i + 1], past_key_values=cache)[0] for i in range(20, 24)
        ]
    assert all(layer.capacity >= 24 for layer in cache)  # past the limit it still grows
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 3:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["beam_search", "random_sample"])
def test_generation_sizes_the_cache_to_prompt_plus_maxlen(mode: str, tmp_path: Path) -> None:
    _, ours = make("gpt2", tmp_path)
    caches: list[KVCache] = []

    def model(*args: Any, **kwargs: Any) -> Any:
        logits, cache = ours.decode_step(*args, **kwargs)
        caches.append(cache)
        return logits, cache

    gen = generation.SeqGeneration(model, end_id=None, maxlen=30, mode=mode)
    with torch.no_grad():
        gen.batch_generate([PROMPTS[0], PROMPTS[1]], topk=3)
    # 4 prompt positions (left-padded batch) + 29 fed tokens: 33, with no overshoot
    assert len(caches) == 30 and all(layer.capacity == 33 for layer in caches[-1])
