"""Decoding speed of b4t.generation: cached against uncached, and b4t against
``transformers.generate()``, interleaved.

    nox -s bench -- generation
    OMP_NUM_THREADS=2 python benchmarks/bench_generation.py [--repeats 3]

1. A small random GPT-style decoder (``b4t.generation.testing.TinyCausalLM``) generates
   ``--new-tokens`` tokens for a batch of prompts with greedy search (beam width 1), beam
   search (width 4) and top-k sampling, each with ``use_states=True`` (one new token per
   step through the KV cache) and ``use_states=False`` (the whole sequence re-read every
   step), alternating; it prints tokens/s (generated tokens of the returned sequences per
   second, median over repeats) and the cached/uncached ratio. There is no end token, so
   every run makes exactly the same number of steps. Then b4t's loop drives the
   transformers GPT-2 of the same size against its own ``generate()`` (the loop's cost).
2. The issue #13 comparison (alone with ``--b4t-model``): b4t's own GPT-2 (``model='gpt2'``,
   b4t's KV cache) under ``SeqGeneration`` against ``transformers.generate()`` on the
   transformers GPT-2 the weights came from: GPT-2 small (124M, random weights), a
   32-token prompt, 64 new tokens, greedy at batch 1 and 8, 4-beam search and top-p
   sampling at batch 1, then T5-small (60M, random weights) greedy seq2seq at batch 1 and
   8 (``Seq2SeqGeneration`` on b4t's ``t5``), interleaved, outputs compared. Each case
   also shows the peak of live tensor memory allocated during one run of each side
   (``torch.profiler`` memory events; the KV cache is most of it), and the script prints
   the batch-1 limit set by memory bandwidth (every new token reads all fp32 weights
   once: measured read bandwidth / weight bytes). The ``seed b1`` row is a bert4torch-style
   ``AutoRegressiveDecoder`` subclass whose ``predict`` feeds the whole sequence each step
   (no cache code): b4t reuses the prefix by itself (``b4t.models.prefix_reuse``); one run
   with ``reuse_prefixes = False`` is printed beside it for scale::

    OMP_NUM_THREADS=2 python benchmarks/bench_generation.py --b4t-model --repeats 3
    python benchmarks/bench_generation.py --b4t-model --gpt2-config tiny --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from b4t.generation import AutoRegressiveDecoder, SeqGeneration
from b4t.generation.testing import TinyCausalLM

MODES = {
    "greedy": dict(mode="beam_search", kwargs=dict(topk=1)),
    "beam4": dict(mode="beam_search", kwargs=dict(topk=4)),
    "sample": dict(mode="random_sample", kwargs=dict(topk=20, n=1)),
}


def run_once(
    model: TinyCausalLM, prompts: list[list[int]], name: str, use_states: bool, new_tokens: int
) -> float:
    """Seconds for one batch_generate call."""
    spec = MODES[name]
    gen = SeqGeneration(
        model, end_id=None, maxlen=new_tokens, mode=spec["mode"], use_states=use_states
    )
    generator = torch.Generator().manual_seed(0)
    extra = {"generator": generator} if spec["mode"] == "random_sample" else {}
    start = time.perf_counter()
    out = gen.batch_generate(prompts, **spec["kwargs"], **extra)
    elapsed = time.perf_counter() - start
    first = out[0] if spec["mode"] == "beam_search" else out[0][0]
    assert len(first) == new_tokens, (name, len(first))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument(
        "--no-transformers", action="store_true", help="only part 1's cached/uncached table"
    )
    parser.add_argument(
        "--b4t-model", action="store_true", help="only part 2: b4t's GPT-2 and T5 vs generate()"
    )
    parser.add_argument("--gpt2-config", choices=sorted(GPT2_CONFIGS), default="small")
    parser.add_argument("--batches", default="1,8", help="greedy batch sizes (--b4t-model)")
    args = parser.parse_args()
    if args.b4t_model:
        compare_b4t_model(args)
        compare_t5(args)
        return
    cached_against_uncached(args)
    if not args.no_transformers:
        compare_with_transformers(args)
        compare_b4t_model(args)
        compare_t5(args)


def cached_against_uncached(args: argparse.Namespace) -> None:
    """The tiny random decoder: KV-cached against uncached decoding, every mode."""

    torch.manual_seed(0)
    model = TinyCausalLM(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_heads=4,
        num_layers=args.layers,
        max_positions=args.prompt_len + args.new_tokens + 8,
    ).eval()
    prompts = [
        torch.randint(2, args.vocab, (args.prompt_len - i,)).tolist() for i in range(args.batch)
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; decoder hidden "
        f"{args.hidden}, {args.layers} layers, vocab {args.vocab}; batch {args.batch}, prompt "
        f"<= {args.prompt_len}, {args.new_tokens} new tokens; median of {args.repeats}"
    )
    with torch.no_grad():
        for name in MODES:  # warm-up
            run_once(model, prompts[:1], name, True, 4)
            run_once(model, prompts[:1], name, False, 4)
        times: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.repeats):
            for name in MODES:
                for use_states in (True, False):
                    elapsed = run_once(model, prompts, name, use_states, args.new_tokens)
                    times.setdefault((name, use_states), []).append(elapsed)
    tokens = args.batch * args.new_tokens
    print(f"{'mode':<8} {'cached tok/s':>13} {'uncached tok/s':>15} {'ratio':>7}")
    for name in MODES:
        cached = tokens / statistics.median(times[(name, True)])
        uncached = tokens / statistics.median(times[(name, False)])
        print(f"{name:<8} {cached:>13.1f} {uncached:>15.1f} {cached / uncached:>6.2f}x")


def compare_with_transformers(args: argparse.Namespace) -> None:
    """Greedy decoding of one random GPT-2: b4t's loop against ``generate``, interleaved.

    The same transformers model runs under both loops (b4t drives it through
    the decoder protocol with its ``DynamicCache``), so this times the decoding
    loop, not the model. Prompts have one length (no padding) and the outputs
    are checked to be identical.
    """
    try:
        import transformers
    except ImportError:
        print("transformers not installed: skipping the generate() comparison")
        return
    config = transformers.GPT2Config(
        vocab_size=args.vocab,
        n_positions=args.prompt_len + args.new_tokens + 8,
        n_embd=args.hidden,
        n_layer=args.layers,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,  # no end token: both loops make every step
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    prompts = torch.randint(2, args.vocab, (args.batch, args.prompt_len))
    gen = SeqGeneration(model, end_id=None, maxlen=args.new_tokens, mode="beam_search")

    def run_b4t() -> list[list[int]]:
        return gen.batch_generate(prompts.tolist(), topk=1)

    def run_hf() -> list[list[int]]:
        out = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=args.new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        return out[:, args.prompt_len :].tolist()

    times: dict[str, list[float]] = {"b4t": [], "transformers": []}
    with torch.no_grad():
        assert run_b4t() == run_hf(), "b4t and transformers greedy outputs differ"
        for _ in range(args.repeats):
            for name, fn in (("b4t", run_b4t), ("transformers", run_hf)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    tokens = args.batch * args.new_tokens
    b4t = tokens / statistics.median(times["b4t"])
    hf = tokens / statistics.median(times["transformers"])
    print(
        f"GPT-2 greedy (transformers {transformers.__version__}, same model, identical output): "
        f"b4t {b4t:.1f} tok/s, generate() {hf:.1f} tok/s, ratio {b4t / hf:.2f}x"
    )


GPT2_CONFIGS = {
    "small": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
    "tiny": dict(vocab_size=1000, n_positions=128, n_embd=64, n_layer=2, n_head=4),
}


def read_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Measured read bandwidth in bytes/s: ``buf.sum()`` reads each byte once (best of
    ``repeats``), as a decoding step reads each weight once."""
    buf = torch.ones(megabytes * 2**20 // 4)
    buf.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - start)
    return buf.numel() * 4 / best


def peak_tensor_mib(fn: Callable[[], object]) -> float | None:
    """MiB of the largest total of live tensor bytes allocated while ``fn()`` runs (its own
    allocations, not what was alive before), replayed from ``torch.profiler``'s memory
    events: the CPU analogue of ``torch.cuda.max_memory_allocated``, free of the C
    allocator's caching. None where this torch's profiler does not expose the events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except AttributeError:
        return None
    live = peak = 0
    for _, nbytes in changes:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def race(
    label: str,
    run_b4t: Callable[[], list],
    run_hf: Callable[[], list],
    tokens: int,
    repeats: int,
    sampling: bool = False,
) -> None:
    """One table row: outputs compared (also the warm-up), peak tensor memory of one run
    each, then ``repeats`` interleaved timed runs; tokens/s from the medians."""
    times: dict[str, list[float]] = {"b4t": [], "hf": []}
    with torch.no_grad():
        same = run_b4t() == run_hf()
        peaks = peak_tensor_mib(run_b4t), peak_tensor_mib(run_hf)
        for _ in range(repeats):
            for name, fn in (("b4t", run_b4t), ("hf", run_hf)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    b4t = tokens / statistics.median(times["b4t"])
    ref = tokens / statistics.median(times["hf"])
    same_text = "yes" if same else ("n/a (sampling)" if sampling else "NO")
    memory = f"{_mib(peaks[0])} / {_mib(peaks[1])}"
    print(f"{label:<10} {b4t:>10.1f} {ref:>15.1f} {b4t / ref:>6.2f}x  {memory:>26}  {same_text}")


def compare_b4t_model(args: argparse.Namespace) -> None:
    """b4t's GPT-2 + KV cache + SeqGeneration against transformers' GPT-2 + generate()."""
    import tempfile

    import transformers

    from b4t.models import build_transformer_model

    config = transformers.GPT2Config(
        **GPT2_CONFIGS[args.gpt2_config], bos_token_id=None, eos_token_id=None
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = build_transformer_model(checkpoint_path=tmp, model="gpt2").eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = read_bandwidth()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads; GPT-2 {args.gpt2_config} "
        f"({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M params, random weights), "
        f"prompt {args.prompt_len}, {args.new_tokens} new tokens, median of {args.repeats}"
    )
    print(
        f"memory bandwidth (read): {bandwidth / 1e9:.1f} GB/s; fp32 weights "
        f"{weight_bytes / 2**20:.0f} MiB; batch-1 limit {bandwidth / weight_bytes:.1f} tok/s"
    )
    vocab = config.vocab_size
    cases: list[tuple[str, int, dict, dict]] = [
        (f"greedy b{b}", b, dict(mode="beam_search", topk=1), dict(do_sample=False))
        for b in (int(x) for x in args.batches.split(","))
    ]
    cases += [
        ("beam4 b1", 1, dict(mode="beam_search", topk=4), dict(do_sample=False, num_beams=4)),
        ("top-p b1", 1, dict(mode="random_sample", topp=0.9, n=1),
         dict(do_sample=True, top_p=0.9, top_k=0)),
    ]  # fmt: skip
    print(
        f"{'case':<10} {'b4t tok/s':>10} {'generate tok/s':>15} {'ratio':>7}  "
        f"{'peak tensor MiB b4t / gen':>26}  same output"
    )
    for label, batch, ours_kw, hf_kw in cases:
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(2, vocab, (batch, args.prompt_len), generator=g)
        kw = dict(ours_kw)
        mode = kw.pop("mode")
        gen = SeqGeneration(ours, end_id=None, maxlen=args.new_tokens, mode=mode)

        def run_b4t(
            gen: SeqGeneration = gen, kw: dict = kw, prompts: torch.Tensor = prompts
        ) -> list[list[int]]:
            out = gen.batch_generate(prompts.tolist(), **kw)
            return [o[0] if gen.mode == "random_sample" else o for o in out]

        def run_hf(hf_kw: dict = hf_kw, prompts: torch.Tensor = prompts) -> list[list[int]]:
            out = hf.generate(
                prompts, attention_mask=torch.ones_like(prompts),
                max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                pad_token_id=0, **hf_kw,
            )  # fmt: skip
            return out[:, args.prompt_len :].tolist()

        sampling = "top-p" in label
        race(label, run_b4t, run_hf, batch * args.new_tokens, args.repeats, sampling)
    seed_style(args, ours, hf)


class SeedStyleDecoder(AutoRegressiveDecoder):
    """bert4torch's CDial-GPT / GPT2-ML ``predict``: the whole sequence every step, the
    last position's probabilities; no cache code."""

    model: torch.nn.Module

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: object):
        return self.model([torch.cat([inputs[0], output_ids], 1)])[:, -1]


def seed_style(args: argparse.Namespace, ours: torch.nn.Module, hf: torch.nn.Module) -> None:
    """A seed-style decoder on b4t's GPT-2, greedy batch 1: with prefix reuse (the
    default) against generate(), and one run without it for scale."""
    prompt = torch.randint(2, hf.config.vocab_size, (1, args.prompt_len),
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    decoder = SeedStyleDecoder(start_id=None, end_id=None, maxlen=args.new_tokens)
    decoder.model = ours

    def run_b4t() -> list[list[int]]:
        return [decoder.beam_search([prompt], topk=1, add_btz_dim=False).tolist()]

    def run_hf() -> list[list[int]]:
        out = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, pad_token_id=0, do_sample=False,
        )  # fmt: skip
        return out[:, args.prompt_len :].tolist()

    race("seed b1", run_b4t, run_hf, args.new_tokens, args.repeats)
    decoder.reuse_prefixes = False
    with torch.no_grad():
        start = time.perf_counter()
        run_b4t()
        elapsed = time.perf_counter() - start
    print(f"  (the seed-style decoder without prefix reuse: {args.new_tokens / elapsed:.1f} tok/s)")


T5_CONFIGS = {
    "small": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "tiny": dict(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
}


def compare_t5(args: argparse.Namespace) -> None:
    """b4t's T5 + KV cache + Seq2SeqGeneration against transformers' T5 + generate()."""
    import tempfile

    import transformers

    from b4t.generation import Seq2SeqGeneration
    from b4t.models import build_transformer_model

    name = "small" if args.gpt2_config == "small" else "tiny"
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**T5_CONFIGS[name]))
    hf.eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = build_transformer_model(checkpoint_path=tmp, model="t5").eval()
    print(f"T5 {name} ({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M params), "
          f"source {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy")  # fmt: skip
    vocab = T5_CONFIGS[name]["vocab_size"]
    for batch in (int(x) for x in args.batches.split(",")):
        g = torch.Generator().manual_seed(2)
        sources = torch.randint(2, vocab, (batch, args.prompt_len), generator=g)
        gen = Seq2SeqGeneration(
            ours, start_id=0, end_id=None, maxlen=args.new_tokens, mode="beam_search"
        )

        def run_b4t(gen: Seq2SeqGeneration = gen, src: torch.Tensor = sources) -> list:
            return gen.batch_generate(src.tolist(), topk=1)

        def run_hf(src: torch.Tensor = sources) -> list:
            out = hf.generate(
                src, attention_mask=torch.ones_like(src), max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens, do_sample=False, decoder_start_token_id=0,
                eos_token_id=None,
            )  # fmt: skip
            return out[:, 1:].tolist()

        race(f"t5 greedy b{batch}", run_b4t, run_hf, batch * args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
