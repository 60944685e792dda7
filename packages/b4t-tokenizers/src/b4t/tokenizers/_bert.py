"""``Tokenizer``: BERT WordPiece with the same ids as transformers, in pure Python.

Speed comes from three things: the basic tokenizer is a few C-level string
passes (see ``_wordpiece.BasicTokenizer``); every distinct word is split into
word pieces once and remembered (``_WordCache``: word -> tuple of ids); and the
per-text work is ``map`` + ``chain`` over that cache, with no Python loop per
word in the common case.
"""

from __future__ import annotations

import unicodedata
from itertools import chain, repeat
from os import PathLike

from b4t.tokenizers._base import Offsets, TokenizerBase, _check_text, _plain_options
from b4t.tokenizers._chars import is_cjk_char, is_punctuation, lower_chars
from b4t.tokenizers._text import lowercase_and_normalize
from b4t.tokenizers._trie import Trie
from b4t.tokenizers._vocab import load_vocab
from b4t.tokenizers._wordpiece import BasicTokenizer, WordpieceTokenizer

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


class _WordCache(dict):
    """word -> tuple of word-piece ids, filled on first sight; cleared when it grows past a cap."""

    def __init__(self, wordpiece: WordpieceTokenizer, vocab: Mapping[str, int], cap: int) -> None:
        super().__init__()
        self.wordpiece = wordpiece
        self.vocab = vocab
        self.cap = cap

    def __missing__(self, word: str) -> tuple[int, ...]:
        vocab = self.vocab
        ids = tuple(vocab[t] for t in self.wordpiece.word_pieces(word))
        if len(self) >= self.cap:
            self.clear()
        self[word] = ids
        return ids


class _TokenCache(_WordCache):
    """word -> tuple of the tokens ``tokenize`` shows for it."""

    def __missing__(self, word: str) -> tuple[str, ...]:  # type: ignore[override]
        tokens = tuple(self.wordpiece.word_tokens(word))
        if len(self) >= self.cap:
            self.clear()
        self[word] = tokens
        return tokens


class _SpanCache(_WordCache):
    """word -> tuple of ``(id, start, end)`` word pieces (character spans in the word)."""

    def __missing__(self, word: str) -> tuple[tuple[int, int, int], ...]:  # type: ignore[override]
        vocab = self.vocab
        spans = tuple((vocab[t], s, e) for t, s, e in self.wordpiece.spans(word))
        if len(self) >= self.cap:
            self.clear()
        self[word] = spans
        return spans


class _CharNorm(dict):
    """char -> what the basic tokenizer makes of it (lower-cased, accents stripped,
    cleaned, padded with spaces when it is CJK or punctuation)."""

    def __init__(self, table: dict, lower: bool, strip: bool) -> None:
        super().__init__()
        self.table, self.lower, self.strip = table, lower, strip

    def __missing__(self, char: str) -> str:
        out = char.lower() if self.lower else char
        if self.strip and not out.isascii():
            out = unicodedata.normalize("NFD", out)
        out = out.translate(self.table)
        self[char] = out
        return out


def _dropped_by_rematch(char: str) -> bool:
    """NUL, U+FFFD and ``Cc``/``Cf`` characters (tab and newline included): what
    bert4torch's ``rematch`` removes before matching."""
    return char in "\x00\ufffd" or unicodedata.category(char) in ("Cc", "Cf")


def _splits_apart(token: str) -> bool:
    """Whether the basic tokenizer would cut ``token`` up or drop part of it (a CJK,
    punctuation, space or control character in it)."""
    if token.isascii():  # every ASCII character but letters and digits is one of those
        return not token.isalnum()
    return any(
        is_cjk_char(c)
        or is_punctuation(c)
        or c.isspace()
        or unicodedata.category(c).startswith(("C", "Z"))
        for c in token
    )


def _read_vocab(token_dict: str | PathLike | Mapping[str, int]) -> dict[str, int]:
    """``{token: id}`` from a vocab file path or a mapping; an error names an empty one."""
    if isinstance(token_dict, dict) or hasattr(token_dict, "keys"):
        vocab = dict(token_dict)
        if not vocab:
            raise ValueError("token_dict is empty")
        return vocab
    return load_vocab(token_dict)


def _id_list(vocab: Mapping[str, int]) -> list[str]:
    """Each id's token, ``""`` for an id no token has."""
    inverse = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        inverse[index] = token
    return inverse


class Tokenizer(TokenizerBase):
    """BERT WordPiece tokenizer: ids equal to transformers' ``BertTokenizerFast``.

    Args:
        token_dict: a vocab file path or a ``{token: id}`` dict.
        do_lower_case: lower-case (and strip accents, see ``strip_accents``).
        do_basic_tokenize: run the basic tokenizer (clean, lower-case, split CJK
            and punctuation); ``False`` splits on whitespace only.
        do_tokenize_unk: ``tokenize`` shows ``[UNK]`` for a word that cannot be
            covered; by default (as in bert4torch) it shows the word itself, which
            ``encode`` maps to the ``[UNK]`` id. The ids are the same either way.
        split_unk_chars: keep the pieces of a word that cannot be covered and put
            ``[UNK]`` only on the characters that match nothing (changes the ids).
        never_split: tokens kept whole wherever they occur (like special tokens).
        tokenize_chinese_chars: split every CJK ideograph into its own word.
        strip_accents: ``None`` follows ``do_lower_case``.
        max_input_chars_per_word: longer words become ``[UNK]``.
        cache_size: how many distinct words the word-piece cache holds.
        **kwargs: ``TokenizerBase`` options (``token_start``, ``token_end``,
            ``token_unk``, ``token_pad``, ``token_mask``, ``add_special_tokens``,
            ``pre_tokenize``, ``token_translate``).

    Raises ``FileNotFoundError``/``ValueError`` for a missing or empty vocab, and
    ``ValueError`` naming a start, end or unknown token the vocab lacks.
    """

    def __init__(
        self,
        token_dict: str | PathLike | Mapping[str, int],
        do_lower_case: bool = True,
        do_basic_tokenize: bool = True,
        do_tokenize_unk: bool = False,
        *,
        never_split: Iterable[str] | None = None,
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        max_input_chars_per_word: int = 100,
        split_unk_chars: bool = False,
        cache_size: int = 1 << 18,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        vocab = _read_vocab(token_dict)
        self._token_dict = vocab
        self._id_to_token = _id_list(vocab)
        self._setup_specials([self._token_start, self._token_end, self._token_unk])
        if self._token_unk is None:
            raise ValueError("token_unk cannot be None for a WordPiece tokenizer")

        self._do_lower_case = bool(do_lower_case)
        self._do_basic_tokenize = bool(do_basic_tokenize)
        self.do_basic_tokenize = self._do_basic_tokenize  # bert4torch's public name
        self.basic_tokenizer = BasicTokenizer(
            do_lower_case=do_lower_case,
            tokenize_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
        )
        self.wordpiece_tokenizer = WordpieceTokenizer(
            vocab, self._token_unk, max_input_chars_per_word, do_tokenize_unk, split_unk_chars
        )
        # bert4torch's order (unk, end, pad, start, mask, added): the first listed wins.
        # ``never_split`` holds them all, as bert4torch's attribute of that name does.
        self.never_split = [*self.never_split, *(never_split or ())]
        self._protected_order = list(self.never_split)
        protected = self._special_tokens | {t for t in self.never_split if t} | {self._token_unk}
        self.tokens_trie = Trie(protected)
        import re  # here, not at module level: keeps `import b4t.tokenizers` light

        self._non_space_run = re.compile(r"\S+")
        alternatives = sorted(protected, key=len, reverse=True)
        self._protected_re = re.compile("|".join(map(re.escape, alternatives)))
        self._setup_caches(vocab, cache_size)
        self._hooks = self._pre_tokenize is not None or bool(self._token_translate)
        self._fast_encode = self._build_fast_encode()

    def _setup_caches(self, vocab: dict[str, int], cache_size: int) -> None:
        """The word caches (ids, tokens, offsets), the vocab tokens a text piece may spell
        whole, and the per-character normalisers of the offsets path."""
        self._cache = _WordCache(self.wordpiece_tokenizer, vocab, cache_size)
        self._token_cache = _TokenCache(self.wordpiece_tokenizer, vocab, cache_size)
        # A text piece (between protected tokens) that normalises to a vocab token is that
        # token, as in bert4torch ("##ing", "[unused1]"). That differs from the usual split
        # only for tokens holding a character the basic tokenizer splits off or drops; only
        # pieces this short can normalise to one of them.
        self._whole_tokens = frozenset(filter(_splits_apart, vocab))
        longest = max(map(len, self._whole_tokens), default=0)
        self._whole_max = 2 * longest + 8 if longest else 0
        # Caches for the offsets path: word -> ((id, start, end), ...) and char -> its text.
        self._span_cache = _SpanCache(self.wordpiece_tokenizer, vocab, cache_size)
        basic = self.basic_tokenizer
        self._char_norm = _CharNorm(basic.table, basic.do_lower_case, basic.strip_accents)
        self._char_norm_lowered = _CharNorm(basic.table, False, basic.strip_accents)

    def id_to_token(self, id: int | None = None, *, i: int | None = None) -> str:
        """Token of id ``id`` (bert4torch's name; ``i=`` is b4t 0.1's keyword); an
        ``IndexError`` naming the id when it is outside the vocabulary."""
        if (id is None) == (i is None):
            raise TypeError("id_to_token() takes the id once: id (or i=)")
        return super().id_to_token(id if i is None else i)

    def _build_fast_encode(self) -> Callable[[str], list[int] | None] | None:
        """The hot path of ``encode(text)``: ``[CLS] ids [SEP]``, or ``None`` when the text
        holds a protected token (the general path handles it). Everything it needs is bound
        as a closure variable, so a call does no attribute lookups."""
        start, end = self._token_start_id, self._token_end_id
        if self._hooks or not self._do_basic_tokenize or start is None or end is None:
            return None
        basic = self.basic_tokenizer
        search = self._protected_re.search
        word_ids = self._cache.__getitem__
        flatten = chain.from_iterable
        table = basic.table
        lower, strip = basic.do_lower_case, basic.strip_accents
        nfd = unicodedata.normalize

        whole_max, whole_tokens = self._whole_max, self._whole_tokens
        vocab = self._token_dict

        def encode_text(text: str) -> list[int] | None:
            if search(text):
                return None
            if len(text) <= whole_max:
                key = lowercase_and_normalize(text) if lower else text
                if key in whole_tokens:
                    return [start, vocab[key], end]
            if lower:
                text = lower_chars(text)
            if strip and not text.isascii():
                text = nfd("NFD", text)
            return [start, *flatten(map(word_ids, text.translate(table).split())), end]

        return encode_text

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fast_encode"] = None  # a closure: rebuilt after unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fast_encode = self._build_fast_encode()

    def encode(
        self,
        first_texts: str | Sequence[str],
        second_texts: str | Sequence[str] | None = None,
        maxlen: int | None = None,
        pattern: str = "S*E*E",
        truncate_from: str | int = "right",
        return_offsets: bool | str = False,
    ) -> tuple:
        """See ``TokenizerBase.encode``; one text or a list of texts without options is
        served by a specialised fast path that gives the same ids."""
        fast = self._fast_encode
        if fast is not None and _plain_options(second_texts, maxlen, pattern, return_offsets):
            if type(first_texts) is str:
                ids = fast(first_texts)
                if ids is not None:
                    return ids, [0] * len(ids)
            elif type(first_texts) is list and all(type(t) is str for t in first_texts):
                batch = list(map(fast, first_texts))
                if None not in batch:
                    return batch, [[0] * len(ids) for ids in batch]
        return super().encode(
            first_texts, second_texts, maxlen, pattern, truncate_from, return_offsets
        )

    # -- words ----------------------------------------------------------------------------------
    def _words(self, text: str) -> list[str]:
        """Words of a text without protected tokens."""
        if self._do_basic_tokenize:
            basic = self.basic_tokenizer
            if basic.do_lower_case:
                text = lower_chars(text)
            if basic.strip_accents and not text.isascii():
                text = unicodedata.normalize("NFD", text)
            return text.translate(basic.table).split()
        if self._do_lower_case:  # bert4torch lower-cases even without the basic tokenizer
            text = lowercase_and_normalize(text)
        return text.split()

    def _whole_token(self, piece: str) -> str | None:
        """The vocab token ``piece`` is as a whole (after lower-casing), else ``None``."""
        if len(piece) > self._whole_max:
            return None
        key = lowercase_and_normalize(piece) if self._do_lower_case else piece
        return key if key in self._whole_tokens else None

    def _piece_ids(self, piece: str) -> list[int]:
        """Ids of a text that holds no protected token."""
        whole = self._whole_token(piece)
        if whole is not None:
            return [self._token_dict[whole]]
        return list(chain.from_iterable(map(self._cache.__getitem__, self._words(piece))))

    def _text_ids(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if self._hooks:
            return self.tokens_to_ids(self._translated(text))
        if not self._protected_re.search(text):
            return self._piece_ids(text)
        ids: list[int] = []
        protected = self.tokens_trie.tokens
        for piece in self.tokens_trie.split(text):
            if piece in protected:
                ids.append(self.token_to_id(piece))
            else:
                ids += self._piece_ids(piece)
        return ids

    def _tokenize(self, text: str) -> list[str]:
        _check_text(text, "text")
        if self._pre_tokenize is not None:
            if self._do_lower_case:  # as bert4torch: the hook sees the lower-cased text
                text = lowercase_and_normalize(text, self._protected_order)
            tokens: list[str] = []
            for word in self._pre_tokenize(text):
                if word in self._token_dict:
                    tokens.append(word)
                else:
                    tokens += self._plain_tokens(word)
            return tokens
        return self._plain_tokens(text)

    def _piece_tokens(self, piece: str) -> list[str]:
        """Tokens of a text that holds no protected token."""
        whole = self._whole_token(piece)
        if whole is not None:
            return [whole]
        return list(chain.from_iterable(map(self._token_cache.__getitem__, self._words(piece))))

    def _plain_tokens(self, text: str) -> list[str]:
        if not self._protected_re.search(text):
            return self._piece_tokens(text)
        tokens: list[str] = []
        protected = self.tokens_trie.tokens
        for piece in self.tokens_trie.split(text):
            if piece in protected:
                tokens.append(piece)
            else:
                tokens += self._piece_tokens(piece)
        return tokens

    # -- offsets --------------------------------------------------------------------------------
    def _aligned(self, text: str) -> tuple[str, list[int]]:
        """The basic tokenizer's output string and, per character, its source index in ``text``.

        Characters are normalised one by one through a per-character cache (so
        every output character knows where it came from); lower-casing is per
        character too (a final capital sigma becomes ``σ``, as in the fast BERT
        normaliser and bert4torch), done on the whole text when that keeps its length.
        """
        source, norm = text, self._char_norm
        if self.basic_tokenizer.do_lower_case:
            lowered = lower_chars(text)
            if len(lowered) == len(text):
                source, norm = lowered, self._char_norm_lowered
        outs = list(map(norm.__getitem__, source))
        origin = list(chain.from_iterable(map(repeat, range(len(outs)), map(len, outs))))
        return "".join(outs), origin

    def _aligned_plain(self, text: str) -> tuple[str, list[int]]:
        """Like ``_aligned`` without the basic tokenizer: each character lower-cased (when
        asked) and cleaned of control characters on its own, as bert4torch's ``rematch``."""
        outs = []
        for char in text:
            out = lowercase_and_normalize(char) if self._do_lower_case else char
            outs.append("".join(c for c in out if not _dropped_by_rematch(c)))
        origin = list(chain.from_iterable(map(repeat, range(len(outs)), map(len, outs))))
        return "".join(outs), origin

    def _text_ids_offsets(self, text: str) -> tuple[list[int], Offsets]:
        if self._hooks or not self._do_basic_tokenize:
            tokens = self._translated(text)
            spans = self.rematch(text, tokens)
            offsets = [(s[0], s[-1] + 1) if s else (0, 0) for s in spans]
            return self.tokens_to_ids(tokens), offsets
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        protected = self.tokens_trie.tokens
        base = 0
        for piece in self.tokens_trie.split(text):
            whole = None if piece in protected else self._whole_token(piece)
            if piece in protected or whole is not None:
                ids.append(self.token_to_id(whole or piece))
                offsets.append((base, base + len(piece)))
            else:
                self._piece_offsets(piece, base, ids, offsets)
            base += len(piece)
        return ids, offsets

    def _piece_offsets(self, piece: str, base: int, ids: list[int], offsets: Offsets) -> None:
        normalized, origin = self._aligned(piece)
        spans = self._span_cache.__getitem__
        for match in self._non_space_run.finditer(normalized):
            w0 = match.start()
            for token_id, s, e in spans(match.group()):
                ids.append(token_id)
                offsets.append((base + origin[w0 + s], base + origin[w0 + e - 1] + 1))

    def _seed_pieces(self, text: str) -> tuple[list[int], list[str]]:
        tokens = self._translated(text)
        return self.tokens_to_ids(tokens), tokens

    def _seed_offsets(self, text: str, parts: list) -> list[list[int]]:
        # bert4torch rematches the (cut) token list, special tokens included.
        unk = self._token_unk
        return self.rematch(text, [unk if p is None else p for p in parts])

    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """For each token, the indices of the characters of ``text`` it came from.

        As in bert4torch 0.2.5: a bracketed token (``[CLS]``, ``[UNK]``, ``[unused1]``),
        like any special or unknown token, gets ``[]``; a character that normalises to
        several (a Hangul syllable under NFD) appears once per normalised character. A
        token that cannot be found in the rest of the text also gets ``[]``.
        """
        _check_text(text, "text")
        normalized, origin = (
            self._aligned(text) if self._do_basic_tokenize else self._aligned_plain(text)
        )
        skip = self._special_tokens | {self._token_unk}
        out: list[list[int]] = []
        pos = 0
        for token in tokens:
            if token in skip or (token[:1] == "[" and token[-1:] == "]"):
                out.append([])
                continue
            stem = self.stem(token)
            found = normalized.find(stem, pos)
            if found < 0:
                out.append([])
                continue
            pos = found + len(stem)
            out.append(origin[found:pos])
        return out

    # -- decode ---------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], tokens: Sequence[str] | None = None) -> str:
        """Readable text, exactly as bert4torch 0.2.5 writes it.

        Bracketed tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[unused1]``, ...)
        are dropped, other tokens kept; ``token_translate`` is undone (0.2.5 forgets
        to for WordPiece; its ``SpTokenizer`` does it); ``##`` pieces join the previous
        token; CJK characters take no spaces; a punctuation character is followed by a
        space, except CJK punctuation and ``+-/={(<[``; ``' s`` becomes ``'s`` before a
        space and ``3. 14`` becomes ``3.14``.
        """
        if not tokens:
            tokens = self.ids_to_tokens(ids)
        inv = self._token_translate_inv
        if inv:
            tokens = [inv.get(t) or t for t in tokens]
        return join_tokens(t for t in tokens if not (t[:1] == "[" and t[-1:] == "]"))


# Punctuation after which bert4torch's decode removes the space it put there.
_NO_SPACE_AFTER = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d"
    "\uff0f\uff1a\uff1b\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f"
    "\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff62\uff63\uff64\u3000\u3001"
    "\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\u3014"
    "\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030"
    "\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026"
    "\u2027\ufe4f\ufe51\ufe54\u00b7\uff01\uff1f\uff61\u3002+-/={(<["
)
_PATTERNS: list = []


def _patterns() -> list:
    """The clean-up substitutions, compiled on first use (``re`` stays out of import)."""
    if not _PATTERNS:
        import re

        punct = "|".join(map(re.escape, _NO_SPACE_AFTER))
        _PATTERNS.extend(
            [
                (re.compile(" +"), " "),
                (re.compile("' (re|m|s|t|ve|d|ll) "), "'\\1 "),
                (re.compile(f"({punct}) "), "\\1"),
                (re.compile(r"(\d\.) (\d)"), "\\1\\2"),
            ]
        )
    return _PATTERNS


def join_tokens(tokens: Iterable[str]) -> str:
    """Join WordPiece tokens into text with bert4torch 0.2.5's rules (see ``Tokenizer.decode``)."""
    text = ""
    for token in tokens:
        if token[:2] == "##":
            text += token[2:]
        elif len(token) == 1 and is_cjk_char(token):
            text += token
        elif len(token) == 1 and is_punctuation(token):
            text += token + " "
        elif text and is_cjk_char(text[-1]):
            text += token
        else:
            text += " " + token
    for pattern, replacement in _patterns():
        text = pattern.sub(replacement, text)
    return text.strip()
