"""Tokens and batches for the sentiment demo.

A model trained from scratch does not need bert-base-chinese's 21,128 rows:
:func:`compact_vocab` keeps the special tokens plus every token that occurs at
least ``min_count`` times in the training texts (a few thousand characters),
in the original vocab's order. :class:`LengthBucketSampler` batches reviews of
similar length together so little compute goes to padding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import torch
from torch.utils.data import Sampler

from b4t.tokenizers import Tokenizer, load_vocab, sequence_padding

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def compact_vocab(vocab_path: Path, texts: Sequence[str], min_count: int = 2) -> dict[str, int]:
    """A vocab of the special tokens plus the tokens seen ``>= min_count`` times in ``texts``.

    Tokens keep the relative order they have in ``vocab_path``; ids are renumbered
    from 0 with ``[PAD]`` at 0.
    """
    full = load_vocab(vocab_path)
    assert isinstance(full, dict)
    missing = [t for t in SPECIAL_TOKENS if t not in full]
    if missing:
        raise ValueError(f"{vocab_path} lacks the special tokens {missing}")
    tokenizer = Tokenizer(full)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(tokenizer.tokenize(text)[1:-1])
    keep = set(SPECIAL_TOKENS) | {t for t, c in counts.items() if c >= min_count}
    ordered = sorted((t for t in keep if t in full), key=full.__getitem__)
    ordered.remove("[PAD]")
    return {token: i for i, token in enumerate(["[PAD]", *ordered])}


def write_vocab(vocab: dict[str, int], path: Path) -> None:
    """Write ``vocab`` as a ``vocab.txt`` (one token per line, in id order)."""
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("vocab ids must be 0..n-1 without gaps to be written as vocab.txt")
    Path(path).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], maxlen: int) -> list[list[int]]:
    """Token ids (``[CLS] ... [SEP]``, at most ``maxlen``) of each text."""
    return [tokenizer.encode(text, maxlen=maxlen)[0] for text in texts]


class LengthBucketSampler(Sampler[list[int]]):
    """Yield batches of indices whose sequences have similar lengths.

    Each pass shuffles the indices (from ``generator``), sorts them by length in
    pools of ``pool_batches`` batches, cuts the pools into batches and shuffles
    the batch order. Without ``shuffle`` it yields length-sorted batches.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        pool_batches: int = 50,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pool = batch_size * pool_batches
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=self.lengths.__getitem__)
            yield from (order[i : i + size] for i in range(0, n, size))
            return
        perm = torch.randperm(n, generator=self.generator).tolist()
        batches: list[list[int]] = []
        for start in range(0, n, self.pool):
            pool = sorted(perm[start : start + self.pool], key=self.lengths.__getitem__)
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


def collate(batch: Sequence[tuple]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``[(ids, label), ...]`` -> ``([token_ids [B, L]], labels [B])`` padded with 0;
    ``[(ids, bigram_ids, label), ...]`` -> ``([token_ids, bigram_ids], labels)``."""
    columns = list(zip(*batch))
    inputs = [
        torch.as_tensor(sequence_padding(list(col), value=0), dtype=torch.long)
        for col in columns[:-1]
    ]
    labels = torch.tensor(columns[-1], dtype=torch.long)
    return inputs, labels


def bigram_vocab(
    sequences: Sequence[Sequence[int]], min_count: int = 2
) -> dict[tuple[int, int], int]:
    """Ids for the adjacent token pairs seen ``>= min_count`` times inside the texts.

    Pairs are taken between the text's own tokens (not ``[CLS]``/``[SEP]``); id 0 is
    "no bigram" (padding, specials, the last token) and 1 an unseen pair.
    """
    counts: Counter[tuple[int, int]] = Counter()
    for seq in sequences:
        counts.update(pairwise(seq[1:-1]))
    kept = sorted(pair for pair, c in counts.items() if c >= min_count)
    return {pair: i + 2 for i, pair in enumerate(kept)}


def bigram_ids(seq: Sequence[int], vocab: dict[tuple[int, int], int]) -> list[int]:
    """Bigram id per position of ``seq`` (``[CLS] t1 .. tn [SEP]``): position i holds the
    pair (t_i, t_i+1); 0 where there is none, 1 for a pair not in ``vocab``."""
    out = [0] * len(seq)
    for i in range(1, len(seq) - 2):
        out[i] = vocab.get((seq[i], seq[i + 1]), 1)
    return out
