"""Serving throughput with request batching: concurrent clients against one at a time.

    nox -s bench -- serving
    python benchmarks/bench_serving.py [--clients 32] [--tokens 64] [--repeats 3]
    python benchmarks/bench_serving.py --quick          # a smoke run (8 clients, 16 tokens)

The generation demo's server (``examples/generate.py``: ``WebServing`` with the
generation routes, requests batched by ``b4t.generation.batching.BatchScheduler``)
serves a character-level GPT-2 built with b4t (``--model DIR``: a saved demo model;
default: the demo's shape, 4 layers x 128 wide, context 64, vocabulary 85, random
weights; speed does not depend on the weights). Each client sends one real HTTP
request, ``GET /generate?text=...&max_tokens=N&seed=k``, and reads the whole answer.

- *one at a time*: the clients go one after another (each request decodes alone);
- *concurrent*: all clients at once; requests that arrive while others decode join
  the running batch at the next step.

Printed: generated characters (= tokens) per second for each, their ratio (the
target is >= 3x at 32 clients x 64 tokens), the scheduler's largest batch, and the
median latency. The two runs alternate ``--repeats`` times in one process; the
medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO / "benchmarks"))

from clients import run_concurrently  # noqa: E402
from generate import make_server  # noqa: E402
from generate_data import CharTokenizer  # noqa: E402
from generate_model import CharGPT, gpt2_config, load_model  # noqa: E402

PROMPT = "ROMEO:\nBut soft, "


def one_request(url: str, tokens: int, seed: int) -> tuple[int, float]:
    """(characters generated, seconds) for one ``/generate`` call."""
    query = urllib.parse.urlencode(
        {"text": PROMPT, "max_tokens": tokens, "temperature": 1.0, "seed": seed}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(f"{url}/generate?{query}", timeout=600) as response:
        answer = json.loads(response.read())
    data = answer["data"] if isinstance(answer, dict) else answer
    text = data[0] if isinstance(data, list) else data
    return len(text), time.perf_counter() - start


def sequential(url: str, clients: int, tokens: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    results = [one_request(url, tokens, seed) for seed in range(clients)]
    elapsed = time.perf_counter() - start
    return sum(n for n, _ in results) / elapsed, [t for _, t in results]


def concurrent(url: str, clients: int, tokens: int) -> tuple[float, list[float]]:
    results, elapsed = run_concurrently(lambda seed: one_request(url, tokens, seed), clients)
    return sum(n for n, _ in results) / elapsed, [t for _, t in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64, help="characters per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a model saved by examples/generate.py")
    parser.add_argument("--quick", action="store_true", help="8 clients x 16 tokens, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.tokens, args.repeats = 8, 16, 1
    torch.manual_seed(0)
    if args.model is not None:
        model, tokenizer = load_model(args.model)
    else:
        chars = sorted(set("".join(chr(c) for c in range(32, 127)) + "\n"))[:84]
        tokenizer = CharTokenizer(chars)
        model = CharGPT(gpt2_config(len(tokenizer))).eval()
    options = SimpleNamespace(
        host="127.0.0.1",
        port=0,
        max_batch=args.clients,
        max_tokens=max(args.tokens, 64),
        sliding_window=True,  # prompt + tokens may pass the context: the window slides
    )
    server, scheduler = make_server(model, tokenizer, options)
    print(
        f"{model.name} {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"context {model.context}; {args.clients} clients x {args.tokens} tokens, "
        f"{torch.get_num_threads()} torch thread(s)",
        flush=True,
    )
    seq_rates, con_rates, seq_lat, con_lat, largest = [], [], [], [], 0
    with scheduler, server:
        one_request(server.url, 4, 0)  # warm-up
        for _ in range(args.repeats):
            rate, lat = sequential(server.url, args.clients, args.tokens)
            seq_rates.append(rate)
            seq_lat.extend(lat)
            scheduler.largest_batch = 0
            rate, lat = concurrent(server.url, args.clients, args.tokens)
            con_rates.append(rate)
            con_lat.extend(lat)
            largest = max(largest, scheduler.largest_batch)
            print(f"  one at a time {seq_rates[-1]:8.1f} tok/s, concurrent {rate:8.1f} tok/s")
    seq, con = statistics.median(seq_rates), statistics.median(con_rates)
    print(f"one at a time: {seq:.1f} tokens/s (median latency {statistics.median(seq_lat):.2f} s)")
    print(
        f"concurrent:    {con:.1f} tokens/s (median latency {statistics.median(con_lat):.2f} s, "
        f"largest batch {largest})"
    )
    print(f"speed-up: {con / seq:.2f}x")


if __name__ == "__main__":
    main()
