"""The BPE merge model: a word (a string of byte-level chars) to its token ids.

Merges apply one at a time, the lowest-ranked adjacent pair first and the leftmost of
equal ones: the order the Rust ``tokenizers`` BPE model's heap produces (it pops the
least ``(rank, position)`` and skips stale entries), so odd merge lists resolve the same
way. Words are cached, so a repeated word costs one dict look-up.
"""

from __future__ import annotations

from itertools import repeat
from operator import add, mul

from b4t.tokenizers._byte_level import BYTE_TO_CHAR, spell_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Words cached before the cache is emptied (bounds memory on endless novel input).
CACHE_LIMIT = 200_000
_NO_MERGE = 1 << 62  # the rank of a pair no merge covers


class BPEModel:
    """Byte-pair encoding over a vocabulary and a ranked merge list.

    Args:
        vocab: token -> id.
        merges: ``(left, right)`` pairs, best (rank 0) first; both parts and their
            concatenation must be tokens of ``vocab``.
        unk_id: id for a char the vocabulary lacks (``None``: such a char is dropped, as
            the Rust model does).
        fuse_unk: merge consecutive unknown chars into one ``unk_id``.
        byte_fallback: spell an unknown char as its UTF-8 bytes ``<0xXX>`` where the
            vocabulary has all of them.
        ignore_merges: a word that is a token as a whole is that token (LLaMA-3).
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        unk_id: int | None = None,
        fuse_unk: bool = False,
        byte_fallback: bool = False,
        ignore_merges: bool = False,
    ) -> None:
        self.vocab = dict(vocab)
        self.unk_id = unk_id
        self.fuse_unk = fuse_unk
        self.byte_fallback = byte_fallback
        self.ignore_merges = ignore_merges
        # The pair (left id, right id) as the int left * width + right -> its rank;
        # rank -> merged id.
        self._width = width = 1 + max(self.vocab.values(), default=0)
        self._pair_ranks: dict[int, int] = {}
        self._new_ids: list[int] = []
        for rank, (left, right) in enumerate(merges):
            try:
                pair = self.vocab[left] * width + self.vocab[right]
                new_id = self.vocab[left + right]
            except KeyError as exc:
                raise ValueError(
                    f"BPE merge {rank} ({left!r} {right!r}) uses a token missing from the "
                    f"vocabulary: {exc.args[0]!r}"
                ) from None
            self._pair_ranks[pair] = rank  # a repeated pair: the last wins, as in Rust
            self._new_ids.append(new_id)
        self._cache: dict[str, tuple[int, ...]] = {}
        # byte -> id of its char (None where the vocabulary lacks it)
        self._byte_ids = [self.vocab.get(char) for char in BYTE_TO_CHAR]

    def encode_word(self, word: str) -> tuple[int, ...]:
        """The ids of one pre-tokenized word (already in the vocabulary's spelling)."""
        ids = self._cache.get(word)
        if ids is None:
            ids = self.merge(word)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def _symbols(self, word: str) -> list[int]:
        """One id per char (unknown chars by byte fallback, ``unk_id`` or dropped).

        An unknown char waits as a pending ``unk_id`` that the next known char flushes,
        so fusing and ordering follow the Rust model (a byte-fallback char does not flush).
        """
        vocab = self.vocab
        symbols: list[int] = []
        pending_unk = False
        for char in word:
            token_id = vocab.get(char)
            if token_id is not None:
                if pending_unk:
                    symbols.append(self.unk_id)  # type: ignore[arg-type]
                    pending_unk = False
                symbols.append(token_id)
                continue
            if self.byte_fallback:
                spelled = [vocab.get(f"<0x{byte:02X}>") for byte in char.encode("utf-8")]
                if None not in spelled:
                    symbols.extend(spelled)  # type: ignore[arg-type]
                    continue
            if self.unk_id is not None:
                if pending_unk and not self.fuse_unk:
                    symbols.append(self.unk_id)
                pending_unk = True
        if pending_unk:
            symbols.append(self.unk_id)  # type: ignore[arg-type]
        return symbols

    def merge(self, word: str) -> tuple[int, ...]:
        """``encode_word`` without the cache."""
        if self.ignore_merges:
            whole = self.vocab.get(word)
            if whole is not None:
                return (whole,)
        return self._merge_symbols(self._symbols(word))

    def merge_bytes(self, text: str) -> tuple[int, ...]:
        """The ids of a plain-text word, through its UTF-8 bytes (byte-level vocabularies).

        Equal to ``merge(spell_bytes(text))``; faster when every byte char is a token.
        """
        if self.ignore_merges:
            whole = self.vocab.get(spell_bytes(text))
            if whole is not None:
                return (whole,)
        table = self._byte_ids
        symbols = [table[byte] for byte in text.encode("utf-8")]
        if None in symbols:  # a byte the vocabulary lacks: unk, byte fallback or dropped
            return self.merge(spell_bytes(text))
        return self._merge_symbols(symbols)  # type: ignore[arg-type]

    def _merge_symbols(self, symbols: list[int]) -> tuple[int, ...]:
        if len(symbols) < 2:
            return tuple(symbols)
        rank_of = self._pair_ranks.get
        width = self._width
        new_ids = self._new_ids
        none = _NO_MERGE
        # A pair as one int: cheaper to build and hash than a tuple.
        ranks = list(
            map(rank_of, map(add, map(mul, symbols, repeat(width)), symbols[1:]), repeat(none))
        )
        index = ranks.index
        while ranks:
            best = min(ranks)
            if best == none:
                break
            i = index(best)  # leftmost among equal ranks
            symbols[i] = merged = new_ids[best]
            del symbols[i + 1]
            del ranks[i]
            if i:
                ranks[i - 1] = rank_of(symbols[i - 1] * width + merged, none)
            if i < len(ranks):
                ranks[i] = rank_of(merged * width + symbols[i + 1], none)
        return tuple(symbols)
