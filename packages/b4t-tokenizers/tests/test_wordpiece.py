"""The WordPiece Tokenizer's options, hooks, encode variants, decode and parts."""

from __future__ import annotations

import pytest

from b4t.tokenizers import BasicTokenizer, Tokenizer, Trie, WordpieceTokenizer, load_vocab


def test_wordpiece_greedy_longest_match(tiny_vocab):
    wp = WordpieceTokenizer(load_vocab(tiny_vocab))
    assert wp.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert wp.tokenize("abcd") == ["a", "##b", "##c", "##d"]
    # z matches nothing: the word cannot be covered; tokenize shows it whole (bert4torch),
    # its id is [UNK]'s; with do_tokenize_unk the token itself is [UNK]
    assert wp.tokenize("abz") == ["abz"]
    assert wp.word_pieces("abz") == ["[UNK]"]
    assert WordpieceTokenizer(load_vocab(tiny_vocab), do_tokenize_unk=True).tokenize("abz") == [
        "[UNK]"
    ]
    assert wp.spans("unaffable") == [("un", 0, 2), ("##aff", 2, 5), ("##able", 5, 9)]


def test_split_unk_chars_keeps_known_pieces(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab), split_unk_chars=True)
    assert tok.tokenize("abzc") == ["[CLS]", "a", "##b", "[UNK]", "##c", "[SEP]"]
    _, _, offsets = tok.encode("abzc", return_offsets="span")
    assert offsets == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (0, 0)]
    unk = Tokenizer(str(tiny_vocab)).token_to_id("[UNK]")
    plain = Tokenizer(str(tiny_vocab))
    assert plain.tokenize("abzc") == ["[CLS]", "abzc", "[SEP]"]
    assert plain.encode("abzc")[0][1:-1] == [unk]
    shown = Tokenizer(str(tiny_vocab), do_tokenize_unk=True)
    assert shown.tokenize("abzc") == ["[CLS]", "[UNK]", "[SEP]"]
    assert shown.encode("abzc")[0] == plain.encode("abzc")[0]


def test_max_input_chars_per_word(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab), max_input_chars_per_word=3)
    assert tok.tokenize("abc abcd") == ["[CLS]", "a", "##b", "##c", "abcd", "[SEP]"]
    assert tok.encode("abc abcd")[0][-2] == tok.token_to_id("[UNK]")


def test_basic_tokenizer_rules():
    basic = BasicTokenizer()
    assert basic.tokenize("Héllo,\tWORLD!\x00 中文") == ["hello", ",", "world", "!", "中", "文"]
    cased = BasicTokenizer(do_lower_case=False)
    assert cased.tokenize("Héllo 中文") == ["Héllo", "中", "文"]
    assert BasicTokenizer(do_lower_case=False, strip_accents=True).tokenize("Héllo") == ["Hello"]
    assert BasicTokenizer(strip_accents=False).tokenize("Héllo") == ["héllo"]
    assert BasicTokenizer(tokenize_chinese_chars=False).tokenize("中文a") == ["中文a"]
    assert BasicTokenizer(do_split_on_punc=False).tokenize("a,b") == ["a,b"]
    assert BasicTokenizer(never_split=["[X]", "KEEP"]).tokenize("[X] KEEP x,[Y]") == [
        "[X]",
        "KEEP",
        "x",
        ",",
        "[",
        "y",
        "]",
    ]
    # unicode whitespace splits, control and format characters vanish
    assert basic.tokenize("a\u3000b\u200bc\u2028d") == ["a", "bc", "d"]


def test_never_split_and_special_tokens_kept_whole(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab), never_split=["[X]"])
    assert tok.tokenize("a[X]b [MASK]c") == ["[CLS]", "a", "[X]", "b", "[MASK]", "c", "[SEP]"]
    _, _, offsets = tok.encode("a[X]b", return_offsets="span")
    assert offsets[1:4] == [(0, 1), (1, 4), (4, 5)]


def test_trie_leftmost_longest():
    trie = Trie(["ab", "abc", "c"])
    assert trie.split("xabcab") == ["x", "abc", "ab"]
    assert trie.split("cc") == ["c", "c"]
    assert Trie().split("abc") == ["abc"]
    assert trie.split("") == []


def test_pre_tokenize_and_token_translate(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab), pre_tokenize=lambda text: text.split("|"))
    assert tok.tokenize("hello|abc") == ["[CLS]", "hello", "a", "##b", "##c", "[SEP]"]
    translated = Tokenizer(str(tiny_vocab), token_translate={"cat": "x"})
    ids, _ = translated.encode("the cat")
    assert translated.ids_to_tokens(ids) == ["[CLS]", "the", "x", "[SEP]"]
    assert translated.decode(ids) == "the cat"


def test_encode_pair_patterns(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    v = load_vocab(tiny_vocab)
    ids, segments = tok.encode("hello", "world")
    assert ids == [v["[CLS]"], v["hello"], v["[SEP]"], v["world"], v["[SEP]"]]
    assert segments == [0, 0, 0, 1, 1]
    ids, segments = tok.encode("hello", "world", pattern="S*ES*E")
    assert ids == [v["[CLS]"], v["hello"], v["[SEP]"], v["[CLS]"], v["world"], v["[SEP]"]]
    assert segments == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="pattern"):
        tok.encode("a", "b", pattern="SE")


def test_truncation_sides_and_index(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    words = "a b c x"
    assert tok.tokenize(words, maxlen=4) == ["[CLS]", "a", "b", "[SEP]"]
    assert tok.ids_to_tokens(tok.encode(words, maxlen=4)[0]) == ["[CLS]", "a", "b", "[SEP]"]
    left = tok.encode(words, maxlen=4, truncate_from="left")[0]
    assert tok.ids_to_tokens(left) == ["[CLS]", "c", "x", "[SEP]"]
    # an int indexes the token list with [CLS] and [SEP] (bert4torch 0.2.5)
    middle = tok.encode(words, maxlen=5, truncate_from=2)[0]
    assert tok.ids_to_tokens(middle) == ["[CLS]", "a", "c", "x", "[SEP]"]
    first = tok.encode(words, maxlen=5, truncate_from=1)[0]
    assert tok.ids_to_tokens(first) == ["[CLS]", "b", "c", "x", "[SEP]"]
    before_end = tok.encode(words, maxlen=5, truncate_from=-2)[0]
    assert tok.ids_to_tokens(before_end) == ["[CLS]", "a", "b", "c", "[SEP]"]
    with pytest.raises(IndexError, match="index 9"):
        tok.encode(words, maxlen=5, truncate_from=9)
    # a pair: the longer text is cut first
    ids, segments = tok.encode("a b c x", "hello", maxlen=6)
    assert tok.ids_to_tokens(ids) == ["[CLS]", "a", "b", "[SEP]", "hello", "[SEP]"]
    assert segments == [0, 0, 0, 0, 1, 1]
    ids, _, offsets = tok.encode("a b c x", maxlen=4, truncate_from="left", return_offsets="span")
    assert offsets == [(0, 0), (4, 5), (6, 7), (0, 0)]


def test_offsets_as_rematch_lists(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    _, _, spans = tok.encode("Hello, unaffable", return_offsets="rematch")
    assert spans == [[], [0, 1, 2, 3, 4], [5], [7, 8], [9, 10, 11], [12, 13, 14, 15], []]
    tokens = tok.tokenize("Hello, unaffable")
    assert tok.rematch("Hello, unaffable", tokens) == spans


def test_decode_follows_bert4torch_rules(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    assert tok.decode(tok.encode("Hello, world!")[0]) == "hello, world!"
    assert tok.decode(tok.encode("中文 hello 中")[0]) == "中文hello中"
    assert tok.decode(tok.encode("unaffable 3.14")[0]) == "unaffable 3.14"
    # bert4torch's rule joins "' t" only before a space: at the end the space stays
    assert tok.decode(tok.encode("don't")[0]) == "don' t"
    assert tok.decode(tok.encode("don't a")[0]) == "don't a"
    assert tok.decode([], tokens=["[CLS]", "a", "##b", "[PAD]"]) == "ab"
    # [UNK] and [unused*] (any bracketed token) are dropped, as 0.2.5 does
    assert tok.decode([], tokens=["a", "[UNK]", "b", "[unused3]", "中"]) == "a b中"


def test_vocab_lookups(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab))
    assert tok.token_to_id("hello") == 8
    assert tok.token_to_id("nope") == tok.token_to_id("[UNK]") == 1
    assert tok.id_to_token(8) == "hello"
    assert tok.tokens_to_ids(["a", "##b"]) == [18, 19]
    assert tok.ids_to_tokens([18, 19]) == ["a", "##b"]
    assert tok.stem("##b") == "b" and tok.stem("b") == "b"
    assert tok.vocab_size == 32
    with pytest.raises(IndexError, match="id 99"):
        tok.id_to_token(99)


def test_dict_vocab_and_cache_cap(tiny_vocab):
    vocab = load_vocab(tiny_vocab)
    tok = Tokenizer(vocab, cache_size=2)
    for _ in range(3):
        assert tok.tokenize("a b c hello") == ["[CLS]", "a", "b", "c", "hello", "[SEP]"]
    assert len(tok._cache) <= 2


def test_no_start_end_tokens(tiny_vocab):
    tok = Tokenizer(str(tiny_vocab), token_start=None, token_end=None)
    assert tok.encode("hello") == ([8], [0])
    assert tok.encode("hello", "world") == ([8, 9], [0, 1])


def test_pickle_round_trip_keeps_behaviour(tiny_vocab):
    import pickle

    tok = Tokenizer(str(tiny_vocab), never_split=["[X]"])
    text = "Hello, unaffable [X] 中文"
    before = tok.encode(text)
    copy = pickle.loads(pickle.dumps(tok))
    assert copy.encode(text) == before
    assert copy.encode([text, "abc"]) == tok.encode([text, "abc"])
    assert copy.tokenize(text) == tok.tokenize(text)
