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

from b4t.tokenizers._base import Offsets, TokenizerBase, _check_text
from b4t.tokenizers._chars import is_cjk_char, is_punctuation
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


class Tokenizer(TokenizerBase):
    """BERT WordPiece tokenizer: ids equal to transformers' ``BertTokenizerFast``.

    Args:
        token_dict: a vocab file path or a ``{token: id}`` dict.
        do_lower_case: lower-case (and strip accents, see ``strip_accents``).
        do_basic_tokenize: run the basic tokenizer (clean, lower-case, split CJK
            and punctuation); ``False`` splits on whitespace only.
        do_tokenize_unk: keep the pieces of a word that cannot be covered and
            emit ``[UNK]`` only for the characters that match nothing.
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
        cache_size: int = 1 << 18,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(token_dict, dict) or hasattr(token_dict, "keys"):
            vocab = dict(token_dict)
            if not vocab:
                raise ValueError("token_dict is empty")
        else:
            vocab = load_vocab(token_dict)
        self._token_dict = vocab
        size = max(vocab.values()) + 1
        inverse = [""] * size
        for token, index in vocab.items():
            inverse[index] = token
        self._id_to_token = inverse
        self._setup_specials([self._token_start, self._token_end, self._token_unk])
        if self._token_unk is None:
            raise ValueError("token_unk cannot be None for a WordPiece tokenizer")

        self._do_lower_case = bool(do_lower_case)
        self._do_basic_tokenize = bool(do_basic_tokenize)
        self.basic_tokenizer = BasicTokenizer(
            do_lower_case=do_lower_case,
            tokenize_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
        )
        self.wordpiece_tokenizer = WordpieceTokenizer(
            vocab, self._token_unk, max_input_chars_per_word, do_tokenize_unk
        )
        self.never_split = set(never_split or ())
        protected = self._special_tokens | self.never_split | {self._token_unk}
        self.tokens_trie = Trie(protected)
        import re  # here, not at module level: keeps `import b4t.tokenizers` light

        self._non_space_run = re.compile(r"\S+")
        alternatives = sorted(protected, key=len, reverse=True)
        self._protected_re = re.compile("|".join(map(re.escape, alternatives)))
        self._cache = _WordCache(self.wordpiece_tokenizer, vocab, cache_size)
        # Caches for the offsets path: word -> ((id, start, end), ...) and char -> its text.
        self._span_cache = _SpanCache(self.wordpiece_tokenizer, vocab, cache_size)
        basic = self.basic_tokenizer
        self._char_norm = _CharNorm(basic.table, basic.do_lower_case, basic.strip_accents)
        self._char_norm_lowered = _CharNorm(basic.table, False, basic.strip_accents)
        self._hooks = self._pre_tokenize is not None or bool(self._token_translate)
        self._fast_encode = self._build_fast_encode()

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

        def encode_text(text: str) -> list[int] | None:
            if search(text):
                return None
            if lower:
                text = text.lower()
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
        if (
            fast is not None
            and second_texts is None
            and maxlen is None
            and not return_offsets
            and pattern == "S*E*E"
        ):
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
                text = text.lower()
            if basic.strip_accents and not text.isascii():
                text = unicodedata.normalize("NFD", text)
            return text.translate(basic.table).split()
        return text.split()

    def _piece_ids(self, piece: str) -> list[int]:
        """Ids of a text that holds no protected token."""
        return list(chain.from_iterable(map(self._cache.__getitem__, self._words(piece))))

    def _text_ids(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if self._hooks:
            return self.tokens_to_ids(self._translated(text))
        if not self._protected_re.search(text):
            return list(chain.from_iterable(map(self._cache.__getitem__, self._words(text))))
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
            tokens: list[str] = []
            for word in self._pre_tokenize(text):
                if word in self._token_dict:
                    tokens.append(word)
                else:
                    tokens += self._plain_tokens(word)
            return tokens
        return self._plain_tokens(text)

    def _plain_tokens(self, text: str) -> list[str]:
        inverse = self._id_to_token
        if not self._protected_re.search(text):
            return [inverse[i] for i in self._piece_ids(text)]
        tokens: list[str] = []
        protected = self.tokens_trie.tokens
        for piece in self.tokens_trie.split(text):
            if piece in protected:
                tokens.append(piece)
            else:
                tokens += [inverse[i] for i in self._piece_ids(piece)]
        return tokens

    # -- offsets --------------------------------------------------------------------------------
    def _aligned(self, text: str) -> tuple[str, list[int]]:
        """The basic tokenizer's output string and, per character, its source index in ``text``.

        Characters are normalised one by one through a per-character cache (so
        every output character knows where it came from); the text is lower-cased
        as a whole when that keeps its length, which keeps context rules such as
        the Greek final sigma.
        """
        source, norm = text, self._char_norm
        if self.basic_tokenizer.do_lower_case:
            lowered = text.lower()
            if len(lowered) == len(text):
                source, norm = lowered, self._char_norm_lowered
        outs = list(map(norm.__getitem__, source))
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
            if piece in protected:
                ids.append(self.token_to_id(piece))
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

    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """For each token, the indices of the characters of ``text`` it came from.

        Special tokens get ``[]``; ``[UNK]`` covers the rest of its word.
        """
        _check_text(text, "text")
        normalized, origin = (
            self._aligned(text) if self._do_basic_tokenize else (text, list(range(len(text))))
        )
        out: list[list[int]] = []
        pos = 0
        n = len(normalized)
        for token in tokens:
            if token in self._special_tokens:
                out.append([])
                continue
            while pos < n and normalized[pos] == " ":
                pos += 1
            if token == self._token_unk:
                end = pos
                while end < n and normalized[end] != " ":
                    end += 1
            else:
                stem = self.stem(token)
                found = normalized.find(stem, pos)
                if found < 0:
                    out.append([])
                    continue
                pos, end = found, found + len(stem)
            out.append(sorted(set(origin[pos:end])))
            pos = end
        return out

    # -- decode ---------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], tokens: Sequence[str] | None = None) -> str:
        """Readable text: specials dropped, ``##`` pieces joined, CJK and punctuation unspaced."""
        if tokens is None:
            tokens = self.ids_to_tokens(ids)
        inv = self._token_translate_inv
        if inv:
            tokens = [inv.get(t) or t for t in tokens]
        return join_wordpieces(t for t in tokens if t not in self._special_tokens)


_ATTACH_LEFT = set(".,!?;:)]}%'\"，。！？；：、）】」』》〉…")
_ATTACH_RIGHT = set("([{$'\"（【「『《〈")
_ATTACH_BOTH = set("-/@_~^")
_CONTRACTIONS = {"s", "t", "re", "ve", "ll", "d", "m"}


def join_wordpieces(tokens: Iterable[str]) -> str:
    """Join BERT tokens into readable text.

    ``##x`` joins the previous token; CJK characters and CJK punctuation take no
    spaces; closing punctuation sticks to the left, opening to the right;
    ``don ' t`` becomes ``don't`` and ``3 . 14`` becomes ``3.14``.
    """
    parts: list[str] = []
    prev = ""
    prev_prev = ""
    for token in tokens:
        if not token:
            continue
        glue = True
        if not parts:
            pass
        elif token.startswith("##") and len(token) > 2:
            token = token[2:]
        elif (
            (
                len(token) == 1
                and (is_cjk_char(token) or (ord(token) > 0x2FFF and is_punctuation(token)))
            )
            or (
                len(prev) == 1
                and (is_cjk_char(prev) or (ord(prev) > 0x2FFF and is_punctuation(prev)))
            )
            or token in _ATTACH_LEFT
            or token in _ATTACH_BOTH
            or prev in _ATTACH_BOTH
            or (
                prev in _ATTACH_RIGHT
                and not (prev == "'" and prev_prev.isalnum() and token not in _CONTRACTIONS)
            )
            or (prev in (".", ",") and prev_prev.isdigit() and token[:1].isdigit())
        ):
            pass
        else:
            glue = False
        if not glue:
            parts.append(" ")
        parts.append(token)
        prev_prev, prev = prev, token
    return "".join(parts)
