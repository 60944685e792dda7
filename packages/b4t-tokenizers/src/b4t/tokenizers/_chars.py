"""Character classes as BERT defines them, and lazily filled translation tables.

BERT's basic tokenizer looks at every character: control characters are
dropped, unicode whitespace becomes a space, CJK ideographs and punctuation
become words of their own. Doing that with a Python loop per character is the
main cost of a pure-Python tokenizer. Here each class is decided once per
distinct character and remembered in a ``dict`` subclass that ``str.translate``
reads at C speed; ``__missing__`` fills an entry the first time a character is
seen, so importing this module builds nothing.
"""

from __future__ import annotations

import unicodedata

# Ideograph blocks treated as CJK by BERT (the same ranges as Google's BERT and transformers).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk_codepoint(cp: int) -> bool:
    """True when ``cp`` lies in one of the CJK ideograph blocks BERT splits on."""
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_cjk_char(char: str) -> bool:
    """True for a one-character string that is a CJK ideograph."""
    return len(char) == 1 and is_cjk_codepoint(ord(char))


def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or any unicode space separator / line break."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs" or char.isspace()


def is_control(char: str) -> bool:
    """A unicode ``C*`` character other than tab, newline and carriage return."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """Every non-alphanumeric printable ASCII character, and unicode ``P*``."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def clean_char(char: str) -> str:
    """What BERT's text cleaning turns one character into: ``""``, ``" "`` or itself."""
    cp = ord(char)
    if cp == 0 or cp == 0xFFFD or is_control(char):
        return ""
    if is_whitespace(char):
        return " "
    return char


class SplitTable(dict):
    """``str.translate`` table: ordinal -> the text BERT's basic tokenizer makes of it.

    Control characters map to ``None`` (deleted), whitespace to ``" "``, CJK
    ideographs and punctuation to ``" c "`` (a word of their own), combining
    marks (``Mn``) to ``None`` when ``strip_marks`` (accent stripping runs on
    NFD text), everything else to itself. ``split_cjk`` / ``split_punct`` turn
    the two splitting rules off.
    """

    def __init__(self, strip_marks: bool, split_cjk: bool = True, split_punct: bool = True) -> None:
        super().__init__()
        self.strip_marks = strip_marks
        self.split_cjk = split_cjk
        self.split_punct = split_punct

    def classify(self, char: str) -> str:
        """The replacement text for one character (``""`` when it is dropped)."""
        cleaned = clean_char(char)
        if cleaned != char:
            return cleaned
        if self.strip_marks and unicodedata.category(char) == "Mn":
            return ""
        if (self.split_cjk and is_cjk_codepoint(ord(char))) or (
            self.split_punct and is_punctuation(char)
        ):
            return f" {char} "
        return char

    def __missing__(self, cp: int) -> str | None:
        value = self.classify(chr(cp)) or None
        self[cp] = value
        return value


_TABLES: dict[tuple[bool, bool, bool], SplitTable] = {}


def split_table(strip_marks: bool, split_cjk: bool = True, split_punct: bool = True) -> SplitTable:
    """The shared table for one combination of options (filled as characters are met)."""
    key = (strip_marks, split_cjk, split_punct)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = SplitTable(strip_marks, split_cjk, split_punct)
    return table


def lower_chars(text: str) -> str:
    """``text`` lower-cased one character at a time, as bert4torch and transformers' fast
    BERT normaliser do: ``str.lower`` without its one context rule (a word-final capital
    sigma becomes ``σ``, not ``ς``)."""
    if "\u03a3" in text:
        text = text.replace("\u03a3", "\u03c3")
    return text.lower()
