"""A character unigram + bigram logistic regression: the figure the demo must beat.

The features are the distinct characters and adjacent character pairs of a
review (binary, L2-normalised); the classifier is one weight per feature plus a
bias, trained with Adam and weight decay on the train split, with the epoch
chosen on dev. Plain torch, a few seconds on CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from sentiment_data import Example
from torch import nn


def char_ngrams(text: str) -> list[str]:
    """Distinct character unigrams and bigrams of ``text`` (lower-cased), in first-seen order."""
    text = text.lower()
    grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
    return list(dict.fromkeys(grams))


class NgramFeatures:
    """Maps texts to bags of n-gram ids; n-grams seen fewer than ``min_count`` times are dropped."""

    def __init__(self, texts: Sequence[str], min_count: int = 2) -> None:
        counts = Counter(g for t in texts for g in char_ngrams(t))
        self.index = {
            g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c >= min_count))
        }

    def __len__(self) -> int:
        return len(self.index)

    def bags(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(ids, offsets, weights)`` for ``nn.EmbeddingBag``: ids ``[total]``,
        offsets ``[len(texts)]``, per-id weights ``[total]`` (each bag L2-normalised)."""
        ids: list[int] = []
        offsets: list[int] = []
        weights: list[float] = []
        for text in texts:
            offsets.append(len(ids))
            bag = [self.index[g] for g in char_ngrams(text) if g in self.index]
            ids += bag
            weights += [1.0 / max(len(bag), 1) ** 0.5] * len(bag)
        return torch.tensor(ids), torch.tensor(offsets), torch.tensor(weights)


def ngram_baseline_accuracy(
    train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example], seed: int = 0
) -> tuple[float, float]:
    """Train the logistic regression; return ``(dev_acc, test_acc)`` at the best dev epoch."""
    torch.manual_seed(seed)
    feats = NgramFeatures([t for t, _ in train])
    model = nn.EmbeddingBag(len(feats), 1, mode="sum")
    nn.init.zeros_(model.weight)
    bias = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([model.weight, bias], lr=0.05)
    data = {}
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        bags = feats.bags([t for t, _ in rows])
        data[name] = (bags, torch.tensor([float(y) for _, y in rows]))

    def logits(name: str) -> torch.Tensor:
        (ids, offsets, weights), _ = data[name]
        return model(ids, offsets, per_sample_weights=weights).squeeze(-1) + bias

    def accuracy(name: str) -> float:
        with torch.no_grad():
            return ((logits(name) > 0).float() == data[name][1]).float().mean().item()

    best = (-1.0, 0.0)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(logits("train"), data["train"][1])
        loss = loss + 1e-4 * model.weight.pow(2).sum()
        loss.backward()
        optimizer.step()
        dev_acc = accuracy("dev")
        if dev_acc > best[0]:
            best = (dev_acc, accuracy("test"))
    return best
