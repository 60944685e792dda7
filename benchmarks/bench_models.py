"""b4t.models vs transformers' BertModel (sdpa): forward, training step, load time, memory.

CPU, 2 threads, the same random BERT-base weights for both, interleaved in one run:

    python benchmarks/bench_models.py [--repeats 3] [--small]

Prints medians per case and the ratio b4t / transformers (lower is better for b4t).
Forward cases also print the CPU-time ratio (process time, all threads), which is
steadier than wall time on a shared machine. ``overhead 1x32`` is a 12-layer model of
width 64: its compute is negligible, so it measures per-call (Python / dispatch) cost.
``--device cuda --dtype bfloat16`` runs the forward / training cases on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from b4t.models import build_transformer_model

BERT_BASE = dict(
    vocab_size=21128,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
)
SMALL = dict(
    BERT_BASE, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024
)

LOAD_SCRIPT = """
import sys, time, torch
torch.set_num_threads(2)
import transformers
from b4t.models import build_transformer_model
path, which = sys.argv[1], sys.argv[2]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) after the imports
base = status("VmRSS")
t0 = time.perf_counter()
if which == "b4t":
    model = build_transformer_model(path, path)
else:
    transformers.logging.set_verbosity_error()
    model = transformers.BertModel.from_pretrained(
        path, attn_implementation="sdpa", add_pooling_layer=False
    )
elapsed = time.perf_counter() - t0
peak = status("VmHWM")
ids = torch.randint(1, 1000, (1, 32))
with torch.inference_mode():
    model(ids) if which == "b4t" else model(input_ids=ids)
used = status("VmHWM")
print(elapsed, (peak - base) / 1024, (used - base) / 1024)
"""


def _time(fn, sync, cpu: list[float] | None = None) -> float:
    """Wall seconds of one ``fn()``; its process (CPU) seconds go to ``cpu`` if given."""
    sync()
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    sync()
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return elapsed


def _report(
    name: str,
    ref: list[float],
    ours: list[float],
    unit: str = "ms",
    cpu: tuple[list[float], list[float]] | None = None,
) -> None:
    r, o = statistics.median(ref), statistics.median(ours)
    scale = 1000.0 if unit == "ms" else 1.0
    extra = ""
    if cpu is not None and cpu[0]:
        extra = f"   cpu-time ratio {statistics.median(cpu[1]) / statistics.median(cpu[0]):5.3f}"
    print(
        f"{name:<28} transformers {r * scale:9.2f} {unit}   b4t {o * scale:9.2f} {unit}   "
        f"ratio {o / r:5.3f}{extra}",
        flush=True,
    )


def bench_forward(ref, ours, vocab_size, device, sync, repeats, cases=None, label="forward"):
    """Inference forward at 8x128 (compute-bound) and 1x32 (small batch)."""
    for batch, length, reps in cases or ((8, 128, repeats), (1, 32, 10 * repeats)):
        ids = torch.randint(1, vocab_size, (batch, length), device=device)
        seg = torch.zeros_like(ids)
        mask = torch.ones_like(ids)

        def run_ref(ids=ids, seg=seg, mask=mask):
            return ref(input_ids=ids, token_type_ids=seg, attention_mask=mask).last_hidden_state

        def run_ours(ids=ids, seg=seg):
            return ours([ids, seg])

        with torch.inference_mode():
            diff = (run_ref().float() - run_ours().float()).abs().max().item()
            t_ref, t_ours = [], []
            c_ref: list[float] = []
            c_ours: list[float] = []
            for rep in range(reps):  # interleaved, order alternating (ABBA) against drift
                pairs = [(run_ref, t_ref, c_ref), (run_ours, t_ours, c_ours)]
                for fn, times, cpu in pairs if rep % 2 == 0 else pairs[::-1]:
                    times.append(_time(fn, sync, cpu))
        _report(f"{label} {batch}x{length} (max|d| {diff:.1e})", t_ref, t_ours, cpu=(c_ref, c_ours))
        if label == "forward" and (batch, length) == (1, 32):
            bench_gemm_floor(ours, t_ref, batch * length, device, sync, reps)


def bench_gemm_floor(ours, t_ref: list[float], rows: int, device, sync, reps: int) -> None:
    """The model's linear layers alone, each once on ``rows`` rows: a floor for any forward.

    Every BERT forward runs these matrix products (the same shapes in transformers);
    the row's ratio is their time over transformers' whole forward, so a forward
    ratio below it needs a faster GEMM kernel, not less overhead.
    """
    layers = [
        m
        for name, m in ours.named_modules()
        if isinstance(m, torch.nn.Linear) and "pool" not in name
    ]
    inputs = [torch.randn(1, rows, m.in_features, device=device) for m in layers]

    def run() -> None:
        for m, x in zip(layers, inputs):
            torch.nn.functional.linear(x, m.weight, m.bias)

    with torch.inference_mode():
        run()
        t_gemm = [_time(run, sync) for _ in range(reps)]
    _report(f"  {len(layers)} linear layers alone", t_ref, t_gemm)


def bench_overhead(tmp: Path, device, dtype, sync, repeats) -> None:
    """Per-call cost: 12 layers of width 64 at 1x32, where compute is negligible."""
    tiny = dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=128,
    )
    path = tmp / "tiny"
    transformers.BertModel(
        transformers.BertConfig(**tiny), add_pooling_layer=False
    ).save_pretrained(path)
    ref = transformers.BertModel.from_pretrained(
        path, attn_implementation="sdpa", add_pooling_layer=False
    )
    ref = ref.to(device, dtype).eval()
    ours = build_transformer_model(path, path, device=device, dtype=dtype).eval()
    bench_forward(ref, ours, 1000, device, sync, repeats, ((1, 32, 100 * repeats),), "overhead")


def bench_train(ref, ours, vocab_size, device, sync, repeats) -> None:
    """One forward + backward + AdamW step at 8x128, dropout on in both."""
    ids = torch.randint(1, vocab_size, (8, 128), device=device)
    seg = torch.zeros_like(ids)
    mask = torch.ones_like(ids)
    ref.train()
    ours.train()
    opt_r = torch.optim.AdamW(ref.parameters(), lr=1e-5)
    opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-5)

    def step_ref() -> None:
        out = ref(input_ids=ids, token_type_ids=seg, attention_mask=mask).last_hidden_state
        out.float().pow(2).mean().backward()
        opt_r.step()
        opt_r.zero_grad(set_to_none=True)

    def step_ours() -> None:
        ours([ids, seg]).float().pow(2).mean().backward()
        opt_o.step()
        opt_o.zero_grad(set_to_none=True)

    step_ref()
    step_ours()  # warm-up: optimizer state allocation
    t_ref, t_ours = [], []
    for rep in range(max(2, repeats - 1)):  # order alternating, as in bench_forward
        pairs = [(step_ref, t_ref), (step_ours, t_ours)]
        for fn, times in pairs if rep % 2 == 0 else pairs[::-1]:
            times.append(_time(fn, sync))
    _report("train step 8x128 AdamW", t_ref, t_ours)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a 4-layer model (smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of: fwd,overhead,train,load")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.threads} threads, device {device}, {dtype}",
        flush=True,
    )

    tmp = Path(tempfile.mkdtemp(prefix="b4t-bench-"))
    torch.manual_seed(0)
    config = transformers.BertConfig(**(SMALL if args.small else BERT_BASE))
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(tmp)
    transformers.logging.set_verbosity_error()
    ref = transformers.BertModel.from_pretrained(
        tmp, attn_implementation="sdpa", add_pooling_layer=False
    )
    ref = ref.to(device, dtype).eval()
    ours = build_transformer_model(tmp, tmp, device=device, dtype=dtype).eval()

    if "fwd" not in skip:
        bench_forward(ref, ours, config.vocab_size, device, sync, args.repeats)
    if "overhead" not in skip:
        bench_overhead(tmp, device, dtype, sync, args.repeats)
    if "train" not in skip:
        bench_train(ref, ours, config.vocab_size, device, sync, args.repeats)
    del ref, ours
    if "load" not in skip:
        loads: dict[str, list[tuple[float, ...]]] = {"hf": [], "b4t": []}
        for _ in range(2):
            for which in ("hf", "b4t"):
                res = subprocess.run(
                    [sys.executable, "-c", LOAD_SCRIPT, str(tmp), which],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                loads[which].append(tuple(map(float, res.stdout.split()[-3:])))
        _report("checkpoint load", [x[0] for x in loads["hf"]], [x[0] for x in loads["b4t"]], "s")
        for col, label in ((1, "peak RSS growth: load"), (2, "... + first forward")):
            mem_r = statistics.median(x[col] for x in loads["hf"])
            mem_o = statistics.median(x[col] for x in loads["b4t"])
            print(
                f"{label:<28} transformers {mem_r:9.1f} MiB   b4t {mem_o:9.1f} MiB"
                f"   ratio {mem_o / max(mem_r, 1e-9):5.3f}"
            )
    print(json.dumps({"config": "small" if args.small else "bert-base"}))


if __name__ == "__main__":
    main()
