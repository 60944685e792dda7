"""``SpTokenizer``: the shared encode/decode surface over a SentencePiece model."""

from __future__ import annotations

import os
import unicodedata

from b4t.tokenizers._base import Offsets, TokenizerBase, _check_text
from b4t.tokenizers._trie import Trie

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

_MISSING_EXTRA = (
    "SpTokenizer needs the sentencepiece package: pip install 'b4t-tokenizers[sentencepiece]'"
)


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as exc:
        raise ImportError(_MISSING_EXTRA) from exc
    return sentencepiece


class _PieceTable:
    """id -> piece view over a SentencePiece processor (what ``id_to_token`` indexes)."""

    def __init__(self, sp: Any) -> None:
        self.sp = sp

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.sp.id_to_piece(i)


class _PieceDict(dict):
    """piece -> id, built once from the model (``token_to_id`` and ``in`` checks)."""


class SpTokenizer(TokenizerBase):
    """A SentencePiece model behind the same API as ``Tokenizer``.

    Args:
        sp_model_path: the ``.model`` file.
        remove_space: collapse runs of whitespace and strip the ends first.
        keep_accents: ``False`` applies NFKD and drops combining marks first.
        do_lower_case: lower-case first.
        **kwargs: ``TokenizerBase`` options. Unlike ``Tokenizer`` the start and
            end tokens default to none (pass e.g. ``token_end='</s>'``);
            ``token_unk`` and ``token_pad`` default to the model's own pieces.
            A special token the model lacks raises ``ValueError`` naming it.

    Without ``remove_space``/``keep_accents``/``do_lower_case`` preprocessing
    (``remove_space=False, keep_accents=True``) the pieces and ids are exactly
    sentencepiece's ``encode`` of the text with ``````/``''`` written ``"`` (a rewrite
    bert4torch always makes).
    """

    def __init__(
        self,
        sp_model_path: str | os.PathLike,
        remove_space: bool = True,
        keep_accents: bool = False,
        do_lower_case: bool = False,
        **kwargs: Any,
    ) -> None:
        spm = _import_sentencepiece()
        path = os.fspath(sp_model_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sentencepiece model not found: {path!r}")
        sp = spm.SentencePieceProcessor()
        try:
            sp.Load(path)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"not a sentencepiece model: {path!r} ({exc})") from exc
        self.sp_model = sp
        unk = sp.id_to_piece(sp.unk_id()) if sp.unk_id() >= 0 else None
        pad = sp.id_to_piece(sp.pad_id()) if sp.pad_id() >= 0 else None
        kwargs.setdefault("token_start", None)
        kwargs.setdefault("token_end", None)
        kwargs.setdefault("token_unk", unk)
        kwargs.setdefault("token_pad", pad)
        kwargs.setdefault("token_mask", None)
        super().__init__(**kwargs)
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        self.do_lower_case = do_lower_case
        self._token_dict = _PieceDict((sp.id_to_piece(i), i) for i in range(sp.get_piece_size()))
        self._id_to_token = _PieceTable(sp)
        required = [self._token_start, self._token_end, self._token_unk, self._token_pad]
        self._setup_specials([*required, self._token_mask, *self._extra_specials])
        self.tokens_trie = Trie(t for t in self.never_split if t)  # bert4torch's attribute

    def preprocess_text(self, inputs: str | None = None, *, text: str | None = None) -> str:
        """The text handed to sentencepiece after the configured clean-up (``text=`` is b4t
        0.1's keyword for ``inputs``)."""
        if inputs is not None and text is not None:
            raise TypeError("preprocess_text() takes inputs or text=, not both")
        text = inputs if text is None else text
        _check_text(text, "inputs")
        if self.remove_space:
            text = " ".join(text.split())
        text = text.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            text = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in text if not unicodedata.combining(c))
        if self.do_lower_case:
            text = text.lower()
        return text

    def _tokenize(self, text: str) -> list[str]:
        if self._pre_tokenize is not None:  # bert4torch: the words, joined by spaces
            text = " ".join(self._pre_tokenize(text))
        return self.sp_model.encode_as_pieces(self.preprocess_text(text))

    def _text_ids(self, text: str) -> list[int]:
        if self._token_translate or self._pre_tokenize is not None:
            return self.tokens_to_ids(self._translated(text))
        return self.sp_model.encode_as_ids(self.preprocess_text(text))

    def _text_ids_offsets(self, text: str) -> tuple[list[int], Offsets]:
        """Ids with character spans into the text given to sentencepiece (the original text
        when ``remove_space=False`` and ``keep_accents=True`` and it holds no ``````/``''``)."""
        processed = self.preprocess_text(text)
        sp = self.sp_model
        try:  # sentencepiece >= 0.2.1: character offsets directly
            mapping = sp.encode(processed, return_type="offset_mapping")
            return list(mapping["ids"]), [tuple(span) for span in mapping["offsets"]]
        except (TypeError, ValueError):
            pass
        proto = sp.encode_as_immutable_proto(processed)  # older releases: byte offsets
        char_at = [0] * (len(processed.encode("utf-8")) + 1)
        position = 0
        for index, char in enumerate(processed):
            width = len(char.encode("utf-8"))
            char_at[position : position + width] = [index] * width
            position += width
        char_at[position] = len(processed)
        ids = [piece.id for piece in proto.pieces]
        offsets = [(char_at[piece.begin], char_at[piece.end]) for piece in proto.pieces]
        return ids, offsets

    def id_to_token(self, i: int) -> str:
        """Piece of id ``i``; ``''`` for an id past the model's pieces (a padded
        embedding row), as in bert4torch; ``IndexError`` for a negative id."""
        if i >= self.vocab_size:
            return ""
        return super().id_to_token(i)

    def decode(self, ids: Iterable[int], tokens: Sequence[str] | None = None) -> str:
        """Text of ``ids`` as sentencepiece decodes their pieces after undoing
        ``token_translate``, as bert4torch does: control pieces such as ``<s>`` vanish,
        ``<unk>`` reads `` ⁇ ``, ids past the model's pieces read as nothing."""
        if tokens is None:
            tokens = self.ids_to_tokens(ids)
        inv = self._token_translate_inv
        return self.sp_model.decode_pieces([inv.get(t) or t for t in tokens if t])
