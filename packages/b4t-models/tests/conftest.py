"""Fixtures for b4t-models tests: tiny random transformers checkpoints saved to tmp dirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)

# model= name -> (config class, model class with heads, extra config keys)
HF_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": ("BertConfig", "BertForPreTraining", {}),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", {"pad_token_id": 1, "type_vocab_size": 1}),
    "albert": ("AlbertConfig", "AlbertForPreTraining", {"embedding_size": 16}),
    "electra": ("ElectraConfig", "ElectraForMaskedLM", {"embedding_size": 16}),
    "electra-discriminator": ("ElectraConfig", "ElectraForPreTraining", {"embedding_size": 16}),
    "ernie": ("ErnieConfig", "ErnieForPreTraining", {"use_task_id": True}),
}


@pytest.fixture
def hf_checkpoint(tmp_path: Path) -> Callable[..., tuple[Any, Path]]:
    """``make(name, **config)`` -> (the transformers model in eval mode, its save dir)."""

    def make(name: str, safe: bool = True, **overrides: Any) -> tuple[Any, Path]:
        cfg_name, model_name, extra = HF_CASES[name]
        torch.manual_seed(0)
        config = getattr(transformers, cfg_name)(**{**TINY, **extra, **overrides})
        model = getattr(transformers, model_name)(config).eval()
        out = tmp_path / f"{name}-hf"
        model.save_pretrained(out)
        if not safe:  # transformers 5 writes safetensors only: make the legacy .bin by hand
            torch.save(model.state_dict(), out / "pytorch_model.bin")
            (out / "model.safetensors").unlink()
        return model, out

    return make


def padded_batch(pad_id: int, vocab_size: int = 99) -> tuple[torch.Tensor, ...]:
    """Token ids ``[3, 10]`` with two padded rows, two segments, and the keep mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab_size, (3, 10), generator=g)
    ids[ids == pad_id] = 5
    ids[1, 7:] = pad_id
    ids[2, 4:] = pad_id
    seg = torch.zeros_like(ids)
    seg[:, 5:] = 1
    seg[2, 4:] = 0
    return ids, seg, ids.ne(pad_id)


@pytest.fixture
def batch() -> Callable[[int], tuple[torch.Tensor, ...]]:
    return padded_batch
