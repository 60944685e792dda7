"""Demo: serve a text generator over HTTP with WebServing, query it, stop.

    python packages/b4t-generation/examples/serve_tiny_lm.py                    # self-test, exit
    python packages/b4t-generation/examples/serve_tiny_lm.py --serve --port 0   # serve until Ctrl-C

The model is the tiny *random* ``TinyCausalLM`` with a character tokenizer, so
the text is gibberish; swap in any model that follows the b4t decoder protocol
and its tokenizer (e.g. a trained b4t GPT) to serve real text. Routes:
``/generate`` (seed style), ``/generate/stream`` (server-sent events), the
OpenAI-compatible ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``
and a page at ``/`` that streams the answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import string
import urllib.request

import torch

from b4t.generation import SeqGeneration, WebServing, add_generation_routes
from b4t.generation.testing import TinyCausalLM

ALPHABET = string.ascii_lowercase + string.ascii_uppercase + " .,\n!?;:'-"  # ids 2..63


class CharTokenizer:
    """One id per character of ``ALPHABET``; 0 pads, 1 ends a text."""

    def encode(self, text: str) -> list[int]:
        return [2 + ALPHABET.index(c) for c in text if c in ALPHABET]

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i - 2] for i in ids if 2 <= i < 2 + len(ALPHABET))


def build_server(host: str, port: int, max_n: int, max_tokens: int) -> WebServing:
    torch.set_num_threads(1)  # a tiny model: more threads only add overhead
    model = TinyCausalLM(vocab_size=2 + len(ALPHABET), max_positions=256).eval()
    generation = SeqGeneration(model, CharTokenizer(), end_id=1, maxlen=max_tokens)
    server = WebServing(host=host, port=port)
    add_generation_routes(server, generation, max_n=max_n, model_name="tiny-char-lm")
    return server


def self_test(server: WebServing) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(server.url + path, data=data)
        request.add_header("Content-Type", "application/json")
        with opener.open(request, timeout=60) as response:
            return response.read()

    print("GET  /generate       ->", json.loads(call("/generate?text=Hello&n=2&max_tokens=12")))
    completion = call("/v1/completions", {"model": "tiny-char-lm", "prompt": "Hi", "max_tokens": 8})
    print("POST /v1/completions ->", json.loads(completion)["choices"][0]["text"])
    events = call("/generate/stream?text=Hello&max_tokens=6&temperature=0").decode()
    print("GET  /generate/stream ->", events.count("data:"), "events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve until interrupted")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-n", type=int, default=4, help="cap on n per request")
    parser.add_argument("--max-tokens", type=int, default=64, help="cap on max_tokens")
    args = parser.parse_args()

    server = build_server(args.host, args.port, args.max_n, args.max_tokens)
    if args.serve:
        server.bind()  # the real port is known now, also with --port 0
        print(f"serving on {server.url}/  (try {server.url}/generate?text=Hello&n=2)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the demo quietly
            server.start()
        return
    with server:  # background thread, stopped at the end of the block
        self_test(server)


if __name__ == "__main__":
    main()
