"""Bad input raises an error that names the problem."""

from __future__ import annotations

import pytest

from b4t.tokenizers import SpTokenizer, Tokenizer, load_vocab, save_vocab


def test_missing_vocab_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        Tokenizer(str(missing))


def test_empty_vocab(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        Tokenizer(str(empty))
    with pytest.raises(ValueError, match="empty"):
        Tokenizer({})


@pytest.mark.parametrize("missing", ["[UNK]", "[CLS]", "[SEP]"])
def test_vocab_without_needed_special_token(tmp_path, missing):
    tokens = [t for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"] if t != missing]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=missing.replace("[", r"\[").replace("]", r"\]")):
        Tokenizer(str(path))


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", 5]])
def test_non_string_text(tiny_vocab, bad):
    tok = Tokenizer(str(tiny_vocab))
    with pytest.raises(TypeError, match="must be str"):
        tok.encode(bad)


def test_non_string_tokenize_and_second_text(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    with pytest.raises(TypeError, match="must be str"):
        tok.tokenize(1.5)
    with pytest.raises(TypeError, match="must be str"):
        tok.encode("a", 7)


def test_maxlen_smaller_than_special_tokens(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    with pytest.raises(ValueError, match="maxlen=1 is smaller than the 2 special tokens"):
        tok.encode("hello", maxlen=1)
    with pytest.raises(ValueError, match="maxlen=2 is smaller than the 3 special tokens"):
        tok.encode("hello", "world", maxlen=2)
    assert tok.encode("hello", maxlen=2)[0] == [2, 3]


def test_bad_options(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    with pytest.raises(ValueError, match="truncate_from"):
        tok.encode("a", maxlen=3, truncate_from="middle")
    with pytest.raises(ValueError, match="return_offsets"):
        tok.encode("a", return_offsets="spans")
    with pytest.raises(ValueError, match="2 first texts but 1 second"):
        tok.encode(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_input_chars_per_word"):
        Tokenizer(str(tiny_vocab), max_input_chars_per_word=0)


def test_save_vocab_round_trip_and_gaps(tmp_path, tiny_vocab):
    vocab = load_vocab(tiny_vocab)
    out = tmp_path / "copy.txt"
    save_vocab(out, vocab)
    assert load_vocab(out) == vocab
    with pytest.raises(ValueError, match="without gaps"):
        save_vocab(out, {"a": 0, "b": 2})


def test_load_vocab_simplified(tiny_vocab):
    new, keep = load_vocab(tiny_vocab, simplified=True, startswith=["[PAD]", "[UNK]", "[CLS]"])
    assert list(new)[:3] == ["[PAD]", "[UNK]", "[CLS]"]
    assert "[SEP]" not in new and "[X]" not in new  # bracketed: never produced by the tokenizer
    assert "##aff" in new and "中" in new
    old = load_vocab(tiny_vocab)
    assert [old[t] for t in new] == keep
    with pytest.raises(KeyError, match="nope"):
        load_vocab(tiny_vocab, simplified=True, startswith=["nope"])


def test_sp_missing_model_file(tmp_path):
    pytest.importorskip("sentencepiece")
    with pytest.raises(FileNotFoundError, match=r"missing\.model"):
        SpTokenizer(tmp_path / "missing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"garbage\.model"):
        SpTokenizer(garbage)
