"""The encode/decode surface shared by the WordPiece and SentencePiece tokenizers."""

from __future__ import annotations

from b4t.tokenizers._text import truncate_sequences

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

Offsets = list[tuple[int, int]]
PATTERNS = ("S*E*E", "S*ES*E")
# return_offsets value -> the kind of offsets built
OFFSET_MODES = {
    False: None,
    True: "seed",
    "rematch": "seed",
    "transformers": "transformers",
    "span": "span",
}


class TokenizerBase:
    """Special tokens, id <-> token maps, ``encode`` (single, pair, batch) and ``decode``.

    Subclasses provide ``_tokenize(text) -> tokens`` (no special tokens),
    ``_text_ids(text) -> ids`` and ``_text_ids_offsets(text) -> (ids, offsets)``,
    and fill ``self._token_dict`` / ``self._id_to_token`` before ``_setup_specials``.
    """

    _token_dict: Mapping[str, int]
    _id_to_token: Sequence[str] | Mapping[int, str]

    def __init__(
        self,
        token_start: str | None = "[CLS]",
        token_end: str | None = "[SEP]",
        token_unk: str | None = "[UNK]",
        token_pad: str | None = "[PAD]",
        token_mask: str | None = "[MASK]",
        add_special_tokens: str | Iterable[str] | None = None,
        pre_tokenize: Callable[[str], Iterable[str]] | None = None,
        token_translate: Mapping[str, str] | None = None,
    ) -> None:
        self._token_start = token_start
        self._token_end = token_end
        self._token_unk = token_unk
        self._token_pad = token_pad
        self._token_mask = token_mask
        if isinstance(add_special_tokens, str):
            add_special_tokens = [add_special_tokens]
        self._extra_specials = list(add_special_tokens or ())
        if pre_tokenize is not None and not callable(pre_tokenize):
            raise TypeError("pre_tokenize must be a callable text -> iterable of words")
        self._pre_tokenize = pre_tokenize
        self._token_translate = dict(token_translate or {})
        self._token_translate_inv = {v: k for k, v in self._token_translate.items()}

    # -- special tokens ---------------------------------------------------------------------
    def _setup_specials(self, required: Iterable[str | None]) -> None:
        """Resolve special-token ids; each token in ``required`` must be in the vocab."""
        for token in required:
            if token is not None and token not in self._token_dict:
                raise ValueError(f"special token {token!r} is not in the vocabulary")
        get = self._token_dict.get
        self._token_start_id = get(self._token_start) if self._token_start else None
        self._token_end_id = get(self._token_end) if self._token_end else None
        self._token_unk_id = get(self._token_unk) if self._token_unk else None
        self._token_pad_id = get(self._token_pad) if self._token_pad else None
        self._token_mask_id = get(self._token_mask) if self._token_mask else None
        names = [self._token_start, self._token_end, self._token_pad, self._token_mask]
        self._special_tokens = {t for t in names + self._extra_specials if t}
        self._n_start = int(self._token_start_id is not None)
        self._n_end = int(self._token_end_id is not None)
        # bert4torch's list of tokens never split (unk, end, pad, start, mask, then added)
        order = (self._token_unk, self._token_end, self._token_pad, self._token_start)
        specials = [t for t in (*order, self._token_mask) if isinstance(t, str)]
        self.never_split: list[str] = [*specials, *self._extra_specials]

    @property
    def special_tokens(self) -> set[str]:
        """The start, end, pad and mask tokens and ``add_special_tokens`` (``rematch`` gives
        them no characters)."""
        return set(self._special_tokens)

    # -- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids."""
        return len(self._id_to_token)

    @property
    def _vocab_size(self) -> int:
        """bert4torch's name: the number of vocabulary entries (``len(token_dict)``)."""
        return len(self._token_dict)

    @property
    def _token_dict_inv(self) -> dict[int, str]:
        """bert4torch's ``{id: token}`` dict (built on first use)."""
        inverse = self.__dict__.get("_token_dict_inv_cache")
        if inverse is None:
            inverse = {i: t for t, i in self._token_dict.items()}
            self.__dict__["_token_dict_inv_cache"] = inverse
        return inverse

    def token_to_id(self, token: str) -> int:
        """Id of ``token`` (the unknown token's id when absent)."""
        found = self._token_dict.get(token)
        if found is None:
            if self._token_unk_id is None:
                raise KeyError(
                    f"token {token!r} is not in the vocabulary and there is no unk token"
                )
            return self._token_unk_id
        return found

    def id_to_token(self, i: int) -> str:
        """Token of id ``i``; ``IndexError`` naming the id when out of range."""
        try:
            if i < 0:
                raise IndexError
            return self._id_to_token[i]
        except (IndexError, KeyError):
            raise IndexError(f"id {i} is outside the vocabulary (size {self.vocab_size})") from None

    def tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``."""
        return [self.token_to_id(t) for t in tokens]

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``."""
        return [self.id_to_token(int(i)) for i in ids]

    @staticmethod
    def stem(token: str) -> str:
        """The token without a leading ``##``."""
        return token[2:] if token[:2] == "##" else token

    # -- tokenize -----------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def _text_ids(self, text: str) -> list[int]:
        return self.tokens_to_ids(self._translated(text))

    def _text_ids_offsets(self, text: str) -> tuple[list[int], Offsets]:
        raise NotImplementedError

    def _translated(self, text: str) -> list[str]:
        tokens = self._tokenize(text)
        if self._token_translate:
            get = self._token_translate.get
            tokens = [get(t) or t for t in tokens]
        return tokens

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Tokens of ``text`` with the start and end tokens (bert4torch's convention)."""
        _check_text(text, "text")
        tokens = self._translated(text)
        if maxlen is not None:
            budget = maxlen - self._n_start - self._n_end
            _check_budget(maxlen, budget, self._n_start + self._n_end)
            del tokens[budget:]
        return self._with_specials(tokens, self._token_start, self._token_end)

    @staticmethod
    def _with_specials(body: list, start: Any, end: Any) -> list:
        out = [start] if start is not None else []
        out += body
        if end is not None:
            out.append(end)
        return out

    # -- encode -------------------------------------------------------------------------------
    def encode(
        self,
        first_texts: str | Sequence[str],
        second_texts: str | Sequence[str] | None = None,
        maxlen: int | None = None,
        pattern: str = "S*E*E",
        truncate_from: str | int = "right",
        return_offsets: bool | str = False,
    ) -> tuple:
        """Token ids and segment ids of one text, a pair, or a batch of either.

        Args:
            first_texts: a text or a list of texts.
            second_texts: the second text of a pair (or a list, one per first text).
            maxlen: the most ids per example, special tokens included; the longer
                of the two texts is cut first (the first on a tie).
            pattern: ``'S*E*E'`` -> ``[CLS] a [SEP] b [SEP]``; ``'S*ES*E'`` ->
                ``[CLS] a [SEP] [CLS] b [SEP]``.
            truncate_from: ``'right'`` drops tokens at the end, ``'left'`` at the
                start; an int is the index popped from each text's token list *with*
                its start and end tokens, as in bert4torch 0.2.5 (``1`` is the first
                text token after ``[CLS]``, ``-2`` the last one before ``[SEP]``).
            return_offsets: ``True`` (or ``'rematch'``) adds bert4torch's format: per
                id, the list of character indices of its text it came from (``rematch``;
                ``[]`` for special and unknown tokens; a pair's second part indexes the
                second text). ``'transformers'`` turns each list into ``[first, last +
                1]`` (``[0, 0]`` when empty), as 0.2.5 does. ``'span'`` adds ``(start,
                end)`` tuples equal to transformers' ``BertTokenizerFast``
                ``offset_mapping`` (``(0, 0)`` for special tokens, the word's span for
                ``[UNK]``).

        Returns:
            ``(token_ids, segment_ids)`` or ``(token_ids, segment_ids, offsets)``;
            lists for one input, lists of lists for a batch.
        """
        single = isinstance(first_texts, str)
        if single and _plain_options(second_texts, maxlen, pattern, return_offsets):
            ids = self._text_ids(first_texts)
            if self._token_start_id is not None:
                ids.insert(0, self._token_start_id)
            if self._token_end_id is not None:
                ids.append(self._token_end_id)
            return ids, [0] * len(ids)
        mode = _offset_mode(pattern, return_offsets)
        index = _truncate_index(truncate_from, self._n_start, self._n_end)
        firsts, seconds = _text_pairs(first_texts, second_texts, single)
        all_ids, all_segments, all_offsets = [], [], []
        for first, second in zip(firsts, seconds):
            ids, segments, offsets = self._encode_one(first, second, maxlen, pattern, index, mode)
            all_ids.append(ids)
            all_segments.append(segments)
            all_offsets.append(offsets)
        if single:
            out: tuple = (all_ids[0], all_segments[0])
            return (*out, all_offsets[0]) if mode else out
        return (all_ids, all_segments, all_offsets) if mode else (all_ids, all_segments)

    def _pieces(self, text: str, mode: str | None) -> tuple[list[int], list | None]:
        """Ids of a text and what its offsets are made from: ``(start, end)`` spans for
        ``'span'``, bert4torch's per-token data (see ``_seed_pieces``) otherwise."""
        _check_text(text, "text")
        if mode is None:
            return self._text_ids(text), None
        if mode == "span":
            return self._text_ids_offsets(text)
        return self._seed_pieces(text)

    def _seed_pieces(self, text: str) -> tuple[list[int], list]:
        """Ids and, per id, what ``_seed_offsets`` needs (here the ``(start, end)`` span)."""
        return self._text_ids_offsets(text)

    def _seed_offsets(self, text: str, parts: list) -> list[list[int]]:
        """bert4torch's offsets of one text: per item of ``parts`` (``None`` for a special
        token, else what ``_seed_pieces`` gave), the list of character indices."""
        return [[] if p is None else list(range(p[0], p[1])) for p in parts]

    def _encode_one(
        self,
        first: str,
        second: str | None,
        maxlen: int | None,
        pattern: str,
        index: int,
        mode: str | None,
    ) -> tuple[list[int], list[int], list | None]:
        ids_a, extra_a = self._pieces(first, mode)
        # Each text as bert4torch sees it: [start] + its ids + [end]; what the offsets are
        # made from rides along (None for the special tokens).
        start, end = self._token_start_id, self._token_end_id
        n_start, n_end = self._n_start, self._n_end
        full_a = self._with_specials(ids_a, start, end)
        more_a = [None] * n_start + extra_a + [None] * n_end if mode else None
        full_b = more_b = None
        if second is not None:
            ids_b, extra_b = self._pieces(second, mode)
            full_b = self._with_specials(ids_b, start, end)
            more_b = [None] * n_start + extra_b + [None] * n_end if mode else None
        # 'S*E*E' drops the second text's start token after cutting (one more fits)
        drop_b_start = full_b is not None and pattern == "S*E*E" and n_start
        if maxlen is not None:
            n_special = n_start + n_end
            if full_b is not None:
                n_special += n_start + n_end - int(bool(drop_b_start))
            _check_budget(maxlen, maxlen - n_special, n_special)
            room = maxlen + int(bool(drop_b_start))
            if len(full_a) + (len(full_b) if full_b is not None else 0) > room:
                # cut positions, as 0.2.5 cuts its token lists, then gather
                keep_a = list(range(len(full_a)))
                keep_b = list(range(len(full_b))) if full_b is not None else None
                truncate_sequences(room, index, keep_a, keep_b)
                full_a = [full_a[i] for i in keep_a]
                more_a = [more_a[i] for i in keep_a] if mode else None
                if full_b is not None:
                    full_b = [full_b[i] for i in keep_b]
                    more_b = [more_b[i] for i in keep_b] if mode else None
        ids = full_a
        segments = [0] * len(ids)
        offsets = self._offsets(first, more_a, mode) if mode else None
        if full_b is not None:
            if drop_b_start:
                del full_b[:1]
                if mode:
                    del more_b[:1]
            ids += full_b
            segments += [1] * len(full_b)
            if mode:
                offsets += self._offsets(second, more_b, mode)
        return ids, segments, offsets

    def _offsets(self, text: str, parts: list, mode: str) -> list:
        if mode == "span":
            return [(0, 0) if p is None else p for p in parts]
        lists = self._seed_offsets(text, parts)
        if mode == "transformers":
            return [[k[0], k[-1] + 1] if k else [0, 0] for k in lists]
        return lists

    # -- decode -------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], tokens: Sequence[str] | None = None) -> str:
        """Readable text of ``ids`` (or of ``tokens`` when given)."""
        raise NotImplementedError


def _plain_options(
    second_texts: object, maxlen: int | None, pattern: str, return_offsets: bool | str
) -> bool:
    """Whether ``encode`` was called with no option: no second text, no ``maxlen``, the
    default pattern and no offsets (the case the fast paths serve)."""
    return second_texts is None and maxlen is None and not return_offsets and pattern == "S*E*E"


def _offset_mode(pattern: str, return_offsets: bool | str) -> str | None:
    """The kind of offsets ``encode`` builds (see ``OFFSET_MODES``), after checking
    ``pattern`` and ``return_offsets``; a ``ValueError`` names a wrong one."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if return_offsets not in OFFSET_MODES:
        raise ValueError(f"return_offsets must be one of {OFFSET_MODES}, got {return_offsets!r}")
    return OFFSET_MODES[return_offsets]


def _text_pairs(
    first_texts: str | Sequence[str], second_texts: str | Sequence[str] | None, single: bool
) -> tuple[list[str], list[str | None]]:
    """``encode``'s texts as two equally long lists (``None`` seconds without a pair);
    an error names a second text whose form or count does not match the first."""
    firsts = [first_texts] if single else _as_text_list(first_texts, "first_texts")
    if second_texts is None:
        return firsts, [None] * len(firsts)
    if isinstance(second_texts, str):
        if not single:
            raise ValueError("second_texts must be a list when first_texts is a list")
        return firsts, [second_texts]
    if single:
        raise TypeError(
            f"second_texts must be str when first_texts is str, got {type(second_texts).__name__}"
        )
    seconds = _as_text_list(second_texts, "second_texts")
    if len(seconds) != len(firsts):
        raise ValueError(f"{len(firsts)} first texts but {len(seconds)} second texts")
    return firsts, seconds


def _check_text(text: Any, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}")


def _as_text_list(texts: Any, name: str) -> list:
    if isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"{name} must be str or a list of str, got {type(texts).__name__}")
    return list(texts)


def _check_budget(maxlen: int, budget: int, n_special: int) -> None:
    if budget < 0:
        raise ValueError(
            f"maxlen={maxlen} is smaller than the {n_special} special tokens it must hold"
        )


def _truncate_index(truncate_from: str | int, n_start: int, n_end: int) -> int:
    """The index bert4torch 0.2.5 pops from a text's token list (start/end included)."""
    if truncate_from == "right":
        return -n_end - 1
    if truncate_from == "left":
        return n_start
    if isinstance(truncate_from, int) and not isinstance(truncate_from, bool):
        return truncate_from
    raise ValueError(f"truncate_from must be 'right', 'left' or an int, got {truncate_from!r}")
