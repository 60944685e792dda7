"""Added tokens (special and not): found whole in the text before pre-tokenization.

Matching follows the Rust ``AddedVocabulary``: leftmost-longest over all tokens, then a
token marked ``single_word`` is skipped when a word char touches it, ``lstrip``/``rstrip``
widen the match over neighbouring whitespace. ``normalized=False`` tokens are found in the
raw text, ``normalized=True`` ones in the normalized pieces between them.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

_NOT_WHITE_SPACE = "\x1c\x1d\x1e\x1f"  # str.isspace says yes; Unicode White_Space says no


def _is_space(char: str) -> bool:
    return char.isspace() and char not in _NOT_WHITE_SPACE


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class AddedToken:
    """One added token, with the flags of ``tokenizer.json``'s ``added_tokens`` entries."""

    id: int
    content: str
    special: bool = False
    normalized: bool = False
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


class AddedTokenSplitter:
    """Cuts text into ``(piece, token_id)`` pairs: ``token_id`` is ``None`` for plain text."""

    def __init__(self, tokens: Iterable[AddedToken]) -> None:
        import regex

        self.tokens = {token.content: token for token in tokens if token.content}
        # Longest first, so an alternation at one start prefers the longest token.
        ordered = sorted(self.tokens, key=len, reverse=True)
        self.pattern = (
            regex.compile("|".join(regex.escape(content) for content in ordered))
            if ordered
            else None
        )

    def split(self, text: str) -> list[tuple[str, int | None]]:
        if self.pattern is None:
            return [(text, None)]
        out: list[tuple[str, int | None]] = []
        last = 0
        for match in self.pattern.finditer(text):
            start, stop = match.span()
            token = self.tokens[match.group()]
            if token.single_word and (
                (start > 0 and _is_word_char(text[start - 1]))
                or (stop < len(text) and _is_word_char(text[stop]))
            ):
                continue
            if token.lstrip:
                while start > last and _is_space(text[start - 1]):
                    start -= 1
            if token.rstrip:
                while stop < len(text) and _is_space(text[stop]):
                    stop += 1
            if start > last:
                out.append((text[last:start], None))
            out.append((text[start:stop], token.id))
            last = stop
        if last < len(text) or not out:
            out.append((text[last:], None))
        return out
