"""Id-for-id parity with transformers' BertTokenizerFast and BertTokenizerLegacy on real text."""

from __future__ import annotations

from pathlib import Path

import pytest

from b4t.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")
from transformers import BertTokenizerFast  # noqa: E402
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # noqa: E402

N_LEGACY = 500  # the pure-Python reference is slow: compare it on a slice of the corpus
CONFIGS = [
    ("chinese", True),
    ("chinese", False),
    ("uncased", True),
    ("uncased", False),
]


def _vocab(name: str, chinese_vocab: Path, uncased_vocab: Path) -> str:
    return str(chinese_vocab if name == "chinese" else uncased_vocab)


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"{v}-lower={lc}" for v, lc in CONFIGS])
def pair(request, chinese_vocab, uncased_vocab):
    name, lower = request.param
    vocab = _vocab(name, chinese_vocab, uncased_vocab)
    fast = BertTokenizerFast(vocab=vocab, do_lower_case=lower)
    return Tokenizer(vocab, do_lower_case=lower), fast, vocab, lower


def test_corpus_is_real_and_mixed(corpus):
    assert 2500 <= len(corpus) <= 5000
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in line) for line in corpus) > 1500
    assert sum(line.isascii() for line in corpus) > 1000


def test_ids_equal_fast_tokenizer(pair, corpus):
    ours, fast, _, _ = pair
    reference = fast(corpus)["input_ids"]
    differing = [line for line, ref in zip(corpus, reference) if ours.encode(line)[0] != ref]
    assert differing == []
    # The reference really tokenizes (a wrong vocab argument gives all-[UNK]).
    unk = fast.unk_token_id
    assert sum(i == unk for ids in reference for i in ids) < 0.6 * sum(map(len, reference))


def test_offsets_equal_fast_offset_mapping(pair, corpus):
    ours, fast, _, _ = pair
    encoded = fast(corpus, return_offsets_mapping=True)
    for line, ref_ids, ref_offsets in zip(corpus, encoded["input_ids"], encoded["offset_mapping"]):
        ids, segments, offsets = ours.encode(line, return_offsets="span")
        assert ids == ref_ids, line
        assert offsets == [tuple(span) for span in ref_offsets], line
        assert segments == [0] * len(ids)


def test_ids_equal_legacy_tokenizer(pair, corpus):
    ours, _, vocab, lower = pair
    legacy = BertTokenizerLegacy(vocab, do_lower_case=lower)
    step = max(1, len(corpus) // N_LEGACY)
    sample = corpus[::step]
    differing = [line for line in sample if ours.encode(line)[0] != legacy.encode(line)]
    assert differing == []


def test_tokens_equal_fast_tokens(pair, corpus):
    ours, fast, vocab, lower = pair
    shows_unk = Tokenizer(vocab, do_lower_case=lower, do_tokenize_unk=True)
    n_unknown = 0
    for line in corpus[::10]:
        ref_ids = fast(line)["input_ids"]
        ref = fast.convert_ids_to_tokens(ref_ids)
        assert shows_unk.tokenize(line) == ref
        # by default (bert4torch) a word that cannot be covered is shown as itself
        mine = ours.tokenize(line)
        assert len(mine) == len(ref)
        assert [r if r == "[UNK]" else m for m, r in zip(mine, ref)] == ref
        assert ours.tokens_to_ids(mine) == ref_ids
        n_unknown += sum(m != r for m, r in zip(mine, ref))
    assert n_unknown > 0  # the corpus has unknown words, so the default was exercised


def test_pairs_and_truncation_equal_fast(pair, corpus):
    ours, fast, _, _ = pair
    firsts, seconds = corpus[0:600:3], corpus[1:600:3]
    ref = fast(firsts, seconds, truncation="longest_first", max_length=40)
    ids, segments = ours.encode(firsts, seconds, maxlen=40)
    for i in range(len(firsts)):
        # transformers cuts the second text on a tie, bert4torch (and b4t) the first:
        # compare only where the cut is unambiguous or not needed.
        a = len(ours.encode(firsts[i])[0]) - 2
        b = len(ours.encode(seconds[i])[0]) - 1
        if a + b + 1 <= 40 or abs(a - b) > (a + b + 1 - 40):
            assert ids[i] == ref["input_ids"][i], (firsts[i], seconds[i])
            assert segments[i] == ref["token_type_ids"][i]


def test_batch_equals_single(pair, corpus):
    ours, _, _, _ = pair
    batch_ids, batch_segments = ours.encode(corpus[:200])
    assert batch_ids == [ours.encode(line)[0] for line in corpus[:200]]
    assert batch_segments == [[0] * len(ids) for ids in batch_ids]


def test_special_tokens_inside_text_match_fast(pair):
    ours, fast, _, _ = pair
    for text in ["[CLS] a [MASK] b[SEP]", "x[UNK]y", "[mask] is not special", "[PAD][PAD]"]:
        ref = fast(text, return_offsets_mapping=True)
        ids, _, offsets = ours.encode(text, return_offsets="span")
        assert ids == ref["input_ids"], text
        assert offsets == [tuple(o) for o in ref["offset_mapping"]], text


@pytest.mark.parametrize(
    "options",
    [
        {"tokenize_chinese_chars": False},
        {"strip_accents": False},
        {"do_lower_case": False, "strip_accents": True},
    ],
    ids=["no-cjk-split", "lower-keep-accents", "cased-strip-accents"],
)
def test_options_match_fast_tokenizer(options, corpus, chinese_vocab):
    vocab = str(chinese_vocab)
    fast = BertTokenizerFast(vocab=vocab, **options)
    ours = Tokenizer(vocab, **options)
    sample = [*corpus[::6], "Crème Brûlée à la Ωμέγα", "ÉCOLE 東京 naïve café"]
    encoded = fast(sample, return_offsets_mapping=True)
    for line, ref_ids, ref_offsets in zip(sample, encoded["input_ids"], encoded["offset_mapping"]):
        ids, _, offsets = ours.encode(line, return_offsets="span")
        assert ours.encode(line)[0] == ids == ref_ids, line
        assert offsets == [tuple(span) for span in ref_offsets], line
