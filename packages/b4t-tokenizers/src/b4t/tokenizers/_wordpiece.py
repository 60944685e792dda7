"""BERT's two tokenization stages: ``BasicTokenizer`` (text -> words) and
``WordpieceTokenizer`` (word -> greedy longest-match sub-words).

Both follow Google's BERT and transformers' ``BertTokenizerFast`` rules. The
basic stage is a handful of C-level string passes (``lower``, NFD when accents
are stripped, one ``str.translate`` with a lazily filled table, ``split``)
instead of a Python loop per character.
"""

from __future__ import annotations

import unicodedata

from b4t.tokenizers._chars import lower_chars, split_table

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


class BasicTokenizer:
    """Text -> words: clean, lower-case, strip accents, split CJK and punctuation.

    Args:
        do_lower_case: lower-case the text (and, unless ``strip_accents`` says
            otherwise, strip accents).
        never_split: words kept as they are when they appear whole between
            whitespace (no lower-casing, no punctuation split); bert4torch's default,
            BERT's five special tokens (``None``: none).
        tokenize_chinese_chars: make every CJK ideograph a word of its own.
        strip_accents: ``None`` follows ``do_lower_case``.
        do_split_on_punc: make every punctuation character a word of its own.
    """

    def __init__(
        self,
        do_lower_case: bool = True,
        never_split: Iterable[str] | None = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"),
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        do_split_on_punc: bool = True,
    ) -> None:
        self.do_lower_case = bool(do_lower_case)
        self.never_split = set(never_split or ())
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.do_split_on_punc = bool(do_split_on_punc)
        self.table = split_table(self.strip_accents, self.tokenize_chinese_chars, do_split_on_punc)
        # Cleaning and CJK splitting only: the pass that comes before never_split matching.
        self._pre_table = split_table(False, self.tokenize_chinese_chars, False)

    def normalize(self, text: str) -> str:
        """Lower-case and decompose as configured; returns text for ``self.table``."""
        if self.do_lower_case:
            text = lower_chars(text)
        if self.strip_accents and not text.isascii():
            text = unicodedata.normalize("NFD", text)
        return text

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into words (strings without whitespace)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if self.never_split:
            words: list[str] = []
            for word in text.translate(self._pre_table).split():
                if word in self.never_split:
                    words.append(word)
                else:
                    words += self.normalize(word).translate(self.table).split()
            return words
        return self.normalize(text).translate(self.table).split()


class WordpieceTokenizer:
    """Greedy longest-match-first sub-words of a word, ``##`` marking continuations.

    Args:
        vocab: token -> id.
        unk_token: the token whose id a word that cannot be covered gets.
        max_input_chars_per_word: longer words cannot be covered.
        do_tokenize_unk: what ``tokenize`` shows for a word that cannot be covered:
            ``False`` (bert4torch's default) keeps the word itself, which ``encode``
            then maps to the unknown id; ``True`` puts ``unk_token`` in its place.
            The ids are the same either way.
        split_unk_chars: keep the pieces of a word that cannot be covered and put
            ``unk_token`` only on the characters that match nothing (changes the ids).
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        unk_token: str = "[UNK]",
        max_input_chars_per_word: int = 100,
        do_tokenize_unk: bool = False,
        split_unk_chars: bool = False,
    ) -> None:
        if max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be >= 1, got {max_input_chars_per_word}"
            )
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self.do_tokenize_unk = do_tokenize_unk
        self.split_unk_chars = split_unk_chars
        # No vocab entry is longer than this, so longer candidates need not be tried.
        self._longest = max((len(t) for t in vocab), default=1)

    def spans(self, word: str) -> list[tuple[str, int, int]]:
        """``(token, start, end)`` for each sub-word (the tokens whose ids ``encode`` gives;
        ``unk_token`` for a word that cannot be covered); start/end index characters of
        ``word``."""
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [(self.unk_token, 0, n)]
        vocab = self.vocab
        if word in vocab:
            return [(word, 0, n)]
        out: list[tuple[str, int, int]] = []
        start = 0
        longest = self._longest
        while start < n:
            prefix = "##" if start else ""
            end = min(n, start + longest - len(prefix))
            found = None
            while end > start:
                piece = prefix + word[start:end]
                if piece in vocab:
                    found = piece
                    break
                end -= 1
            if found is None:
                if not self.split_unk_chars:
                    return [(self.unk_token, 0, n)]
                out.append((self.unk_token, start, start + 1))
                start += 1
                continue
            out.append((found, start, end))
            start = end
        return out

    def word_pieces(self, word: str) -> list[str]:
        """The sub-word tokens of one word whose ids ``encode`` gives (``unk_token`` for a
        word that cannot be covered)."""
        return [token for token, _, _ in self.spans(word)]

    def word_tokens(self, word: str) -> list[str]:
        """What ``tokenize`` shows for one word: its pieces, or for a word that cannot be
        covered the word itself (``unk_token`` with ``do_tokenize_unk``)."""
        pieces = self.word_pieces(word)
        if (
            not self.do_tokenize_unk
            and len(pieces) == 1
            and pieces[0] == self.unk_token
            and word != self.unk_token
        ):
            return [word]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Sub-words of every whitespace-separated word of ``text``."""
        out: list[str] = []
        for word in text.split():
            out += self.word_tokens(word)
        return out
