"""Text helpers carried over from bert4torch's snippets (names and contracts kept)."""

from __future__ import annotations

import unicodedata

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
    """Lower-case ``text`` and strip accents (NFD, drop ``Mn`` marks), as uncased BERT does.

    Words in ``never_split`` (whole, between whitespace) are left untouched.
    """
    protected = set(never_split)
    if protected:
        parts = text.split(" ")
        return " ".join(p if p in protected else lowercase_and_normalize(p) for p in parts)
    text = text.lower()
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
    ones are returned.
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
            seq.pop(position if -len(seq) <= position < len(seq) else -1)
    return seqs


def text_segmentate(
    text: str,
    maxlen: int,
    seps: str = "\n",
    strips: str | None = None,
    truncate: bool = True,
) -> list[str]:
    """Split ``text`` into pieces of at most ``maxlen`` characters.

    Splits on ``seps[0]`` first (the separator stays at the end of its piece),
    packs consecutive pieces together while they fit, and splits a piece that
    is still too long on the next separator. When the separators run out and a
    piece is still too long, ``truncate=True`` cuts it into ``maxlen`` chunks.
    ``strips`` is passed to ``str.strip`` on the text first.
    """
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    text = text.strip().strip(strips)
    if len(text) <= maxlen:
        return [text] if text else []
    if not seps:
        if truncate:
            return [text[i : i + maxlen] for i in range(0, len(text), maxlen)]
        return [text]
    sep, rest = seps[0], seps[1:]
    parts = text.split(sep)
    parts = [p + sep for p in parts[:-1]] + [parts[-1]]
    out: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + len(part) > maxlen:
            out += text_segmentate(current, maxlen, rest, strips, truncate)
            current = ""
        current += part
    if current:
        out += text_segmentate(current, maxlen, rest, strips, truncate)
    return out


def merge_segmentate(sequences: Sequence[str], maxlen: int, sep: str = "") -> list[str]:
    """Join consecutive short sentences with ``sep`` while the result fits ``maxlen``."""
    out: list[str] = []
    current = ""
    for piece in sequences:
        if current and len(current) + len(sep) + len(piece) <= maxlen:
            current += sep + piece
        else:
            if current:
                out.append(current)
            current = piece
    if current:
        out.append(current)
    return out


_STRATEGIES = ("insert", "delete", "replace", "random")


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
        texts: one text or a list of texts (the same shape is returned).
        noise_dict: strings to insert or replace with (needed unless ``strategy='delete'``).
        noise_len: how many positions to change per text (wins over ``noise_p``).
        noise_p: the fraction of positions to change when ``noise_len`` is 0.
        skip_words: words whose characters are never touched.
        strategy: ``'insert'``, ``'delete'``, ``'replace'`` or ``'random'`` (one of
            the three, drawn per text).
        allow_dup: whether one position may be drawn more than once.
        seed: an int or a ``random.Random`` for reproducible noise.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    noise = list(noise_dict or ())
    if strategy != "delete" and not noise:
        raise ValueError(f"noise_dict is needed for strategy {strategy!r}")
    import random

    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    if isinstance(skip_words, str):
        skip_words = [skip_words]
    skips = [w for w in (skip_words or ()) if w]
    out = []
    for text in items:
        protected: set[int] = set()
        for word in skips:
            start = text.find(word)
            while start >= 0:
                protected.update(range(start, start + len(word)))
                start = text.find(word, start + 1)
        free = [i for i in range(len(text)) if i not in protected]
        count = noise_len if noise_len > 0 else int(len(text) * noise_p)
        if not allow_dup:
            count = min(count, len(free))
        if count <= 0 or not free:
            out.append(text)
            continue
        picks = [rng.choice(free) for _ in range(count)] if allow_dup else rng.sample(free, count)
        how = strategy if strategy != "random" else rng.choice(_STRATEGIES[:3])
        chars = list(text)
        for i in picks:
            if how == "insert":
                chars[i] = chars[i] + rng.choice(noise)
            elif how == "delete":
                chars[i] = ""
            else:
                chars[i] = rng.choice(noise)
        out.append("".join(chars))
    return out[0] if single else out
