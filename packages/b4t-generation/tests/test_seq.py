"""SeqGeneration / Seq2SeqGeneration driving tiny protocol models with a real KV cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from b4t.generation import DecoderModel, Seq2SeqGeneration, Seq2SeqModel, SeqGeneration
from b4t.generation.protocol import encode_text
from b4t.generation.testing import TinyCausalLM, TinySeq2SeqLM

END = 1
LM = TinyCausalLM(vocab_size=40, hidden_size=16, num_heads=2, num_layers=2, seed=1).eval()
S2S = TinySeq2SeqLM(vocab_size=40, hidden_size=16, num_heads=2, num_layers=1, seed=2).eval()


class CharTokenizer:
    """A b4t/bert4torch-shaped tokenizer: encode returns (token_ids, segment_ids)."""

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        ids = [3 + (ord(c) % 36) for c in text]
        return ids, [0] * len(ids)

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(i) for i in ids)


def test_models_follow_the_protocols() -> None:
    assert isinstance(LM, DecoderModel)
    assert isinstance(S2S, Seq2SeqModel)


@torch.no_grad()
def test_kv_cache_matches_a_full_forward() -> None:
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    full, _ = LM(ids)
    first, cache = LM(ids[:, :3])
    rest, _ = LM(ids[:, 3:], past_key_values=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), full)


@pytest.mark.parametrize("mode", ["beam_search", "random_sample"])
def test_cached_and_uncached_generation_agree(mode: str) -> None:
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    outputs = []
    for use_states in (True, False):
        gen = SeqGeneration(LM, end_id=END, maxlen=12, mode=mode, use_states=use_states)
        outputs.append(
            gen.batch_generate(prompts, topk=3, n=2, generator=torch.Generator().manual_seed(5))
        )
    assert outputs[0] == outputs[1]
    flat = outputs[0] if mode == "beam_search" else [s for row in outputs[0] for s in row]
    assert any(len(o) > 3 for o in flat)  # the sequences are not trivially short


def test_left_padded_batch_equals_single_prompts() -> None:
    gen = SeqGeneration(LM, start_id=2, end_id=END, maxlen=10, mode="beam_search")
    prompts = [[5, 6, 7, 8, 9], [9, 10], [12]]
    assert gen.batch_generate(prompts, topk=2) == [gen.generate(p, topk=2) for p in prompts]


def test_greedy_generation_equals_the_argmax_loop_on_the_model() -> None:
    gen = SeqGeneration(LM, end_id=END, maxlen=10, mode="beam_search")
    ids = [5, 6, 7]
    expected: list[int] = []
    with torch.no_grad():
        for _ in range(10):
            token = int(LM(torch.tensor([ids + expected]))[0][0, -1].argmax())
            if token == END:
                break
            expected.append(token)
    assert gen.generate(ids) == expected


def test_tokenizer_is_used_by_duck_typing() -> None:
    tokenizer = CharTokenizer()
    gen = SeqGeneration(LM, tokenizer, end_id=END, maxlen=6, mode="beam_search")
    text = gen.generate("hello", topk=2)
    ids = gen.generate(tokenizer.encode("hello")[0], topk=2)
    plain = SeqGeneration(LM, end_id=END, maxlen=6, mode="beam_search")
    assert plain.generate(tokenizer.encode("hello")[0], topk=2) == [int(t) for t in text.split()]
    assert ids == text
    with pytest.raises(ValueError, match="tokenizer"):
        plain.generate("hello")


def test_encode_text_accepts_common_tokenizer_shapes() -> None:
    class Encoding:
        def __init__(self) -> None:
            self.ids = [4, 5]

    class Fast:
        def encode(self, text: str) -> Encoding:
            return Encoding()

    class HF:
        def encode(self, text: str) -> dict[str, list[int]]:
            return {"input_ids": [6, 7]}

    class Broken:
        def encode(self, text: str) -> str:
            return text

    assert encode_text(Fast(), "x") == [4, 5]
    assert encode_text(HF(), "x") == [6, 7]
    assert encode_text(None, torch.tensor([[1, 2]])) == [1, 2]
    with pytest.raises(ValueError, match=r"Broken\.encode"):
        encode_text(Broken(), "x")


def test_stream_generate_ends_with_generate() -> None:
    gen = SeqGeneration(LM, end_id=END, maxlen=8, mode="beam_search")
    steps = list(gen.stream_generate([5, 6, 7], topk=2))
    assert steps[-1] == gen.generate([5, 6, 7], topk=2)
    sampler = SeqGeneration(LM, end_id=END, maxlen=8, mode="random_sample")
    steps = list(sampler.stream_generate([5, 6, 7], topk=1))
    assert steps[-1] == sampler.generate([5, 6, 7], topk=1)[0]
    assert len(steps) >= len(steps[-1])


def test_seq2seq_runs_the_encoder_once_and_cache_matches_recompute() -> None:
    sources = [[5, 6, 7, 8], [9, 10, 11], [20]]
    results = []
    for use_states in (True, False):
        gen = Seq2SeqGeneration(
            S2S, start_id=2, end_id=END, maxlen=10, mode="beam_search", use_states=use_states
        )
        before = S2S.encode_calls
        results.append(gen.batch_generate(sources, topk=3))
        assert S2S.encode_calls == before + 1
    assert results[0] == results[1]
    gen = Seq2SeqGeneration(S2S, start_id=2, end_id=END, maxlen=10, mode="beam_search")
    assert results[0] == [gen.generate(s, topk=3) for s in sources]


def test_constructor_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="start_id"):
        Seq2SeqGeneration(S2S, end_id=END)
    with pytest.raises(TypeError, match="encode"):
        Seq2SeqGeneration(LM, start_id=2)
    with pytest.raises(ValueError, match="mode"):
        SeqGeneration(LM, mode="greedy")

    def bad_model(*args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.zeros(1, 1, 5)

    with pytest.raises(TypeError, match="past_key_values"):
        SeqGeneration(bad_model, end_id=END, maxlen=2).generate([3])


class StepOnly(torch.nn.Module):
    """A model whose decoder-protocol call is ``decode_step`` (b4t's decoder models): its
    ``forward`` is another call (the seed-style one) and must not be used to decode."""

    def __init__(self, lm: TinyCausalLM) -> None:
        super().__init__()
        self.lm = lm
        self.steps: list[dict[str, Any]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the decoder protocol goes through decode_step")

    def decode_step(self, input_ids, past_key_values=None, attention_mask=None, logits_to_keep=0):
        self.steps.append({"new": input_ids.shape[1], "keep": logits_to_keep})
        logits, cache = self.lm(input_ids, past_key_values, attention_mask)
        return (logits[:, -logits_to_keep:] if logits_to_keep else logits), cache


@pytest.mark.parametrize("use_states", [True, False])
def test_a_model_with_decode_step_is_decoded_through_it(use_states: bool) -> None:
    prompts = [[5, 6, 7], [9, 4]]
    expected = SeqGeneration(LM, end_id=END, maxlen=6, mode="beam_search").batch_generate(
        prompts, topk=2
    )
    model = StepOnly(LM)
    gen = SeqGeneration(model, end_id=END, maxlen=6, mode="beam_search", use_states=use_states)
    assert gen.batch_generate(prompts, topk=2) == expected
    # the first read feeds the prompts, then one token a step through the cache; a model
    # with decode_step is asked for the last position's logits only
    assert model.steps[0] == {"new": 3, "keep": 1}
    assert {s["new"] for s in model.steps[1:]} == ({1} if use_states else set(range(4, 9)))
    assert all(s["keep"] == 1 for s in model.steps)
