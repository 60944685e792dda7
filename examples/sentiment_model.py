"""The sentiment classifier: a b4t BERT encoder, a pooling step and a linear layer.

Saved in the Hugging Face layout (``config.json`` + ``model.safetensors`` +
``vocab.txt``): encoder weights under their checkpoint names (``bert.*`` for
BERT), the head as ``classifier.weight`` / ``classifier.bias``, and
``id2label`` in the config. With ``pooling='cls'`` (the BERT pooler) the folder
is exactly a ``BertForSequenceClassification`` checkpoint; with ``'mean'`` the
encoder loads as a ``BertModel`` and the head is the masked mean of the last
hidden states followed by ``classifier`` (see examples/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.models import Concat, build_transformer_model, read_checkpoint, write_checkpoint

POOLINGS = ("mean", "cls")
POOLING_KEY = "b4t_pooling"
BIGRAM_KEY = "b4t_bigram_vocab_size"
BIGRAM_FILE = "bigrams.txt"
BIGRAM_WEIGHTS = "bigram_embeddings.safetensors"


def small_bert_config(
    vocab_size: int, hidden_size: int = 128, num_layers: int = 2, dropout: float = 0.1
) -> dict:
    """A Hugging Face ``config.json`` dict for a small BERT trained from scratch."""
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 32),
        "intermediate_size": 4 * hidden_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }


class SentimentClassifier(nn.Module):
    """``token_ids [B, L] -> logits [B, num_labels]``.

    Args:
        encoder: a b4t encoder from ``build_transformer_model`` (built ``with_pool=True``
            for ``pooling='cls'``).
        num_labels: output classes.
        pooling: ``'mean'`` (masked mean of the last hidden states) or ``'cls'``
            (the BERT pooler: tanh(dense(h[CLS]))).
        dropout: dropout before the classifier.
        bigram_vocab: ``{(token_id, next_token_id): bigram_id}`` when the encoder was built
            with a bigram embedding in ``layer_add_embs``; then ``forward`` takes
            ``bigram_ids [B, L]`` too.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int = 2,
        pooling: str = "mean",
        dropout: float = 0.1,
        bigram_vocab: dict[tuple[int, int], int] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.bigram_vocab = bigram_vocab
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=encoder.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    @property
    def bigram_embeddings(self) -> nn.Embedding | None:
        extra = self.encoder.embeddings.layer_add_embs
        return extra[0] if extra is not None else None

    def forward(
        self, token_ids: torch.Tensor, bigram_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.bigram_embeddings is not None:
            if bigram_ids is None:
                raise ValueError("this classifier has bigram embeddings: pass bigram_ids [B, L]")
            outputs = self.encoder([token_ids, torch.zeros_like(token_ids), bigram_ids])
        else:
            outputs = self.encoder(token_ids)
        if self.pooling == "cls":
            pooled = outputs[1]  # [B, H]
        else:
            hidden = outputs  # [B, L, H]
            keep = token_ids.ne(self.encoder.config.pad_token_id).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.classifier(self.dropout(pooled))


def build_classifier(
    config: dict[str, Any] | Path,
    checkpoint: Path | None = None,
    model: str = "bert",
    pooling: str = "mean",
    keep_tokens: list[int] | None = None,
    bigram_vocab: dict[tuple[int, int], int] | None = None,
    hidden_size: int | None = None,
) -> SentimentClassifier:
    """A classifier over a fresh encoder (``checkpoint=None``) or a pre-trained one.

    With ``bigram_vocab`` a bigram embedding table (``len(bigram_vocab) + 2`` rows,
    ``hidden_size`` wide) is added to the token embeddings through ``layer_add_embs``.
    """
    extra = None
    if bigram_vocab is not None:
        if hidden_size is None:
            raise ValueError("hidden_size is needed to build the bigram embeddings")
        extra = nn.Embedding(len(bigram_vocab) + 2, hidden_size, padding_idx=0)
        nn.init.normal_(extra.weight, std=0.02)
        with torch.no_grad():
            extra.weight[0].zero_()
    encoder = build_transformer_model(
        config,
        checkpoint,
        model=model,
        with_pool=pooling == "cls",
        keep_tokens=keep_tokens,
        layer_add_embs=extra,
    )
    dropout = encoder.config.hidden_dropout_prob
    return SentimentClassifier(encoder, pooling=pooling, dropout=dropout, bigram_vocab=bigram_vocab)


def save_pretrained(
    clf: SentimentClassifier,
    out_dir: Path,
    config: dict[str, Any],
    vocab_tokens: list[str],
    labels: tuple[str, ...],
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``vocab.txt`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    mapping = clf.encoder.variable_mapping()
    for name, tensor in clf.encoder.state_dict().items():
        source = mapping.get(name)
        if isinstance(source, Concat):
            tensors.update(zip(source.keys, source.save(tensor), strict=True))
        elif source is not None:
            tensors.setdefault(source, tensor)
    tensors["classifier.weight"] = clf.classifier.weight.detach()
    tensors["classifier.bias"] = clf.classifier.bias.detach()
    write_checkpoint({k: v.contiguous() for k, v in tensors.items()}, out_dir / "model.safetensors")
    config = dict(config)
    config["vocab_size"] = clf.encoder.config.vocab_size
    config["id2label"] = {str(i): name for i, name in enumerate(labels)}
    config["label2id"] = {name: i for i, name in enumerate(labels)}
    config[POOLING_KEY] = clf.pooling
    config.pop(BIGRAM_KEY, None)
    if clf.bigram_vocab is not None:
        config[BIGRAM_KEY] = len(clf.bigram_vocab)
        pairs = sorted(clf.bigram_vocab, key=clf.bigram_vocab.__getitem__)
        assert clf.bigram_embeddings is not None
        write_checkpoint(
            {"weight": clf.bigram_embeddings.weight.detach()}, out_dir / BIGRAM_WEIGHTS
        )
        (out_dir / BIGRAM_FILE).write_text(
            "".join(f"{a} {b}\n" for a, b in pairs), encoding="utf-8"
        )
    if clf.pooling == "cls" and config.get("model_type") == "bert":
        config["architectures"] = ["BertForSequenceClassification"]
    (out_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens), encoding="utf-8")
    return out_dir


def load_pretrained(model_dir: Path, model: str | None = None) -> tuple[SentimentClassifier, list]:
    """Load a folder written by :func:`save_pretrained`; returns ``(classifier, labels)``."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {model_dir}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    id2label = config.get("id2label")
    if not id2label:
        raise ValueError(f"{config_path} has no id2label: not a saved sentiment classifier")
    labels = [id2label[str(i)] for i in range(len(id2label))]
    pooling = config.get(POOLING_KEY, "cls")
    bigram_vocab = None
    if config.get(BIGRAM_KEY):
        lines = (model_dir / BIGRAM_FILE).read_text(encoding="utf-8").splitlines()
        pairs = [tuple(int(x) for x in line.split()) for line in lines]
        if len(pairs) != config[BIGRAM_KEY] or any(len(p) != 2 for p in pairs):
            raise ValueError(f"{model_dir / BIGRAM_FILE} does not match {BIGRAM_KEY} in config")
        bigram_vocab = {pair: i + 2 for i, pair in enumerate(pairs)}
    clf = build_classifier(
        model_dir,
        model_dir,
        model=model or config.get("model_type", "bert"),
        pooling=pooling,
        bigram_vocab=bigram_vocab,
        hidden_size=config.get("hidden_size"),
    )
    weights = read_checkpoint(model_dir / "model.safetensors")
    if clf.bigram_embeddings is not None:
        with torch.no_grad():
            table = read_checkpoint(model_dir / BIGRAM_WEIGHTS)["weight"]
            clf.bigram_embeddings.weight.copy_(table)
    for key in ("classifier.weight", "classifier.bias"):
        if key not in weights:
            raise KeyError(f"{model_dir / 'model.safetensors'} has no {key!r}")
    with torch.no_grad():
        clf.classifier.weight.copy_(weights["classifier.weight"])
        clf.classifier.bias.copy_(weights["classifier.bias"])
    return clf.eval(), labels


ENSEMBLE_FILE = "ensemble.json"


class SentimentEnsemble(nn.Module):
    """Averages the predicted probabilities of several classifiers.

    ``forward`` takes the members' inputs (``token_ids [B, L]`` and, when the members
    use bigrams, ``bigram_ids [B, L]``) and returns ``log(mean_k softmax(logits_k))``
    ``[B, num_labels]``: its ``argmax`` is the ensemble's prediction and its
    ``softmax`` is exactly the averaged probabilities. All members must share one
    bigram vocabulary (they are trained on one tokenised split).
    """

    def __init__(self, members: list[SentimentClassifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        vocab = members[0].bigram_vocab
        for k, member in enumerate(members[1:], start=1):
            if member.bigram_vocab != vocab:
                raise ValueError(f"member {k} has a different bigram vocabulary from member 0")
        self.members = nn.ModuleList(members)
        self.bigram_vocab = vocab

    def forward(
        self, token_ids: torch.Tensor, bigram_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        probs = torch.stack([m(token_ids, bigram_ids).softmax(-1) for m in self.members])
        return probs.mean(0).log()  # [B, num_labels]


def save_ensemble(
    members: list[SentimentClassifier],
    out_dir: Path,
    config: dict[str, Any],
    vocab_tokens: list[str],
    labels: tuple[str, ...],
    dev_accuracies: list[float] | None = None,
) -> Path:
    """Save member ``k`` as ``out_dir/member-{k}/`` (HF layout, see :func:`save_pretrained`),
    member 0 also at the top level (so ``out_dir`` loads as a single model, as before), and
    ``out_dir/ensemble.json`` listing the member folders (read by :func:`load_ensemble`)."""
    out_dir = Path(out_dir)
    save_pretrained(members[0], out_dir, config, vocab_tokens, labels)
    names = []
    for k, member in enumerate(members):
        names.append(f"member-{k}")
        save_pretrained(member, out_dir / names[-1], config, vocab_tokens, labels)
    record: dict[str, Any] = {"members": names}
    if dev_accuracies is not None:
        record["dev_accuracy"] = [round(a, 4) for a in dev_accuracies]
    (out_dir / ENSEMBLE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out_dir


def load_ensemble(model_dir: Path, model: str | None = None) -> tuple[SentimentEnsemble, list]:
    """Load every member listed in ``model_dir/ensemble.json`` (or, without that file,
    the single model in ``model_dir``) as a :class:`SentimentEnsemble`; returns
    ``(ensemble, labels)``."""
    model_dir = Path(model_dir)
    record_path = model_dir / ENSEMBLE_FILE
    if not record_path.is_file():
        clf, labels = load_pretrained(model_dir, model)
        return SentimentEnsemble([clf]).eval(), labels
    names = json.loads(record_path.read_text(encoding="utf-8")).get("members")
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{record_path} needs a non-empty 'members' list of folder names")
    members, labels = [], None
    for name in names:
        clf, member_labels = load_pretrained(model_dir / name, model)
        if labels is not None and member_labels != labels:
            raise ValueError(f"{model_dir / name} has labels {member_labels}, member 0 {labels}")
        members.append(clf)
        labels = member_labels
    return SentimentEnsemble(members).eval(), labels
