"""Demo: serve a generator over HTTP with WebServing, query it, stop.

    python packages/b4t-generation/examples/serve_tiny_lm.py           # self-test and exit
    python packages/b4t-generation/examples/serve_tiny_lm.py --serve   # serve until Ctrl-C

The model is the tiny random ``TinyCausalLM`` (ids in, ids out); swap in any
model that follows the b4t decoder protocol and a tokenizer to serve text.
"""

from __future__ import annotations

import argparse
import json
import urllib.request

import torch

from b4t.generation import SeqGeneration, WebServing
from b4t.generation.testing import TinyCausalLM

torch.set_num_threads(1)  # a tiny model: more threads only add overhead
model = TinyCausalLM(vocab_size=64).eval()
generator = SeqGeneration(model, end_id=1, maxlen=16, mode="random_sample")


def generate(ids: str, n: int = 1, topk: int = 10) -> list[list[int]]:
    """``ids`` is a comma-separated prompt of token ids."""
    prompt = [int(t) for t in ids.split(",")]
    return generator.generate(prompt, n=n, topk=topk, generator=torch.Generator().manual_seed(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve until interrupted")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()

    server = WebServing(port=args.port)
    arguments = {"ids": (None, True), "n": (int, False), "topk": (int, False)}
    server.route("/generate", generate, arguments)
    server.route("/generate", generate, arguments, method="POST")
    if args.serve:
        print(f"serving on http://127.0.0.1:{args.port}/generate?ids=5,6,7&n=2")
        server.start()
        return
    with server:  # background thread, stopped at the end of the block
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{server.url}/generate?ids=5,6,7&n=2", timeout=60) as response:
            print("GET  ->", json.loads(response.read()))
        request = urllib.request.Request(
            f"{server.url}/generate",
            data=json.dumps({"ids": "9,10", "topk": 3}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with opener.open(request, timeout=60) as response:
            print("POST ->", json.loads(response.read()))


if __name__ == "__main__":
    main()
