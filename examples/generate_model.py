"""The character-level GPT of the generation demo, its decoder-protocol adapter and its files.

The model is ``build_transformer_model(config, model='gpt2', application='lm')`` from a
Hugging Face GPT-2 ``config.json`` dict (``n_embd``, ``n_layer``, ...), randomly
initialised. :class:`CharGPT` wraps it as ``ids (B, L) -> logits (B, L, V)`` for
training, and is also a decoder model in the sense of :mod:`b4t.generation.protocol`
(``model(input_ids, past_key_values=None, attention_mask=None) -> (logits, cache)``)
for :class:`~b4t.generation.SeqGeneration` and the batching scheduler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from generate_data import CharTokenizer
from torch import nn

from b4t.models import build_transformer_model

VOCAB_FILE = "chars.json"


def gpt2_config(
    vocab_size: int,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    n_positions: int = 64,
    dropout: float = 0.0,
) -> dict[str, Any]:
    """A Hugging Face GPT-2 ``config.json`` for a fresh character model (nanoGPT's baby GPT)."""
    if n_embd % n_head:
        raise ValueError(f"n_embd={n_embd} is not a multiple of n_head={n_head}")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": vocab_size,
        "n_positions": n_positions,
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": n_head,
        "n_inner": 4 * n_embd,
        "activation_function": "gelu_new",
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }


class CharGPT(nn.Module):
    """A causal LM over characters.

    ``forward(input_ids (B, L)) -> logits (B, L, V)``; with ``past_key_values`` or
    ``attention_mask`` given it follows the b4t decoder protocol and returns
    ``(logits (B, new, V), cache)``.

    Args:
        config: a GPT-2 config dict (see :func:`gpt2_config`).
        checkpoint: a folder or weights file to load (``None``: random init).
    """

    def __init__(self, config: dict[str, Any], checkpoint: str | Path | None = None) -> None:
        super().__init__()
        self.config_dict = dict(config)
        self.context = int(config["n_positions"])
        self.name = "gpt2"
        self.transformer = build_transformer_model(
            dict(config), checkpoint, model="gpt2", application="lm", final_activation="linear"
        )

    @property
    def vocab_size(self) -> int:
        return int(self.config_dict["vocab_size"])

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
    ) -> Any:
        if past_key_values is None and attention_mask is None:
            return self.transformer(input_ids)  # (B, L, V) logits
        # the decoder protocol: b4t's CausalLM returns (logits, KVCache)
        return self.transformer.decode_step(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask
        )


def save_model(model: CharGPT, tokenizer: CharTokenizer, out: Path) -> Path:
    """Write ``config.json``, the weights (``model.safetensors``, the variant's own key
    names) and ``chars.json`` (the vocabulary, id order) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.transformer.save_pretrained(out)
    config = dict(model.config_dict)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / VOCAB_FILE).write_text(
        json.dumps(tokenizer.chars, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return out


def load_model(folder: Path) -> tuple[CharGPT, CharTokenizer]:
    """The model and tokenizer :func:`save_model` wrote."""
    folder = Path(folder)
    for name in ("config.json", VOCAB_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; not a saved generation model")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    chars = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
    tokenizer = CharTokenizer(chars[1:])
    if len(tokenizer) != config["vocab_size"]:
        raise ValueError(
            f"{VOCAB_FILE} holds {len(tokenizer)} characters but config.json says "
            f"vocab_size={config['vocab_size']}"
        )
    model = CharGPT(config, folder)
    model.eval()
    return model, tokenizer
