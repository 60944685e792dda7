"""The byte-level alphabet of GPT-2-style BPE: each of the 256 bytes spelled as one printable char.

Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, soft hyphen, ...)
are moved to U+0100 upwards, in byte order. A token of a byte-level vocabulary is a string
over these 256 chars, so it spells a byte string.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def _byte_chars() -> list[str]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    kept = set(printable)
    chars: list[str] = []
    moved = 0
    for byte in range(256):
        if byte in kept:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + moved))
            moved += 1
    return chars


#: ``BYTE_TO_CHAR[b]`` spells byte ``b``.
BYTE_TO_CHAR: tuple[str, ...] = tuple(_byte_chars())
#: The inverse map, char -> byte.
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in enumerate(BYTE_TO_CHAR)}
#: ``bytes.translate``-free spelling: latin-1 decoding the UTF-8 bytes then this table.
_SPELL_TABLE = {byte: char for byte, char in enumerate(BYTE_TO_CHAR)}


def spell_bytes(text: str) -> str:
    """``text``'s UTF-8 bytes in the byte-level alphabet (one char per byte)."""
    return text.encode("utf-8").decode("latin-1").translate(_SPELL_TABLE)


def is_spelled(token: str) -> bool:
    """Whether every char of ``token`` is in the byte-level alphabet."""
    return all(char in CHAR_TO_BYTE for char in token)


def token_bytes(token: str) -> bytes:
    """The bytes a token stands for, as the Rust ``ByteLevel`` decoder reads it.

    A token spelled wholly in the alphabet gives its bytes; any other token (an added token
    with a space or a CJK char, say) gives its own UTF-8.
    """
    try:
        return bytes([CHAR_TO_BYTE[char] for char in token])
    except KeyError:
        return token.encode("utf-8")


def decode_tokens(tokens: Iterable[str]) -> str:
    """Join tokens into text: their bytes, decoded as UTF-8 with U+FFFD for broken sequences."""
    return b"".join(token_bytes(token) for token in tokens).decode("utf-8", errors="replace")
