"""SpTokenizer: the same pieces and ids as sentencepiece itself, on a real and a trained model."""

from __future__ import annotations

import builtins
import unicodedata

import pytest

from b4t.tokenizers import SpTokenizer

spm = pytest.importorskip("sentencepiece")

N_LINES = 800


@pytest.fixture(scope="module")
def mistral(pypi_asset):
    return pypi_asset("mistral-sentencepiece")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """A small unigram model trained here on the real corpus with sentencepiece's trainer."""
    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[::2]),
        model_prefix=str(prefix),
        vocab_size=4000,
        model_type="unigram",
        character_coverage=0.98,
        byte_fallback=True,
        pad_id=3,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def _reference(path):
    sp = spm.SentencePieceProcessor()
    sp.Load(str(path))
    return sp


@pytest.mark.parametrize("model", ["mistral", "trained"])
def test_pieces_and_ids_equal_sentencepiece(request, model, corpus):
    path = request.getfixturevalue(model)
    sp = _reference(path)
    ours = SpTokenizer(path, remove_space=False, keep_accents=True)
    sample = corpus[:: max(1, len(corpus) // N_LINES)]
    for line in sample:
        # bert4torch's one rewrite that stays on: `` and '' become "
        plain = line.replace("``", '"').replace("''", '"')
        assert ours.tokenize(line) == sp.encode_as_pieces(plain)
        ids, segments = ours.encode(line)
        assert ids == sp.encode_as_ids(plain)
        assert segments == [0] * len(ids)
    batch, _ = ours.encode(sample[:50])
    assert batch == [
        sp.encode_as_ids(line.replace("``", '"').replace("''", '"')) for line in sample[:50]
    ]


def test_default_preprocessing(mistral):
    sp = _reference(mistral)
    ours = SpTokenizer(mistral, do_lower_case=True)
    text = "  Crème   BRÛLÉE\tis ``good''  "
    # remove_space, accents dropped after NFKD, lower-cased; then sentencepiece
    expected = 'creme brulee is "good"'
    assert ours.preprocess_text(text) == expected
    assert ours.encode(text)[0] == sp.encode_as_ids(expected)
    assert unicodedata.is_normalized("NFKD", ours.preprocess_text("ﬁ Å"))


def test_specials_decode_and_offsets(mistral):
    sp = _reference(mistral)
    ours = SpTokenizer(mistral, token_start="<s>", token_end="</s>", keep_accents=True)
    ids, segments = ours.encode("hello world", "second part")
    body_a, body_b = sp.encode_as_ids("hello world"), sp.encode_as_ids("second part")
    assert ids == [1, *body_a, 2, *body_b, 2]
    assert segments == [0] * (len(body_a) + 2) + [1] * (len(body_b) + 1)
    assert ours.decode(ids) == sp.decode(body_a + body_b)  # specials dropped
    text = "Tokenizers map text to ids."
    ids, _, offsets = ours.encode(text, return_offsets="span")
    pieces = ours.ids_to_tokens(ids[1:-1])
    for piece, (start, end) in zip(pieces, offsets[1:-1]):
        assert text[start:end].strip() == piece.replace("\u2581", " ").strip()
    assert offsets[-2][1] == len(text)
    assert offsets[0] == offsets[-1] == (0, 0)
    assert ours.decode(ours.encode("Ça marche, 中文")[0]) == "Ça marche, 中文"


def test_unknown_special_token_is_named(mistral):
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        SpTokenizer(mistral, token_start="[CLS]")


def test_missing_extra_names_it(monkeypatch, mistral):
    real_import = builtins.__import__

    def no_sentencepiece(name, *args, **kwargs):
        if name == "sentencepiece":
            raise ImportError("No module named 'sentencepiece'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sentencepiece)
    with pytest.raises(ImportError, match=r"b4t-tokenizers\[sentencepiece\]"):
        SpTokenizer(mistral)


def test_pre_tokenize_and_translate_hooks(mistral):
    sp = _reference(mistral)
    ours = SpTokenizer(mistral, pre_tokenize=lambda text: text.split("|"), keep_accents=True)
    # as bert4torch: the pre-tokenized words are joined by spaces, then encoded
    assert ours.encode("hello|Tokenizers")[0] == sp.encode_as_ids("hello Tokenizers")
    assert ours.tokenize("hello|Tokenizers") == sp.encode_as_pieces("hello Tokenizers")
    assert sp.encode_as_pieces("hello") == ["\u2581hell", "o"]
    translated = SpTokenizer(mistral, token_translate={"\u2581hell": "\u2581world"})
    ids = translated.encode("hello")[0]
    assert ids == [sp.piece_to_id("\u2581world"), sp.piece_to_id("o")]
    assert translated.decode(ids) == "hello"  # decode undoes the translation
