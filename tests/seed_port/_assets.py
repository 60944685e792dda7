"""Small data and a tiny checkpoint for the seed-port scripts, made by the tests.

``make_assets(root)`` writes, deterministically:

- ``vocab.txt``: BERT specials, ``[unused1..5]`` and a few hundred CJK characters;
- ``bert/config.json`` + ``bert/pytorch_model.bin``: a random 2-layer, 32-wide BERT in
  the Hugging Face layout (``bert.*`` + ``cls.*`` keys, the MLM decoder tied), which
  bert4torch 0.2.5's ``load_weights_from_pytorch_checkpoint`` and b4t both read;
  dropout 0, so the seed and b4t consume the same random numbers while training;
- ``sentiment/{train,dev}.tsv``: ``text<TAB>label``, three positive or three negative cue
  characters among random ones (learnable by a tiny model in a few epochs);
- ``ner/{train,dev}.txt``: People's-Daily-style ``char tag`` lines, blank-line separated,
  ``B-LOC/I-LOC`` and ``B-PER/I-PER`` entities drawn from fixed name lists;
- ``pairs/{train,dev}.tsv``: ``text1<TAB>text2<TAB>score`` for CoSENT (score 1 when both
  texts share their topic word);
- ``titles/train.tsv``: ``title<TAB>content`` for the UniLM seq2seq script (the title is
  the content's first character twice, so a tiny model can learn it in a few epochs);
- ``gpt2_ml/config.json`` + ``gpt2_ml/pytorch_model.bin``: a random 2-layer GPT2-ML in
  the layout bert4torch 0.2.5 loads for it (BERT names under ``gpt2_ml.``, the LM head
  equal to the word table), weights spread so that greedy choices are not near-ties;
- relation triples, a T5 and a CDial-GPT checkpoint: see ``_assets_more``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from _assets_more import make_more_assets

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(1, 6)]
POS_CUES = ["好", "棒", "赞", "爱"]
NEG_CUES = ["差", "烂", "糟", "恨"]
FILLER = list("的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会")
PLACES = ["北京", "上海", "南京", "广州", "西安"]
PEOPLE = ["张三", "李四", "王五", "赵六", "孙七"]
TOPICS = ["山", "水", "花", "鸟", "月", "风"]


def _vocab() -> list[str]:
    chars: list[str] = []
    for group in (POS_CUES, NEG_CUES, FILLER, TOPICS, *PLACES, *PEOPLE):
        for ch in group:
            if ch not in chars:
                chars.append(ch)
    extra = [chr(c) for c in range(0x4E00, 0x4E00 + 200) if chr(c) not in chars]
    return SPECIALS + chars + extra + list("，。！？")


def _sentiment(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        label = rng.randint(0, 1)
        body = rng.choices(FILLER, k=rng.randint(3, 8))
        for _ in range(3):
            body.insert(rng.randint(0, len(body)), rng.choice(POS_CUES if label else NEG_CUES))
        lines.append(f"{''.join(body)}\t{label}")
    return lines


def _ner(rng: random.Random, n: int) -> list[str]:
    blocks = []
    for _ in range(n):
        rows: list[str] = []
        for _ in range(rng.randint(1, 2)):
            rows += [f"{c} O" for c in rng.choices(FILLER, k=rng.randint(2, 5))]
            kind = rng.choice(["LOC", "PER"])
            name = rng.choice(PLACES if kind == "LOC" else PEOPLE)
            rows += [f"{c} {'B' if i == 0 else 'I'}-{kind}" for i, c in enumerate(name)]
        rows += [f"{c} O" for c in rng.choices(FILLER, k=rng.randint(1, 4))]
        blocks.append("\n".join(rows))
    return blocks


def _pairs(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        t1 = rng.choice(TOPICS)
        same = rng.random() < 0.5
        t2 = t1 if same else rng.choice([t for t in TOPICS if t != t1])
        a = "".join(rng.choices(FILLER, k=2)) + t1 * 2 + "".join(rng.choices(FILLER, k=1))
        b = "".join(rng.choices(FILLER, k=1)) + t2 * 2 + "".join(rng.choices(FILLER, k=2))
        lines.append(f"{a}\t{b}\t{int(same)}")
    return lines


def _titles(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        content = topic + "".join(rng.choices(FILLER, k=rng.randint(4, 8)))
        lines.append(f"{topic}{topic}\t{content}")
    return lines


def _tiny_bert_config(vocab_size: int):  # -> transformers.BertConfig
    """2 layers, 32 wide, dropout 0 (the seed and b4t draw the same random numbers)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _save(folder: Path, state: dict, config) -> None:  # config: transformers.BertConfig
    """``pytorch_model.bin`` and ``config.json`` in ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")


def _checkpoint(folder: Path, vocab_size: int) -> None:
    import torch
    from transformers import BertForPreTraining

    config = _tiny_bert_config(vocab_size)
    torch.manual_seed(1234)
    model = BertForPreTraining(config).eval()
    _save(folder, {k: v.contiguous() for k, v in model.state_dict().items()}, config)


def _gpt2_ml_checkpoint(folder: Path, vocab_size: int) -> None:
    import torch
    from transformers import BertModel

    config = _tiny_bert_config(vocab_size)
    torch.manual_seed(4321)
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.normal_(0, 0.5)
    state = {f"gpt2_ml.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["gpt2_ml.lm_head.weight"] = state["gpt2_ml.embeddings.word_embeddings.weight"].clone()
    _save(folder, state, config)


def make_assets(root: Path) -> Path:
    """Write every asset under ``root`` (idempotent) and return ``root``."""
    root = Path(root)
    if (root / "done").exists():
        return root
    rng = random.Random(20240601)
    vocab = _vocab()
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    for name, make, n_train, n_dev, sep in (
        ("sentiment", _sentiment, 96, 40, "\n"),
        ("ner", _ner, 96, 32, "\n\n"),
        ("pairs", _pairs, 96, 40, "\n"),
    ):
        (root / name).mkdir(exist_ok=True)
        ext = "txt" if name == "ner" else "tsv"
        end = "" if name == "ner" else "\n"  # blank-line separated blocks, no trailing newline
        for split, n in (("train", n_train), ("dev", n_dev)):
            text = sep.join(make(rng, n)) + end
            (root / name / f"{split}.{ext}").write_text(text, encoding="utf-8")
    (root / "titles").mkdir(exist_ok=True)
    (root / "titles" / "train.tsv").write_text("\n".join(_titles(rng, 64)) + "\n", "utf-8")
    _checkpoint(root / "bert", len(vocab))
    _gpt2_ml_checkpoint(root / "gpt2_ml", len(vocab))
    make_more_assets(root, vocab)
    (root / "done").write_text("ok", encoding="utf-8")
    return root
