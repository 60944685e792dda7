"""Text helpers carried over from bert4torch's snippets (names and contracts kept)."""

from __future__ import annotations

import unicodedata

from b4t.tokenizers._chars import lower_chars

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Sequence
    from typing import Any


def convert_to_unicode(text: str | bytes, encoding: str = "utf-8", errors: str = "ignore") -> str:
    """Return ``text`` as ``str``, decoding bytes with ``encoding``."""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode(encoding, errors)
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def whitespace_tokenize(text: str) -> list[str]:
    """Strip ``text`` and split it on runs of whitespace."""
    return text.split()


def lowercase_and_normalize(text: str, never_split: Iterable[str] = ()) -> str:
    """Lower-case ``text`` and strip accents (NFD, drop ``Mn`` marks), as bert4torch 0.2.5 does.

    Occurrences of the ``never_split`` strings are kept as they are wherever they
    appear, inside words too (``"aKEEPb"`` stays ``"aKEEPb"`` with ``never_split=["KEEP"]``);
    at each position the first listed string that matches wins. Everything else is
    lower-cased one character at a time (so a word-final capital sigma becomes ``σ``,
    as in 0.2.5), then decomposed (NFD) with the combining marks (``Mn``) dropped.
    """
    protected = [t for t in never_split if t]
    if protected:
        import re  # only here: keeps `import b4t.tokenizers` light

        pattern = re.compile("|".join(map(re.escape, protected)))
        parts: list[str] = []
        last = 0
        for match in pattern.finditer(text):
            parts.append(lower_chars(text[last : match.start()]))
            parts.append(match.group())
            last = match.end()
        parts.append(lower_chars(text[last:]))
        text = "".join(parts)
    else:
        text = lower_chars(text)
    if text.isascii():
        return text
    text = unicodedata.normalize("NFD", text)
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def truncate_sequences(
    maxlen: int, indices: int | Sequence[int], *sequences: list[Any] | None
) -> list[list[Any]]:
    """Pop items from the longest sequence (the first on a tie) until the total fits ``maxlen``.

    ``indices`` is the position popped from each sequence (one int for all, or
    one per sequence: ``-1`` cuts from the right, ``0`` from the left). Empty or
    ``None`` sequences are ignored. Sequences are cut in place; the non-empty
    ones are returned. An index outside a sequence that must be cut raises
    ``IndexError`` naming it.
    """
    seqs = [s for s in sequences if s]
    if isinstance(indices, int):
        idx = [indices] * len(seqs)
    else:
        idx = list(indices)
        if len(idx) != len(sequences):
            raise ValueError(f"{len(idx)} indices for {len(sequences)} sequences")
        idx = [i for i, s in zip(idx, sequences) if s]
    if maxlen < 0:
        raise ValueError(f"maxlen must be >= 0, got {maxlen}")
    lengths = [len(s) for s in seqs]
    cuts = [0] * len(seqs)
    excess = sum(lengths) - maxlen
    while excess > 0:
        longest = max(range(len(seqs)), key=lambda i: (lengths[i], -i))
        lengths[longest] -= 1
        cuts[longest] += 1
        excess -= 1
    for seq, position, cut in zip(seqs, idx, cuts):
        for _ in range(cut):
            if not -len(seq) <= position < len(seq):
                raise IndexError(
                    f"truncate_sequences: index {position} is outside a sequence of "
                    f"length {len(seq)}"
                )
            seq.pop(position)
    return seqs


def text_segmentate(
    text: str,
    maxlen: int,
    seps: str = "\n",
    strips: str | None = None,
    truncate: bool = True,
) -> list[str]:
    """Split ``text`` into pieces of about ``maxlen`` characters, as bert4torch 0.2.5 does.

    The text is stripped (whitespace, then ``strips``). While it is longer than
    ``maxlen``, it is split on ``seps[0]`` (each piece keeps its separator) and
    consecutive pieces are packed together while ``len(packed) + len(piece) <
    maxlen``; each packed group is segmented again with the remaining separators.
    When the separators run out and a piece is still too long, ``truncate=True``
    cuts it into ``maxlen`` chunks. A text that fits (the empty text too) comes back
    as a one-item list.
    """
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    text = text.strip().strip(strips)
    if len(text) <= maxlen:
        return [text]
    if not seps:
        if truncate:
            return [text[i : i + maxlen] for i in range(0, len(text), maxlen)]
        return [text]
    sep, rest = seps[0], seps[1:]
    parts = text.split(sep)
    out: list[str] = []
    packed = ""
    for n, part in enumerate(parts):
        # a group is closed before a non-empty piece that would bring it to maxlen or more
        if packed and part and len(packed) + len(part) >= maxlen:
            out += text_segmentate(packed, maxlen, rest, strips, truncate)
            packed = ""
        packed += part if n == len(parts) - 1 else part + sep
    if packed:
        out += text_segmentate(packed, maxlen, rest, strips, truncate)
    return out


def merge_segmentate(sequences: Sequence[str], maxlen: int, sep: str = "") -> list[str]:
    """Join consecutive short sentences with ``sep`` while the result fits ``maxlen``.

    A sentence of ``maxlen`` characters or more that does not follow an open group
    is emitted on its own; empty sentences are dropped.
    """
    out: list[str] = []
    current = ""
    for piece in sequences:
        if current:
            if len(current) + len(sep) + len(piece) <= maxlen:
                current += sep + piece
            else:
                out.append(current)
                current = piece
        elif len(piece) < maxlen:
            current = piece
        else:
            out.append(piece)
    if current:
        out.append(current)
    return out


_STRATEGIES = ("insert", "delete", "replace", "random")


def _skip_positions(word: str, text: str, with_last: bool) -> set[int]:
    """Positions of ``text`` covered by the occurrences of ``word`` (overlaps included);
    without ``with_last`` each occurrence's last character stays free."""
    n = len(word)
    covered: set[int] = set()
    if not n:
        return covered
    start = text.find(word)
    while start >= 0:
        covered.update(range(start, start + n if with_last else start + n - 1))
        start = text.find(word, start + 1)
    return covered


def _generators(seed: int | random.Random | None) -> tuple[Any, Any]:
    """``(choose_positions, rng)`` of ``text_augmentation``: a numpy ``choice`` for the
    positions and a ``random``-like source for the noise strings and the strategy."""
    import random

    import numpy as np

    if seed is None:
        return np.random.choice, random
    if isinstance(seed, random.Random):
        return np.random.RandomState(seed.getrandbits(32)).choice, seed
    return np.random.RandomState(seed).choice, random.Random(seed)


def _draw_strategy(rng: Any) -> str:
    """One of insert/delete/replace, with two draws at most, as bert4torch 0.2.5 makes them."""
    if rng.random() < 0.333:
        return "insert"
    if rng.random() < 0.667:
        return "delete"
    return "replace"


def _noised(
    text: str, picks: Iterable[int], how: str, noise_dict: Sequence[str] | None, rng: Any
) -> str:
    """``text`` with noise inserted after, or replacing, or deleting the picked characters."""
    chars = list(text)
    for i in picks:
        if how == "delete":
            chars[i] = ""
            continue
        if not noise_dict:
            raise ValueError(f"text_augmentation needs a noise_dict to {how} characters")
        noise = rng.choice(noise_dict)
        chars[i] = chars[i] + noise if how == "insert" else noise
    return "".join(chars)


def text_augmentation(
    texts: str | list[str],
    noise_dict: Sequence[str] | None = None,
    noise_len: int = 0,
    noise_p: float = 0.0,
    skip_words: str | Iterable[str] | None = None,
    strategy: str = "random",
    allow_dup: bool = True,
    seed: int | random.Random | None = None,
) -> str | list[str]:
    """Simple EDA noise: insert, delete or replace characters at random positions.

    Args:
        texts: one text or a list of texts (a text comes back as a text, a list as a
            new list; the input is not modified).
        noise_dict: strings to insert or replace with (only needed when a text is
            actually changed by insertion or replacement).
        noise_len: how many positions to change per text (wins over ``noise_p``).
        noise_p: the fraction of positions to change when ``noise_len`` is 0; with
            both 0 the texts come back unchanged.
        skip_words: words whose characters are never chosen (for insertion, the
            last character of each occurrence may still be followed by noise).
        strategy: ``'insert'``, ``'delete'``, ``'replace'`` or ``'random'`` (one of
            the three, drawn per text).
        allow_dup: whether one position may be drawn more than once.
        seed: ``None`` draws from the global ``numpy.random`` (positions) and
            ``random`` (noise strings, strategy) generators exactly as bert4torch
            0.2.5 does; an int uses private generators seeded with it, which give
            what 0.2.5 gives after ``np.random.seed(seed); random.seed(seed)``; a
            ``random.Random`` is used for the noise and seeds the position generator.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if noise_len == 0 and noise_p == 0:
        return texts if isinstance(texts, str) else list(texts)
    choose_positions, rng = _generators(seed)
    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    if isinstance(skip_words, str):
        skip_words = [skip_words]
    words = list(skip_words or ())

    out = []
    for text in items:
        count = noise_len if noise_len > 0 else int(len(text) * noise_p)
        skipped: set[int] = set()
        for word in words:
            skipped |= _skip_positions(word, text, strategy != "insert")
        free = [i for i in range(len(text)) if i not in skipped]
        if not allow_dup:
            count = min(count, len(free))
        if count == 0 or not free:
            out.append(text)
            continue
        picks = choose_positions(free, count, replace=allow_dup)
        how = _draw_strategy(rng) if strategy == "random" else strategy
        out.append(_noised(text, picks, how, noise_dict, rng))
    return out[0] if single else out
