"""Batch invariance of ``BatchScheduler``: a seeded or greedy request gives the same ids
alone and among 31 other requests that join and leave at chosen steps.

Checked bit for bit (token ids and logits), on the tiny test model, on b4t's own
``gpt2`` in the shape of the character GPT of ``examples/generate.py`` (4 layers, 128
wide, context 64) and on b4t's ``llama`` (rotary positions, grouped-query attention).
The same scheduler also samples what a written-out sampler draws from the model's
logits with the request's temperature, top-k and top-p, and gets logits equal to
reading the row alone without padding.
"""

from __future__ import annotations

import random

import pytest
import torch

from b4t.generation.batching import BatchScheduler
from b4t.generation.testing import TinyCausalLM

VOCAB = 64


def tiny_model() -> TinyCausalLM:
    return TinyCausalLM(vocab_size=VOCAB, max_positions=96, seed=3).eval()


def gpt2_model(vocab: int = VOCAB, width: int = 128, layers: int = 4) -> torch.nn.Module:
    models = pytest.importorskip("b4t.models", reason="b4t-models builds the gpt2 variant")
    torch.manual_seed(0)
    config = {
        "model_type": "gpt2", "vocab_size": vocab, "n_positions": 64, "n_embd": width,
        "n_layer": layers, "n_head": 4, "n_inner": 4 * width, "activation_function": "gelu_new",
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
    }  # fmt: skip
    return models.build_transformer_model(config, model="gpt2", application="lm").eval()


def llama_model() -> torch.nn.Module:
    """b4t's ``llama`` (rotary positions, grouped-query attention) from a tiny random
    checkpoint saved by transformers."""
    import tempfile

    models = pytest.importorskip("b4t.models", reason="b4t-models builds the llama variant")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as path:
        transformers.LlamaForCausalLM(config).save_pretrained(path)
        return models.build_transformer_model(checkpoint_path=path, model="llama").eval()


def wide_head_gpt2() -> torch.nn.Module:
    """A gpt2 whose LM head (8192 x 64) takes ``b4t.layers.linear``'s few-rows path up to
    32 rows, where 4-11 rows give other last bits than 12 or more."""
    return gpt2_model(vocab=8192, width=64, layers=2)


MODELS = {
    "tiny": (tiny_model, 96),
    "b4t-gpt2": (gpt2_model, 64),
    "b4t-gpt2-wide-head": (wide_head_gpt2, 64),
    "b4t-llama": (llama_model, 64),
}


class _Watching(BatchScheduler):
    """A scheduler that keeps the logits each step gave one request (``watched``)."""

    watched: object = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[torch.Tensor] = []

    def _sample(self, logits, requests):
        for row, request in zip(logits, requests, strict=False):
            if request is self.watched:
                self.seen.append(row.clone())
        return super()._sample(logits, requests)


def run_plan(
    model: torch.nn.Module,
    context: int,
    target: tuple[list[int], int, dict],
    others: list[tuple[int, list[int], int, dict]],
    join_at: int,
    cancel_at: dict[int, int] | None = None,
) -> list[int]:
    """Step a scheduler by hand: ``target`` is submitted at step ``join_at``, each of
    ``others`` (step, prompt, max_tokens, sampling keywords) at its step; ``cancel_at``
    maps an index of ``others`` to the step it is cancelled at. Returns the target's ids
    and the next-token logits ``(steps, vocab)`` it was sampled from."""
    scheduler = _Watching(model, max_batch=32, context=context)
    plan = sorted(enumerate(others), key=lambda item: item[1][0])
    handles: dict[int, object] = {}
    cancel_at = cancel_at or {}
    request = None
    for step in range(1000):
        if step == join_at:
            request = scheduler.submit(target[0], target[1], **target[2])
            scheduler.watched = request
        while plan and plan[0][1][0] == step:
            k, (_, prompt, n, kwargs) = plan.pop(0)
            handles[k] = scheduler.submit(prompt, n, **kwargs)
        for k, when in cancel_at.items():
            if when == step and k in handles:
                handles[k].cancel()
        scheduler.step()
        if request is not None and request.done.is_set() and not plan:
            break
    assert request is not None and request.finish_reason == "length"
    assert scheduler.largest_batch >= (1 if not others else 16)
    return request.result(0), torch.stack(scheduler.seen)


def crowd(rng: random.Random) -> list[tuple[int, list[int], int, dict]]:
    """31 requests of 1-60 tokens asking 1-40 tokens, greedy or seeded, arriving at step 0
    (a third of them) or at steps 1-29."""
    return [
        (
            rng.choice([0, rng.randrange(1, 30), rng.randrange(1, 30)]),
            [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 61))],
            rng.randrange(1, 41),
            {"temperature": rng.choice([0.0, 0.8]), "seed": rng.randrange(1000), "topk": 40},
        )
        for _ in range(31)
    ]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 0.0}, {"temperature": 1.0, "topk": 20, "topp": 0.9, "seed": 5}],
    ids=["greedy", "seeded"],
)
def test_alone_or_among_31_joining_and_leaving_gives_the_same_ids(name, sampling) -> None:
    build, context = MODELS[name]
    model = build()
    rng = random.Random(1)
    prompt = [rng.randrange(1, VOCAB) for _ in range(50)]  # a 50-token prompt
    target = (prompt, 40, sampling)  # 40 tokens: slides at context 64 and at 96
    alone = run_plan(model, context, target, [], join_at=0)
    others = crowd(rng)
    for join_at, cancel in [(0, {}), (3, {0: 5, 7: 9, 12: 21, 20: 30})]:
        together = run_plan(model, context, target, others, join_at, cancel)
        assert together[0] == alone[0], f"joined at step {join_at}"
        # bit for bit: the same float logits, so no sampling setting could tell them apart
        assert torch.equal(together[1], alone[1]), f"joined at step {join_at}"


@torch.no_grad()
def written_out_sampler(
    model: TinyCausalLM, prompt: list[int], n: int, temperature: float, topk, topp, seed: int
) -> list[int]:
    """Sampling written out: the whole sequence re-read every step (no cache, no padding),
    softmax(logits / temperature), the ``topk`` most probable, the smallest most-probable
    set whose mass reaches ``topp``, one draw from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    ids = list(prompt)
    for _ in range(n):
        logits, _ = model(torch.tensor([ids]))
        probas = torch.softmax(logits[0, -1].double() / temperature, -1)
        order = probas.argsort(descending=True)
        keep = torch.zeros_like(probas, dtype=torch.bool)
        mass = 0.0
        for rank, token in enumerate(order.tolist()):
            if (topk is not None and rank >= topk) or (topp is not None and mass >= topp):
                break
            keep[token] = True
            mass += float(probas[token])
        probas = torch.where(keep, probas, 0.0).float()
        ids.append(int(torch.multinomial(probas / probas.sum(), 1, generator=generator)))
    return ids[len(prompt) :]


@pytest.mark.parametrize(
    ("temperature", "topk", "topp"),
    [(0.5, None, None), (2.0, None, None), (1.5, None, 0.5), (1.0, 3, None)],
)
def test_each_row_samples_with_its_own_temperature_topk_topp(temperature, topk, topp) -> None:
    model = tiny_model()
    prompts = [[5, 6, 7], [9, 9], [40, 41, 42, 43]]
    scheduler = BatchScheduler(model)
    target = scheduler.submit(prompts[0], 16, temperature=temperature, topk=topk, topp=topp, seed=7)
    for p in prompts[1:]:  # other rows with other settings
        scheduler.submit(p, 16, temperature=1.0, seed=3)
    while scheduler.step():
        pass
    expected = written_out_sampler(model, prompts[0], 16, temperature, topk, topp, seed=7)
    assert target.result(0) == expected


class _RecordingLogits(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []  # (mask, last logits)

    def forward(self, input_ids, past_key_values=None, attention_mask=None):
        logits, cache = self.inner(input_ids, past_key_values, attention_mask)
        self.calls.append((attention_mask.clone(), logits[:, -1].clone()))
        return logits, cache


@torch.no_grad()
def test_padding_keys_are_masked_the_logits_equal_reading_alone() -> None:
    inner = tiny_model()
    model = _RecordingLogits(inner)
    scheduler = BatchScheduler(model, context=96)  # reads are 72 positions, mostly padding
    prompts = [[5, 6, 7], [11], list(range(2, 30))]
    requests = [scheduler.submit(p, 6, temperature=0) for p in prompts]
    while scheduler.step():
        pass
    assert len(model.calls) == 6 and model.calls[0][0].shape == (3, 72)
    assert int(model.calls[0][0][0].sum()) == 3  # row 0: 69 padding positions
    for step, (_, logits) in enumerate(model.calls):
        for row, (prompt, request) in enumerate(zip(prompts, requests, strict=True)):
            ids = prompt + request.output_ids[:step]
            alone, _ = inner(torch.tensor([ids]))
            torch.testing.assert_close(logits[row], alone[0, -1], rtol=1e-5, atol=1e-5)
