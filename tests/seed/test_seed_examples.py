"""bert4torch 0.2.5 example code, run twice: with the seed's imports and with b4t's.

Each example is written once, as a bert4torch 0.2.5 user writes it (feature extraction,
MLM filling, SimBERT-style pooled similarity, CoSENT sentence pooling). Only the import
header differs between the two runs; the numbers must agree (1e-5). The checkpoint is
a tiny random transformers BERT over a small vocabulary written by the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

SEED_HEADER = """
from bert4torch.models import build_transformer_model
from bert4torch.tokenizers import Tokenizer
from bert4torch.snippets import sequence_padding, get_pool_emb
"""
B4T_HEADER = """
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.layers import get_pool_emb
"""

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    *"我们是中国人今天气很好喜欢自然语言处理的模型明下雨吗",
    "the", "cat", "sat", "on", "mat", "dog", "##s", "a",
]  # fmt: skip

FEATURE_EXTRACTION = """
tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build_transformer_model(config_path, checkpoint_path)
model.eval()
token_ids, segment_ids = tokenizer.encode('语言模型')
token_ids, segment_ids = torch.tensor([token_ids]), torch.tensor([segment_ids])
with torch.no_grad():
    result = model([token_ids, segment_ids]).numpy()
"""

MLM_FILLING = """
tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build_transformer_model(config_path, checkpoint_path, with_mlm='softmax')
model.eval()
token_ids, segment_ids = tokenizer.encode('今天天气很好')
token_ids[3] = token_ids[4] = tokenizer._token_mask_id
tokens_ids_tensor = torch.tensor([token_ids])
segment_ids_tensor = torch.tensor([segment_ids])
with torch.no_grad():
    _, probas = model([tokens_ids_tensor, segment_ids_tensor])
    result_ids = probas[0, 3:5].argmax(axis=1).tolist()
result = (probas[0, 3:5].numpy(), tokenizer.decode(result_ids))
"""

SIMBERT_SIMILARITY = """
tokenizer = Tokenizer(dict_path, do_lower_case=True)
encoder = build_transformer_model(config_path, checkpoint_path, with_pool='linear',
                                  application='unilm')
encoder.eval()
texts = ['今天天气很好', '明天下雨吗', '我喜欢自然语言处理', 'the cat sat on a mat']
X, S = [], []
for t in texts:
    x, s = tokenizer.encode(t)
    X.append(x)
    S.append(s)
X = torch.tensor(sequence_padding(X), dtype=torch.long)
S = torch.tensor(sequence_padding(S), dtype=torch.long)
with torch.no_grad():
    _, Z, _ = encoder([X, S])
Z = Z.numpy()
Z /= (Z**2).sum(axis=1, keepdims=True)**0.5
result = Z @ Z.T
"""

COSENT_POOLING = """
tokenizer = Tokenizer(dict_path, do_lower_case=True)
bert = build_transformer_model(config_path, checkpoint_path, with_pool=True,
                               output_all_encoded_layers=True)
bert.eval()
pairs = [('今天天气很好', '明天下雨吗'), ('the cat sat on a mat', 'a dog sat on the mat')]
result = {}
for pool_strategy in ['cls', 'last-avg', 'first-last-avg', 'pooler', 'custom']:
    sims = []
    for a, b in pairs:
        token_ids = [tokenizer.encode(a)[0], tokenizer.encode(b)[0]]
        token_ids = torch.tensor(sequence_padding(token_ids), dtype=torch.long)
        with torch.no_grad():
            hidden_state, pooler = bert([token_ids, torch.zeros_like(token_ids)])
        attention_mask = token_ids.gt(0).long()
        emb = get_pool_emb(hidden_state, pooler, attention_mask, pool_strategy, custom_layer=[1, 2])
        sims.append(torch.cosine_similarity(emb[0], emb[1], dim=0).item())
    result[pool_strategy] = sims
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    """``dict_path``, ``config_path``, ``checkpoint_path``: a tiny BERT over :data:`VOCAB`."""
    folder = tmp_path_factory.mktemp("example")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string())
    return {
        "dict_path": str(folder / "vocab.txt"),
        "config_path": str(folder / "config.json"),
        "checkpoint_path": str(folder / "pytorch_model.bin"),
    }


def run_example(header: str, body: str, assets: dict[str, str]) -> Any:
    """Execute one example under ``header``'s imports; its ``result``."""
    namespace: dict[str, Any] = {"torch": torch, "np": np, **assets}
    exec(compile(header + body, "<example>", "exec"), namespace)
    return namespace["result"]


def assert_same(seed: Any, ours: Any) -> None:
    if isinstance(seed, dict):
        assert seed.keys() == ours.keys()
        for key in seed:
            assert_same(seed[key], ours[key])
    elif isinstance(seed, (list, tuple)):
        assert len(seed) == len(ours)
        for a, b in zip(seed, ours, strict=True):
            assert_same(a, b)
    elif isinstance(seed, str):
        assert ours == seed
    else:
        np.testing.assert_allclose(np.asarray(ours), np.asarray(seed), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "body",
    [FEATURE_EXTRACTION, MLM_FILLING, SIMBERT_SIMILARITY, COSENT_POOLING],
    ids=["feature_extraction", "mlm_filling", "simbert_similarity", "cosent_pooling"],
)
def test_example_gives_the_seeds_numbers(b4t_seed, assets, body) -> None:
    seed = run_example(SEED_HEADER, body, assets)
    ours = run_example(B4T_HEADER, body, assets)
    assert_same(seed, ours)


def test_examples_are_not_trivial(b4t_seed, assets) -> None:
    """The numbers compared above carry information: not constant, not all equal."""
    sims = run_example(B4T_HEADER, SIMBERT_SIMILARITY, assets)
    off_diagonal = sims[~np.eye(len(sims), dtype=bool)]
    assert np.ptp(off_diagonal) > 1e-3
    pooled = run_example(B4T_HEADER, COSENT_POOLING, assets)
    assert len({round(v[0], 4) for v in pooled.values()}) >= 3  # strategies differ
    probas, text = run_example(B4T_HEADER, MLM_FILLING, assets)
    np.testing.assert_allclose(probas.sum(axis=1), 1.0, atol=1e-5)
    assert len(text) >= 1 and Path(assets["dict_path"]).exists()
