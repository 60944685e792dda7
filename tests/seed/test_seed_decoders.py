"""gpt2_ml against bert4torch 0.2.5 on the same weights, in the layout 0.2.5 loads.

transformers has no GPT2-ML, so the seed is the reference: a random seed model's
weights are written under the seed's checkpoint names (``gpt2_ml.embeddings...``,
``gpt2_ml.encoder.layer.{i}...``), and both libraries load that one file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from b4t.models import build_transformer_model

CONFIG = {
    "vocab_size": 57,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "hidden_act": "gelu",
    "max_position_embeddings": 24,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def seed_checkpoint(b4t_seed: dict, tmp_path: Path, **config: object) -> tuple[object, Path]:
    """A random 0.2.5 GPT2_ML, its weights saved under its own checkpoint names."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**CONFIG, **config}))
    torch.manual_seed(0)
    seed = b4t_seed["models"].build_transformer_model(str(cfg), model="gpt2_ml").eval()
    state = seed.state_dict()
    checkpoint = {old: state[new] for new, old in seed.variable_mapping().items() if new in state}
    path = tmp_path / "gpt2_ml.bin"
    torch.save(checkpoint, path)
    seed.load_weights_from_pytorch_checkpoint(str(path))
    return seed, path


@pytest.mark.parametrize("segments", [0, 2])
def test_gpt2_ml_equals_the_seed(b4t_seed: dict, tmp_path: Path, segments: int) -> None:
    seed, path = seed_checkpoint(b4t_seed, tmp_path, type_vocab_size=segments)
    ours = build_transformer_model(tmp_path / "config.json", path, model="gpt2_ml").eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 57, (3, 11), generator=g)
    ids[1, 8:] = 0  # right padding (pad id 0, the seed's rule)
    ids[2, 5:] = 0
    inputs = [ids] if not segments else [ids, (torch.arange(11) > 4).long().expand(3, 11)]
    with torch.no_grad():
        theirs = seed.predict(inputs)
        mine = ours(inputs)
    keep = ids.ne(0)
    torch.testing.assert_close(mine[keep], theirs[keep], atol=1e-5, rtol=0)
    assert theirs.shape == mine.shape == (3, 11, 57)
    torch.testing.assert_close(mine.sum(-1), torch.ones(3, 11))  # softmax, as the seed


def test_gpt2_ml_linear_logits_and_cache(b4t_seed: dict, tmp_path: Path) -> None:
    seed, path = seed_checkpoint(b4t_seed, tmp_path, type_vocab_size=0)
    ours = build_transformer_model(
        tmp_path / "config.json", path, model="gpt2_ml", final_activation="linear"
    ).eval()
    ids = torch.randint(1, 57, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        theirs = seed.predict([ids])
        logits = ours([ids])
        torch.testing.assert_close(torch.softmax(logits, -1), theirs, atol=1e-5, rtol=0)
        first, cache = ours(ids[:, :5], past_key_values=None)
        rest, _ = ours(ids[:, 5:], past_key_values=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), logits, atol=1e-5, rtol=0)
