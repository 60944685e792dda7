"""xlnet and transformer_xl against bert4torch 0.2.5 on the same weights.

XLNet: a random transformers ``XLNetLMHeadModel`` is the checkpoint (HF layout, which
0.2.5's ``XLNET`` loads too). Transformer-XL: transformers 5 has none, so a random
0.2.5 ``Transformer_XL``'s own parameters are the checkpoint (the layout 0.2.5 loads).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from b4t.models import build_transformer_model

SEED_CONFIG = {
    "vocab_size": 45,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


# ---- XLNet ---------------------------------------------------------------------------
@pytest.fixture()
def xlnet_files(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A tiny HF XLNet: its full state dict (with the tied ``lm_loss.weight`` that 0.2.5
    needs), a b4t-readable HF folder, and a bert4torch-style config for the seed."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.XLNetConfig(
        vocab_size=45, d_model=32, n_layer=2, n_head=4, d_inner=48, dropout=0.0
    )
    hf = transformers.XLNetLMHeadModel(cfg).eval()
    _randomise(hf)
    hf.save_pretrained(tmp_path / "hf")
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    torch.save(state, tmp_path / "xlnet.bin")
    seed_cfg = {**SEED_CONFIG, "attn_type": "bi", "untie_r": True}
    (tmp_path / "seed_config.json").write_text(json.dumps(seed_cfg))
    return tmp_path / "hf", tmp_path / "xlnet.bin", seed_cfg


def test_xlnet_equals_the_seed(b4t_seed: dict, xlnet_files: tuple, tmp_path: Path) -> None:
    hf_dir, weights, _ = xlnet_files
    seed = (
        b4t_seed["models"]
        .build_transformer_model(
            str(tmp_path / "seed_config.json"),
            str(weights),
            model="xlnet",
            with_lm=True,
            token_pad_ids=5,
        )
        .eval()
    )
    ours = build_transformer_model(checkpoint_path=hf_dir, model="xlnet", with_lm=True).eval()
    ids = torch.tensor([[6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 5, 5], [16, 0, 17, 5, 5, 5]])
    seg = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        theirs = seed.predict([ids, seg])
        mine = ours([ids, seg])
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_xlnet_default_pad_id_is_the_configs(
    b4t_seed: dict, xlnet_files: tuple, tmp_path: Path
) -> None:
    """0.2.5 masks id 0 (XLNet's <unk>) unless told; b4t masks the config's pad id (5)."""
    hf_dir, weights, _ = xlnet_files
    build = b4t_seed["models"].build_transformer_model
    seed_default = build(
        str(tmp_path / "seed_config.json"), str(weights), model="xlnet", with_lm=True
    ).eval()
    seed_five = build(
        str(tmp_path / "seed_config.json"),
        str(weights),
        model="xlnet",
        with_lm=True,
        token_pad_ids=5,
    ).eval()
    ours = build_transformer_model(checkpoint_path=hf_dir, model="xlnet", with_lm=True).eval()
    ids = torch.tensor([[6, 0, 8, 9, 5, 5]])
    seg = torch.zeros_like(ids)
    with torch.no_grad():
        mine = ours([ids, seg])[1]
        torch.testing.assert_close(mine, seed_five.predict([ids, seg])[1], atol=1e-5, rtol=0)
        assert (mine - seed_default.predict([ids, seg])[1]).abs().max() > 1e-3


# ---- Transformer-XL ------------------------------------------------------------------
def seed_xl(b4t_seed: dict, tmp_path: Path, **kwargs: object) -> tuple[object, Path]:
    """A random 0.2.5 Transformer_XL and its parameters saved under their own names."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**SEED_CONFIG, **kwargs}))
    seed = (
        b4t_seed["models"]
        .build_transformer_model(str(cfg), model="transformer_xl", segment_vocab_size=0)
        .eval()
    )
    _randomise(seed, 1)
    path = tmp_path / "xl.bin"
    torch.save(dict(seed.named_parameters()), path)
    return seed, path


XL_CASES = {
    "shared_biases": {},
    "untied_biases": {"untie_r": True},
    "pre_lnorm": {"pre_lnorm": True},
    "adaptive": {
        "adaptive_embedding": True,
        "cutoffs": [10, 30],
        "div_val": 2,
        "embedding_size": 32,
    },
    "clamp_len": {"clamp_len": 3},
}


@pytest.mark.parametrize("case", list(XL_CASES))
def test_transformer_xl_equals_the_seed(b4t_seed: dict, tmp_path: Path, case: str) -> None:
    seed, path = seed_xl(b4t_seed, tmp_path, **XL_CASES[case])
    ours = build_transformer_model(tmp_path / "config.json", path, model="transformer_xl").eval()
    ids = torch.randint(0, 45, (3, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours([ids]), seed.predict([ids]), atol=1e-5, rtol=0)


def test_transformer_xl_same_length_equals_the_seed(b4t_seed: dict, tmp_path: Path) -> None:
    # with mem_len the seed attends to mem_len zero vectors (see the next test)
    seed, path = seed_xl(b4t_seed, tmp_path, same_length=True, mem_len=4)
    ours = build_transformer_model(tmp_path / "config.json", path, model="transformer_xl").eval()
    ids = torch.randint(0, 45, (2, 7), generator=torch.Generator().manual_seed(4))
    zeros = [torch.zeros(2, 4, 32)] * 2
    with torch.no_grad():
        torch.testing.assert_close(ours([ids], mems=zeros), seed.predict([ids]), atol=1e-5, rtol=0)


def test_transformer_xl_memory_deviation(b4t_seed: dict, tmp_path: Path) -> None:
    """0.2.5 re-creates mem_len zero vectors as the memory of every call (the stored
    memory is never read back); b4t starts without memory and carries ``model.mems``
    into the next call when passed ``mems=``. On 0.2.5's zeros the two agree."""
    seed, path = seed_xl(b4t_seed, tmp_path, mem_len=5)
    ours = build_transformer_model(tmp_path / "config.json", path, model="transformer_xl").eval()
    g = torch.Generator().manual_seed(5)
    first, second = torch.randint(0, 45, (2, 2, 6), generator=g)
    with torch.no_grad():
        zeros = [torch.zeros(2, 5, 32)] * 2
        torch.testing.assert_close(
            ours([first], mems=zeros), seed.predict([first]), atol=1e-5, rtol=0
        )
        seed.predict([first])
        seed_second = seed.predict([second])
        ours([first])
        mine_second = ours([second], mems=ours.mems)
        torch.testing.assert_close(  # 0.2.5's second segment ignores the first
            ours([second], mems=zeros), seed_second, atol=1e-5, rtol=0
        )
        assert (mine_second - seed_second).abs().max() > 1e-3


def test_transformer_xl_with_lm_deviation(b4t_seed: dict, tmp_path: Path) -> None:
    """0.2.5 builds ``dense`` for ``with_lm=True`` but returns the hidden states only;
    b4t returns ``[hidden, dense(hidden)]`` as its XLNET does."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(SEED_CONFIG))
    seed = (
        b4t_seed["models"]
        .build_transformer_model(
            str(cfg), model="transformer_xl", segment_vocab_size=0, with_lm=True
        )
        .eval()
    )
    _randomise(seed, 2)
    path = tmp_path / "xl.bin"
    torch.save(dict(seed.named_parameters()), path)
    ours = build_transformer_model(cfg, path, model="transformer_xl", with_lm=True).eval()
    ids = torch.randint(0, 45, (2, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        theirs = seed.predict([ids])
        hidden, logits = ours([ids])
    torch.testing.assert_close(hidden, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        logits, theirs @ seed.dense.weight.T + seed.dense.bias, atol=1e-5, rtol=0
    )


def test_xlnet_clamp_len_deviation(b4t_seed: dict, xlnet_files: tuple, tmp_path: Path) -> None:
    """0.2.5 clamps only the positive distances to ``clamp_len``; b4t clamps both signs,
    as transformers (and XLNet's reference code) do. Equal while no distance is below
    ``-clamp_len``."""
    hf_dir, weights, _ = xlnet_files
    transformers = pytest.importorskip("transformers")
    hf = transformers.XLNetLMHeadModel.from_pretrained(hf_dir, clamp_len=2).eval()
    seed = (
        b4t_seed["models"]
        .build_transformer_model(
            str(tmp_path / "seed_config.json"),
            str(weights),
            model="xlnet",
            with_lm=True,
            token_pad_ids=5,
            clamp_len=2,
        )
        .eval()
    )
    ours = build_transformer_model(
        checkpoint_path=hf_dir, model="xlnet", with_lm=True, clamp_len=2
    ).eval()
    ids = torch.tensor([[6, 7, 8, 9, 10, 11]])
    seg = torch.zeros_like(ids)
    with torch.no_grad():
        mine = ours([ids, seg])[1]
        torch.testing.assert_close(
            mine, hf(input_ids=ids, token_type_ids=seg).logits, atol=1e-5, rtol=0
        )
        assert (mine - seed.predict([ids, seg])[1]).abs().max() > 1e-3
        short = ids[:, :2]  # distances 2 .. -1: nothing below -2
        torch.testing.assert_close(
            ours([short, seg[:, :2]])[1], seed.predict([short, seg[:, :2]])[1], atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("rel_shift", ["xlnet", "transformer_xl"])
def test_xlnet_layer_and_positions_equal_the_seed(b4t_seed: dict, rel_shift: str) -> None:
    """``XlnetLayer`` / ``XlnetPositionsEncoding`` with 0.2.5's arguments, forward order
    and state dict (loaded as is)."""
    from b4t.layers import XlnetLayer, XlnetPositionsEncoding

    seed_layers = b4t_seed["layers"]
    torch.manual_seed(0)
    seed_layer = seed_layers.XlnetLayer(
        16,
        2,
        0.0,
        0.0,
        24,
        "gelu",
        segment_vocab_size=2,
        rel_shift_opt="xlnet" if rel_shift == "xlnet" else None,
    ).eval()
    _randomise(seed_layer, 7)
    ours = XlnetLayer(16, 2, 0.0, 0.0, 24, "gelu", segment_vocab_size=2, rel_shift=rel_shift)
    ours.load_state_dict(seed_layer.state_dict())
    ours.eval()
    b, q, m = 2, 4, 3
    k = q + m
    distances = torch.arange(k, -q, -1) if rel_shift == "xlnet" else torch.arange(k - 1, -1, -1)
    seed_pos = seed_layers.XlnetPositionsEncoding(16)(distances.float())
    pos = XlnetPositionsEncoding(16)(distances)
    torch.testing.assert_close(pos, seed_pos)
    hidden, mems = torch.randn(b, q, 16), torch.randn(b, m, 16)
    seg = torch.randint(0, 2, (b, q, k))
    i, j = torch.arange(q)[:, None], torch.arange(k)[None, :]
    mask = (j <= i + m).long()[None, None].expand(b, 1, q, k).clone()
    mask[1, 0, :, 1] = 0
    with torch.no_grad():
        theirs = seed_layer(hidden, seg, seed_pos, mask, mems)
        mine = ours(hidden, seg, pos, mask, mems)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
