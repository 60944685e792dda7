"""More seed-port assets: relation triples, T5, BART and CDial-GPT checkpoints in the layouts
bert4torch 0.2.5's own examples load (written by ``make_more_assets``, deterministic).

- ``spo/{train,dev}.json`` + ``spo/all_50_schemas``: DuIE-style lines
  ``{"text", "spo_list": [{"subject", "predicate", "object"}]}``; a person's name, a cue
  character (生: birthplace, 在: residence; each person has one) and a place, among
  random characters;
- ``t5/config.json`` + ``t5/pytorch_model.bin``: a random 2-layer T5.1.0 (ReLU, tied
  head) in the transformers layout (``shared.weight``, ``encoder.block.{i}...``), the
  config written as bert4torch 0.2.5's T5-PEGASUS conversion writes it
  (``hidden_size``, ``attention_head_size``, ``relative_attention_num_buckets``...);
- ``bart/config.json`` + ``bart/pytorch_model.bin``: a random 2-layer BART in the layout
  0.2.5's fastNLP conversion writes (transformers' ``BartModel`` names, the first two rows
  of each position table dropped), its config as that conversion writes it;
- ``cdial/{config.json,pytorch_model.bin,vocab.txt}``: a random 2-layer GPT in the layout
  0.2.5's CDial-GPT conversion writes (BERT names under ``gpt.``, no segment table, no
  embedding LayerNorm), its config with ``shared_segment_embeddings: true`` (segment ids
  are the speaker tokens' ids, looked up in the word table) and a vocab with
  ``[speaker1]`` / ``[speaker2]``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PREDICATES = {"生": "出生地", "在": "居住地"}
PEOPLE = ["张三", "李四", "王五", "赵六", "孙七"]
PLACES = ["北京", "上海", "南京", "广州", "西安"]
FILLER = list("的一是了我不人他有这个上们来到时大地为子中你说国年着就那和要她出也得里后自以会")


def _spo(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        cue = sorted(PREDICATES)[PEOPLE.index(person) % 2]  # learnable from the name alone
        before = "".join(rng.choices(FILLER, k=rng.randint(1, 4)))
        after = "".join(rng.choices(FILLER, k=rng.randint(1, 4)))
        text = f"{before}{person}{cue}{place}{after}"
        spo = {"subject": person, "predicate": PREDICATES[cue], "object": place}
        lines.append(json.dumps({"text": text, "spo_list": [spo]}, ensure_ascii=False))
    return lines


def _t5(folder: Path, vocab_size: int) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="relu", dropout_rate=0.0,
        tie_word_embeddings=True, layer_norm_epsilon=1e-12,
    )  # fmt: skip
    torch.manual_seed(2024)
    model = T5ForConditionalGeneration(config).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    seed_style = {
        "hidden_act": "relu", "hidden_dropout_prob": 0.0, "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 64, "num_attention_heads": 4,
        "attention_head_size": 8, "num_hidden_layers": 2, "vocab_size": vocab_size,
        "relative_attention_num_buckets": 8, "attention_scale": False, "is_dropout": True,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(seed_style, indent=2), encoding="utf-8")


def _bart(folder: Path, vocab_size: int) -> None:
    import torch
    from transformers import BartConfig, BartModel

    config = BartConfig(
        vocab_size=vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(77)
    model = BartModel(config).eval()
    state = {}
    for k, v in model.state_dict().items():
        if "embed_positions.weight" in k:  # what 0.2.5's conversion script does
            v = v[2:]
        state[k] = v.contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    seed_style = {
        "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "max_position_embeddings": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "type_vocab_size": 2, "vocab_size": vocab_size,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(seed_style, indent=2), encoding="utf-8")


def _cdial(folder: Path, vocab: list[str]) -> None:
    import torch
    from transformers import BertConfig, BertModel

    vocab = [*vocab, "[speaker1]", "[speaker2]"]
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(99)
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.normal_(0, 0.3)
    state = {
        f"gpt.{k}": v.contiguous()
        for k, v in model.state_dict().items()
        if "token_type" not in k and "embeddings.LayerNorm" not in k and "position_ids" not in k
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    seed_style = {
        "attention_probs_dropout_prob": 0.0, "directionality": "bidi", "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "hidden_size": 32, "initializer_range": 0.02,
        "intermediate_size": 64, "max_position_embeddings": 64, "num_attention_heads": 4,
        "num_hidden_layers": 2, "vocab_size": len(vocab), "type_vocab_size": 3,
        "shared_segment_embeddings": True,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(seed_style, indent=2), encoding="utf-8")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def make_more_assets(root: Path, vocab: list[str]) -> None:
    """Write the assets above under ``root`` (``vocab``: the shared vocab.txt's tokens)."""
    rng = random.Random(20251207)
    (root / "spo").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 96), ("dev", 32)):
        (root / "spo" / f"{split}.json").write_text("\n".join(_spo(rng, n)) + "\n", "utf-8")
    schemas = [json.dumps({"predicate": p}, ensure_ascii=False) for p in PREDICATES.values()]
    (root / "spo" / "all_50_schemas").write_text("\n".join(schemas) + "\n", "utf-8")
    _t5(root / "t5", len(vocab))
    _bart(root / "bart", len(vocab))
    _cdial(root / "cdial", vocab)
