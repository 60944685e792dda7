"""Per-step overhead of ``b4t.trainer`` ``fit`` against a hand-written PyTorch loop.

Same model, same data (a DataLoader over in-memory tensors), same optimizer.
Each round runs the hand loop and ``fit`` (progress bar on, and off) for one
epoch each, the order rotating between rounds so machine load hits all alike.

Two models: an MLP whose step costs a few milliseconds (the overhead ratio,
target <= 3%), and a one-layer model whose step is almost free (the absolute
trainer cost per step in microseconds).

    python benchmarks/bench_trainer.py [--rounds 9] [--steps 100] [--hidden 512] [--threads 1]

Both loops drive the same model and optimizer objects. Prints, per step, the
median and minimum process CPU time (robust when the machine is
shared: time the process waits for a core is not counted) and the median wall
time, with their ratios against the hand loop.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import ProgressBar, Trainer


def mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(256, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, 10),
    )


def tiny(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(256, 10)


def hand_loop(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def trainer_fit(trainer: Trainer, loader: DataLoader, bar: bool) -> None:
    # The bar writes into a buffer: its cost is measured, the terminal's is not.
    callbacks = [ProgressBar(file=io.StringIO())] if bar else []
    trainer.fit(loader, epochs=1, callbacks=callbacks, verbose=int(bar))


def timed(run) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def bench(build, args: argparse.Namespace, loader: DataLoader) -> None:
    # One model and one optimizer serve both loops, so memory layout is the same.
    model = build(args.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model)
    trainer.compile(nn.CrossEntropyLoss(), optimizer)
    runners = {
        "hand loop": lambda: hand_loop(model, optimizer, loader),
        "fit, bar on": lambda: trainer_fit(trainer, loader, True),
        "fit, bar off": lambda: trainer_fit(trainer, loader, False),
    }
    for run in runners.values():  # warm-up: allocator, first-step imports
        run()
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    wall: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for r in range(args.rounds):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            c, w = timed(runners[name])
            cpu[name].append(c / args.steps)
            wall[name].append(w / args.steps)
    base_cpu, base_min = statistics.median(cpu["hand loop"]), min(cpu["hand loop"])
    base_wall = statistics.median(wall["hand loop"])
    for name in runners:
        c, low, w = statistics.median(cpu[name]), min(cpu[name]), statistics.median(wall[name])
        print(
            f"  {name:13s} cpu median {c * 1e3:7.3f} ms/step (x{c / base_cpu:5.3f}, "
            f"{(c - base_cpu) * 1e6:+6.1f} us)  min {low * 1e3:7.3f} (x{low / base_min:5.3f})"
            f"  wall median {w * 1e3:7.3f} (x{w / base_wall:5.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, 256, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, "
        f"{args.steps} steps/epoch, {args.rounds} interleaved rounds"
    )
    print(f"MLP 256-{args.hidden}-{args.hidden}-10 (overhead ratio; target x1.030 or less):")
    bench(mlp, args, loader)
    print("Linear 256-10 (almost free steps: absolute trainer cost per step):")
    bench(tiny, args, loader)


if __name__ == "__main__":
    main()
