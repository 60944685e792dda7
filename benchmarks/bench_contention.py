"""b4t on a shared machine: training steps and requests beside a competing CPU-bound job.

    nox -s bench -- contention
    python benchmarks/bench_contention.py [--repeats 3] [--seconds 4] [--competitor matmul]
    python benchmarks/bench_contention.py --quick        # a smoke run (one repeat, short)

Three jobs, each in a fresh process so that OpenMP starts with the settings under test:

- ``sentiment``: a training step of the sentiment demo's model (``examples/sentiment.py``:
  2-layer BERT, hidden 128, bigram embeddings; batch 32 x 64 tokens, AdamW, clipping);
- ``generate``: a training step of the generation demo's character GPT
  (``examples/generate.py``: 4 layers x 128, batch 12 x 64);
- ``serve``: the generation demo's server (``generate.make_server``, random weights):
  sequential ``GET /generate`` requests of ``--tokens`` characters (median latency),
  then ``--clients`` concurrent ones (throughput, as the batching ratio against the
  sequential throughput).

Two settings:

- ``before``: torch's defaults (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY`` and
  ``GOMP_SPINCOUNT`` removed from the environment, torch imported first): one OpenMP
  thread per core, idle threads spin;
- ``after``: b4t's defaults, as the examples apply them (``import b4t.trainer`` before
  torch, then ``b4t.trainer.cpu.configure_threads()``; see that module);
- ``late`` (with ``--settings``): torch imported *before* b4t.trainer, too late for the
  wait policy, then ``configure_threads()``: b4t's fallback, one thread.

Each is measured on a quiet machine and beside a competitor started just before: by
default another process doing float32 matmuls with torch's default threads (a second
torch job; ``--competitor spin`` is a pure-Python busy loop on every core instead).
Repeats interleave everything (quiet/busy and before/after alternate), and each row
prints the median over repeats with the min-max spread. The figure of merit is
``busy / quiet``: with one competing job on the cores a fair share costs at most about
2x; spinning OpenMP threads cost far more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOBS = ("sentiment", "generate", "serve")
SETTINGS = ("before", "after", "late")
# The user's own OpenMP/BLAS settings are dropped for both settings under test.
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64}
COMPETITORS = {
    "matmul": "import torch\na = torch.randn(384, 384)\nwhile True:\n    a @ a\n",
    "spin": "while True:\n    pass\n",
}


# ---------------------------------------------------------------- worker side


def _training_step(job: str, tiny: bool):
    """A closure running one training step of ``job``'s model (imports torch)."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO / "examples"))
    torch.manual_seed(0)
    if job == "generate":
        from generate_model import CharGPT, gpt2_config

        model = CharGPT(gpt2_config(85, **TINY_GPT) if tiny else gpt2_config(85))
        ids = torch.randint(1, 85, (2, 17) if tiny else (12, 65))

        def loss() -> torch.Tensor:
            logits = model(ids[:, :-1])  # (B, L, 85)
            return F.cross_entropy(logits.reshape(-1, 85), ids[:, 1:].reshape(-1))

    else:
        from sentiment_model import build_classifier, small_bert_config

        vocab, n_bigrams = (100, 100) if tiny else (4609, 22699)  # the demo's default run
        hidden, layers, shape = (32, 1, (2, 16)) if tiny else (128, 2, (32, 64))
        bigrams = {(k, k): k + 2 for k in range(n_bigrams)}
        config = small_bert_config(vocab, hidden, layers, dropout=0.2)
        model = build_classifier(config, bigram_vocab=bigrams, hidden_size=hidden)
        tokens = torch.randint(1, vocab, shape)
        pairs = torch.randint(1, n_bigrams + 2, shape)
        labels = torch.randint(0, 2, shape[:1])

        def loss() -> torch.Tensor:
            return F.cross_entropy(model(tokens, pairs), labels)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        loss().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def _time_training(job: str, seconds: float, tiny: bool) -> dict:
    step = _training_step(job, tiny)
    step()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while not times or (time.perf_counter() < deadline and len(times) < 200):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"value": statistics.median(times), "n": len(times)}


def _time_serving(seconds: float, tokens: int, clients: int, tiny: bool) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "examples"))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from types import SimpleNamespace

    from bench_serving import concurrent, one_request
    from generate import make_server
    from generate_data import CharTokenizer
    from generate_model import CharGPT, gpt2_config

    torch.manual_seed(0)
    tokenizer = CharTokenizer([chr(c) for c in range(32, 116)])
    config = gpt2_config(len(tokenizer), **TINY_GPT) if tiny else gpt2_config(len(tokenizer))
    model = CharGPT(config).eval()
    options = SimpleNamespace(host="127.0.0.1", port=0, max_batch=clients, max_tokens=64)
    server, scheduler = make_server(model, tokenizer, options)
    latencies: list[float] = []
    with scheduler, server:
        one_request(server.url, 4, 0)  # warm-up
        deadline = time.perf_counter() + seconds
        while not latencies or (time.perf_counter() < deadline and len(latencies) < 100):
            latencies.append(one_request(server.url, tokens, len(latencies))[1])
        rate, _ = concurrent(server.url, clients, tokens)
    sequential_rate = tokens / statistics.median(latencies)
    return {
        "value": statistics.median(latencies),
        "n": len(latencies),
        "batching": rate / sequential_rate,
    }


def worker(args: argparse.Namespace) -> None:
    """Measure one job in this fresh process under its setting; print one JSON line."""
    job, setting = args.worker
    if setting == "late":
        import torch  # (first: OpenMP loads with its spinning default)
    if setting in ("after", "late"):
        import b4t.trainer  # noqa: F401  (before torch for "after", as the examples do)
        from b4t.trainer.cpu import configure_threads, passive_openmp

        configure_threads()
        policy = passive_openmp() or "default (spinning)"
    else:
        import torch  # (loads OpenMP with its defaults)

        policy = "default (spinning)"
    if job == "serve":
        result = _time_serving(args.seconds, args.tokens, args.clients, args.tiny)
    else:
        result = _time_training(job, args.seconds, args.tiny)
    import torch

    result.update(threads=torch.get_num_threads(), policy=policy)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- driver side


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_worker(args: argparse.Namespace, job: str, setting: str) -> dict:
    command = [
        sys.executable, __file__, "--worker", job, setting, "--seconds", str(args.seconds),
        "--tokens", str(args.tokens), "--clients", str(args.clients),
    ] + ["--tiny"] * args.tiny  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=_clean_env(), timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job}/{setting} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_competitor(kind: str) -> list[subprocess.Popen]:
    copies = (os.cpu_count() or 1) if kind == "spin" else 1
    procs = [
        subprocess.Popen([sys.executable, "-c", COMPETITORS[kind]], env=_clean_env())
        for _ in range(copies)
    ]
    time.sleep(1.0)  # let it reach its loop
    return procs


def stop_competitor(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def _spread(values: list[float], fmt: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return format(middle, fmt)
    return f"{middle:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.5, help="timed seconds per measurement")
    p.add_argument("--tokens", type=int, default=16, help="characters per request")
    p.add_argument("--clients", type=int, default=8, help="concurrent requests")
    p.add_argument("--competitor", choices=sorted(COMPETITORS), default="matmul")
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=["before", "after"])
    p.add_argument("--quick", action="store_true", help="1 repeat, 0.5 s, 4 tokens, 2 clients")
    p.add_argument("--tiny", action="store_true", help="tiny models (a smoke test of the script)")
    p.add_argument("--worker", nargs=2, metavar=("JOB", "SETTING"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        job, setting = args.worker
        if job not in JOBS or setting not in SETTINGS:
            p.error(f"--worker takes a job of {JOBS} and a setting of {SETTINGS}")
        worker(args)
        return
    if args.quick:
        args.repeats, args.seconds, args.tokens, args.clients = 1, 0.5, 4, 2
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{os.cpu_count()} CPU(s), load average {load} at the start; competitor: "
        f"{args.competitor}; {args.repeats} repeat(s) of {args.seconds:g} s per measurement",
        flush=True,
    )
    results: dict[tuple[str, str, str], list[dict]] = {}
    began = time.perf_counter()
    for repeat in range(args.repeats):
        loads = ("quiet", "busy") if repeat % 2 == 0 else ("busy", "quiet")
        for load_name in loads:
            procs = start_competitor(args.competitor) if load_name == "busy" else []
            try:
                for job in args.jobs:
                    order = args.settings if repeat % 2 == 0 else args.settings[::-1]
                    for setting in order:
                        out = run_worker(args, job, setting)
                        results.setdefault((job, setting, load_name), []).append(out)
                        print(
                            f"  repeat {repeat + 1} {load_name:5} {job:9} {setting:6} "
                            f"{out['value'] * 1e3:9.1f} ms ({out['n']} timed, "
                            f"{out['threads']} thread(s), wait {out['policy']})",
                            flush=True,
                        )
            finally:
                stop_competitor(procs)
    unit = {"serve": "ms/request", "sentiment": "ms/step", "generate": "ms/step"}
    print(
        "\nmedian [min-max] over repeats; slowdown = busy / quiet of the same repeat; "
        "speed-up = before / after beside the competitor"
    )
    for job in args.jobs:
        for setting in args.settings:
            quiet = [r["value"] for r in results[job, setting, "quiet"]]
            busy = [r["value"] for r in results[job, setting, "busy"]]
            slowdown = [b / q for b, q in zip(busy, quiet)]
            line = (
                f"{job:9} {setting:6} quiet {_spread([v * 1e3 for v in quiet], '.1f')} "
                f"busy {_spread([v * 1e3 for v in busy], '.1f')} {unit[job]}, "
                f"slowdown x{_spread(slowdown, '.2f')}"
            )
            if job == "serve":
                batching = [r["batching"] for r in results[job, setting, "busy"]]
                line += f", batching ratio busy x{_spread(batching, '.2f')}"
            print(line)
        before = [r["value"] for r in results.get((job, "before", "busy"), [])]
        for setting in [s for s in args.settings if s != "before"]:
            after = [r["value"] for r in results[job, setting, "busy"]]
            if before:
                gain = [b / a for b, a in zip(before, after)]
                print(f"{job:9} {setting:6} speed-up beside the competitor x{_spread(gain, '.2f')}")
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
