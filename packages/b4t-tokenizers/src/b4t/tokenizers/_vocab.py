"""Reading and writing BERT ``vocab.txt`` files (one token per line, id = line number)."""

from __future__ import annotations

import os

from b4t.tokenizers._chars import is_cjk_char, is_punctuation

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

PathLike = str | os.PathLike


def load_vocab(
    dict_path: PathLike,
    encoding: str = "utf-8",
    simplified: bool = False,
    startswith: Iterable[str] | None = None,
) -> dict[str, int] | tuple[dict[str, int], list[int]]:
    """Read a vocab file into ``{token: id}``.

    With ``simplified=True`` the vocab is pruned the way bert4keras does it:
    tokens in ``startswith`` come first, then every token the tokenizer can
    produce (multi-character tokens holding a CJK character or punctuation,
    which drops ``[unused*]`` and the bracketed specials unless listed in
    ``startswith``), renumbered from 0. It then returns
    ``(new_vocab, keep_tokens)`` where ``keep_tokens[new_id] = old_id`` selects
    the matching rows of an embedding matrix.

    Raises ``FileNotFoundError`` naming the path, ``ValueError`` for an empty file.
    """
    path = os.fspath(dict_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocab file not found: {path!r}")
    with open(path, encoding=encoding) as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    if not lines:
        raise ValueError(f"vocab file is empty: {path!r}")
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        vocab[token] = index
    if not simplified:
        return vocab

    new_vocab: dict[str, int] = {}
    keep_tokens: list[int] = []
    for token in startswith or ():
        if token not in vocab:
            raise KeyError(f"startswith token {token!r} is not in {path!r}")
        if token not in new_vocab:
            new_vocab[token] = len(new_vocab)
            keep_tokens.append(vocab[token])
    for token, old_id in sorted(vocab.items(), key=lambda item: item[1]):
        if token in new_vocab or not _producible(token):
            continue
        new_vocab[token] = len(new_vocab)
        keep_tokens.append(old_id)
    return new_vocab, keep_tokens


def _producible(token: str) -> bool:
    """False for multi-character tokens holding CJK or punctuation (never emitted by BERT)."""
    if len(token) > 1:
        body = token[2:] if token.startswith("##") else token
        if any(is_cjk_char(c) or is_punctuation(c) for c in body):
            return False
    return True


def save_vocab(dict_path: PathLike, token_dict: Mapping[str, int], encoding: str = "utf-8") -> None:
    """Write ``token_dict`` as a vocab file, one token per line in id order.

    Ids must be exactly ``0..n-1``; a gap or a duplicate raises ``ValueError``.
    """
    ordered = sorted(token_dict.items(), key=lambda item: item[1])
    ids = [index for _, index in ordered]
    if ids != list(range(len(ids))):
        raise ValueError("save_vocab needs ids 0..n-1 without gaps or duplicates")
    bad = [token for token, _ in ordered if "\n" in token]
    if bad:
        raise ValueError(f"tokens with a newline cannot be saved: {bad[:3]!r}")
    with open(os.fspath(dict_path), "w", encoding=encoding) as handle:
        handle.write("".join(token + "\n" for token, _ in ordered))
