"""SeqGeneration driving a tiny random Hugging Face GPT-2 (the numeric reference).

A transformers model already follows the decoder protocol: it takes
``input_ids, past_key_values, attention_mask`` and returns ``.logits`` and
``.past_key_values`` (a ``DynamicCache`` whose ``reorder_cache`` selects rows).
"""

from __future__ import annotations

import pytest
import torch

from b4t.generation import SeqGeneration

transformers = pytest.importorskip("transformers")

END = 1
PROMPTS = [[5, 6, 7, 8], [20, 21], [33, 2, 40, 41, 9]]


@pytest.fixture(scope="module")
def gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=48, n_positions=64, n_embd=16, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=END, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # spread the logits so greedy choices are not near-ties
        model.lm_head.weight.mul_(4.0)
    return model


def test_greedy_equals_transformers_generate(gpt2: torch.nn.Module) -> None:
    gen = SeqGeneration(gpt2, end_id=END, maxlen=12, mode="beam_search")
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            reference = gpt2.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                do_sample=False, eos_token_id=END, pad_token_id=0,
            )[0, len(prompt):].tolist()  # fmt: skip
        if END in reference:
            reference = reference[: reference.index(END)]
        assert gen.generate(prompt) == reference


def test_dynamic_cache_follows_the_beams(gpt2: torch.nn.Module) -> None:
    outputs = []
    for use_states in (True, False):
        gen = SeqGeneration(gpt2, end_id=END, maxlen=10, mode="beam_search", use_states=use_states)
        outputs.append([gen.generate(p, topk=3) for p in PROMPTS])
    assert outputs[0] == outputs[1]
