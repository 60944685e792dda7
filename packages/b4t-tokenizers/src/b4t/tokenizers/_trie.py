"""A character trie that cuts a text around a set of protected tokens."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Iterable


_END = ""  # key marking "a token ends here" (no real character is the empty string)


class Trie:
    """Leftmost-longest matching of whole tokens (special tokens, ``never_split``).

    >>> Trie(["[CLS]", "[SEP]"]).split("[CLS] hi[SEP]")
    ['[CLS]', ' hi', '[SEP]']
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self.data: dict = {}
        self.tokens: set[str] = set()
        for token in tokens:
            self.add(token)

    def add(self, word: str | None = None, *, token: str | None = None) -> None:
        """Protect ``word`` (the empty string is ignored); ``token=`` is b4t 0.1's keyword."""
        if word is not None and token is not None:
            raise TypeError("Trie.add() takes word or token=, not both")
        token = word if token is None else token
        if not token:
            return
        self.tokens.add(token)
        node = self.data
        for char in token:
            node = node.setdefault(char, {})
        node[_END] = True

    def _longest_at(self, text: str, start: int) -> int:
        """End of the longest token starting at ``start``, or -1."""
        node = self.data
        best = -1
        for pos in range(start, len(text)):
            node = node.get(text[pos])
            if node is None:
                break
            if _END in node:
                best = pos + 1
        return best

    @staticmethod
    def cut_text(text: str, offsets: list[int]) -> list[str]:
        """``text`` cut at ``offsets`` (ascending character positions; the end is added):
        the non-empty pieces in order. ``offsets`` gets ``len(text)`` appended, as in
        bert4torch (and transformers); an offset before the previous one is skipped."""
        offsets.append(len(text))
        pieces: list[str] = []
        start = 0
        for end in offsets:
            if end > start:
                pieces.append(text[start:end])
                start = end
        return pieces

    def split(self, text: str) -> list[str]:
        """Cut ``text`` into protected tokens and the (non-empty) pieces between them."""
        if not self.tokens:
            return [text] if text else []
        pieces: list[str] = []
        first = self.data
        last = 0
        pos = 0
        n = len(text)
        while pos < n:
            if text[pos] in first:
                end = self._longest_at(text, pos)
                if end > 0:
                    if pos > last:
                        pieces.append(text[last:pos])
                    pieces.append(text[pos:end])
                    last = pos = end
                    continue
            pos += 1
        if last < n:
            pieces.append(text[last:])
        return pieces
