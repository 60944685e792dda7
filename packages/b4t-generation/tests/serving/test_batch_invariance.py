"""Batch invariance through the official ``openai`` client: 32 seeded or greedy requests
give the same texts sent one at a time and all at once.

Servers: ``BatchScheduler`` (as ``examples/generate.py --serve`` builds it) over the tiny
test LM and over b4t's own ``gpt2`` in the character GPT's shape (4 layers, 128 wide,
context 64), and ``SeqGeneration`` over the same b4t ``gpt2`` (each request decoded
on its own, concurrently).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from b4t.generation import SeqGeneration
from b4t.generation.batching import BatchScheduler, stream_from_scheduler

openai = pytest.importorskip("openai", reason="the openai client is in b4t-generation[test]")

PAD, END, VOCAB = 0, 1, 64  # the character tokenizer of conftest
CLIENTS = 32
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"


def requests(greedy: bool, longest: int) -> list[dict]:
    """32 completions: prompts of 1 to ``longest - 23`` characters, 4 to 23 tokens, seeds
    0-31 (``SeqGeneration`` cannot slide past the b4t gpt2's 64 positions; the scheduler
    slides its window past them)."""
    out = []
    for k in range(CLIENTS):
        start, size = (7 * k) % 20, 1 + (13 * k) % (longest - 23)
        prompt = (TEXT * 2)[start : start + size]
        kwargs = {"temperature": 0.0} if greedy else {"temperature": 1.0, "top_p": 0.95}
        out.append({"prompt": prompt, "max_tokens": 4 + (5 * k) % 20, "seed": k, **kwargs})
    return out


def gpt2_lm() -> torch.nn.Module:
    models = pytest.importorskip("b4t.models", reason="b4t-models builds the gpt2 variant")
    torch.manual_seed(0)
    config = {
        "model_type": "gpt2", "vocab_size": VOCAB, "n_positions": 64, "n_embd": 128,
        "n_layer": 4, "n_head": 4, "n_inner": 512, "activation_function": "gelu_new",
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
    }  # fmt: skip
    # random weights: nearly flat logits, full of near-ties that a last-bit change flips
    return models.build_transformer_model(config, model="gpt2", application="lm").eval()


def ask_all(client, batch: list[dict], concurrent: bool) -> list[str]:
    def ask(kwargs: dict) -> str:
        answer = client.completions.create(model="b4t-lm", **kwargs)
        return answer.choices[0].text

    if not concurrent:
        return [ask(kwargs) for kwargs in batch]
    barrier = threading.Barrier(len(batch))

    def together(kwargs: dict) -> str:
        barrier.wait()
        return ask(kwargs)

    with ThreadPoolExecutor(len(batch)) as pool:
        return list(pool.map(together, batch))


@pytest.fixture(params=["scheduler-tiny", "scheduler-b4t-gpt2", "seqgeneration-b4t-gpt2"])
def served(request, make_server, model, tokenizer):
    scheduler = None
    if request.param == "seqgeneration-b4t-gpt2":
        backend = SeqGeneration(gpt2_lm(), tokenizer, end_id=END, maxlen=40)
        limits = {"max_concurrency": CLIENTS}
        longest = 64
    else:
        lm, context = (model, 96) if request.param == "scheduler-tiny" else (gpt2_lm(), 64)
        scheduler = BatchScheduler(lm, max_batch=CLIENTS, context=context, banned_ids=[PAD])
        scheduler.start()
        backend = stream_from_scheduler(scheduler, tokenizer, end_id=END)
        limits = {"tokenizer": tokenizer, "max_concurrency": 2 * CLIENTS, "max_context": None}
        longest = 86  # prompts up to 63 characters
    serving, _ = make_server(backend, max_tokens=40, **limits)
    client = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0, timeout=120)
    yield client, scheduler, longest
    if scheduler is not None:
        scheduler.stop()


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "seeded"])
def test_32_concurrent_requests_equal_the_same_requests_one_at_a_time(served, greedy) -> None:
    client, scheduler, longest = served
    batch = requests(greedy, longest)
    alone = ask_all(client, batch, concurrent=False)
    if scheduler is not None:
        assert scheduler.largest_batch == 1
    together = ask_all(client, batch, concurrent=True)
    if scheduler is not None:
        assert scheduler.largest_batch >= 8  # they did share the batch
    differ = [k for k in range(CLIENTS) if together[k] != alone[k]]
    assert not differ, f"{len(differ)} of {CLIENTS} texts differ: {differ}"
    assert len(set(alone)) > CLIENTS // 2  # real, different texts
