"""bert4torch 0.2.5 programs run unchanged in b4t.models, and nothing differs silently.

Config keys as build arguments, ``compound_tokens`` outside the vocabulary, the decoder
LMs' ``segment_vocab_size``, the inputs a forward refuses, prefix reuse under
``application='unilm'`` and the T5-PEGASUS / BART title pattern, each beside 0.2.5.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.prefix_reuse import reuse_prefixes

ATOL = 1e-5
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
    "type_vocab_size": 2,
}


def seed_file(b4t_seed: dict, folder: Path, name: str, **config: Any) -> tuple[Path, Path]:
    """A random 0.2.5 ``name`` model saved by 0.2.5 (``save_weights(prefix='')``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({**CONFIG, **config}))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seed = b4t_seed["models"].build_transformer_model(str(path), model=name)
    with torch.no_grad():
        for p in seed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seed.save_weights(str(folder / "weights.bin"), prefix="")
    return path, folder / "weights.bin"


def seed_build(b4t_seed: dict, config: Path, weights: Path | None, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build = b4t_seed["models"].build_transformer_model
        return build(str(config), None if weights is None else str(weights), **kw).eval()


def close(mine: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(mine, theirs, atol=ATOL, rtol=0)


# ---- config.json is part of the arguments ------------------------------------------------
def test_cdial_gpt_config_switches_shared_segment_embeddings_on(b4t_seed, tmp_path) -> None:
    """A converted CDial-GPT: ``"shared_segment_embeddings": true`` in config.json (segment
    ids index the word table) builds, loads strictly and equals 0.2.5 with no keyword."""
    config, weights = seed_file(
        b4t_seed, tmp_path, "gpt", type_vocab_size=57, shared_segment_embeddings=True
    )
    seed = seed_build(b4t_seed, config, weights, model="gpt")
    mine = build_transformer_model(config, weights, model="gpt").eval()
    assert mine.shared_segment_embeddings
    ids = torch.randint(1, 57, (2, 10), generator=torch.Generator().manual_seed(7))
    seg = torch.where(torch.arange(10) > 5, 4, 3).expand(2, 10)  # speaker tokens' ids
    with torch.no_grad():
        close(mine([ids, seg]), seed.predict([ids, seg]))
    # an explicit keyword wins over the file, as in 0.2.5
    plain = build_transformer_model(
        config, weights, model="gpt", shared_segment_embeddings=False, strict=False
    )
    assert not plain.shared_segment_embeddings


@pytest.mark.parametrize(
    ("key", "value", "check"),
    [
        ("with_pool", True, lambda m, out: isinstance(out, list) and out[1].shape == (2, 32)),
        ("with_mlm", "softmax", lambda m, out: torch.allclose(out[1].sum(-1), torch.ones(2, 8))),
        ("custom_position_ids", True, lambda m, out: m.custom_position_ids),
        ("token_pad_ids", 5, lambda m, out: m.token_pad_ids == 5),
        ("keep_hidden_layers", [0], lambda m, out: len(m.keep_hidden_layers) == 1),
    ],
)
def test_build_options_in_config_equal_the_seed(b4t_seed, tmp_path, key, value, check) -> None:
    """Every build option a config can spell is read from it (not key by key: the
    model's and build_transformer_model's argument names)."""
    config, weights = seed_file(b4t_seed, tmp_path, "bert", **{key: value})
    seed = seed_build(b4t_seed, config, weights, model="bert")
    mine = build_transformer_model(config, weights, model="bert", strict=False).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(6, 57, (2, 8), generator=g)
    ids[1, 6:] = 5 if key == "token_pad_ids" else 0
    inputs = [ids, torch.zeros_like(ids)]
    if key == "custom_position_ids":
        inputs.append(torch.arange(8).expand(2, 8))
    with torch.no_grad():
        out, theirs = mine(inputs), seed(inputs)
    assert check(mine, out)
    flat = out if isinstance(out, list) else [out]
    theirs = theirs if isinstance(theirs, list) else [theirs]
    for a, b in zip(flat, theirs, strict=True):
        close(a, b)


def test_unknown_config_keys_stay_accepted(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**CONFIG, "some_tool_setting": 3, "architectures": ["X"]}))
    model = build_transformer_model(path, model="bert")
    assert model.config.extra["some_tool_setting"] == 3


# ---- compound_tokens ------------------------------------------------------------------
def test_compound_tokens_outside_the_vocab_warn_and_take_the_mean(b4t_seed, tmp_path) -> None:
    """As 0.2.5: an entry with an id outside the vocabulary warns and its row is the mean
    of every row (it raised IndexError)."""
    config, weights = seed_file(b4t_seed, tmp_path, "bert", with_mlm=True)
    compound = [[1], [500], [2, 570]]
    seed = seed_build(b4t_seed, config, weights, model="bert", compound_tokens=compound)
    with pytest.warns(UserWarning, match="compound_tokens entry \\[500\\]"):
        mine = build_transformer_model(
            config, weights, model="bert", compound_tokens=compound
        ).eval()
    table = mine.embeddings.word_embeddings.weight
    close(table, seed.embeddings.word_embeddings.weight)
    close(mine.mlm.bias, seed.mlmBias)
    ids = torch.tensor([[2, 57, 58, 59, 3]])
    with torch.no_grad():
        close(mine([ids, torch.zeros_like(ids)])[0], seed([ids, torch.zeros_like(ids)])[0])


def test_compound_tokens_of_several_ids_add_one_row(b4t_seed, tmp_path) -> None:
    """0.2.5 appends one row per id of an entry (``mean * ones_like``) and then fails
    on the size it counted (one row per entry); b4t appends one row, the mean
    (MIGRATION.md)."""
    config, weights = seed_file(b4t_seed, tmp_path, "bert", with_mlm=True)
    with pytest.raises(RuntimeError, match="size mismatch"):
        seed_build(b4t_seed, config, weights, model="bert", compound_tokens=[[3, 4]])
    mine = build_transformer_model(config, weights, model="bert", compound_tokens=[[3, 4]])
    table = mine.embeddings.word_embeddings.weight
    assert table.shape[0] == 58
    close(table[57], table[3:5].mean(0))


# ---- decoder LMs: segment_vocab_size ---------------------------------------------------
def test_decoder_lm_keeps_an_explicit_segment_vocab_size(b4t_seed, tmp_path) -> None:
    """``segment_vocab_size=2`` on gpt2 builds a 2-row segment table, as 0.2.5 does (it
    was silently 0); a checkpoint without that table is refused naming the parameter."""
    config, weights = seed_file(b4t_seed, tmp_path, "gpt2", type_vocab_size=0)
    seed = seed_build(b4t_seed, config, weights, model="gpt2", segment_vocab_size=2)
    mine = build_transformer_model(
        config, weights, model="gpt2", segment_vocab_size=2, strict=False
    )
    mine.embeddings.segment_embeddings.weight.data.copy_(seed.embeddings.segment_embeddings.weight)
    ids = torch.randint(1, 57, (2, 7), generator=torch.Generator().manual_seed(3))
    seg = (torch.arange(7) > 3).long().expand(2, 7)
    with torch.no_grad():
        close(mine.eval()([ids, seg]), seed.predict([ids, seg]))
    with pytest.raises(Exception, match="segment_vocab_size=2 builds a segment table"):
        build_transformer_model(config, weights, model="gpt2", segment_vocab_size=2)


# ---- inputs a forward refuses ----------------------------------------------------------
@pytest.fixture
def bert(b4t_seed, tmp_path) -> Any:
    config, weights = seed_file(b4t_seed, tmp_path, "bert")
    return build_transformer_model(config, weights, model="bert").eval()


def test_a_misspelled_keyword_is_an_error(bert) -> None:
    ids = torch.randint(1, 57, (1, 5))
    with pytest.raises(TypeError, match="attenton_mask"):
        bert([ids], attenton_mask=torch.ones_like(ids))


def test_extra_positional_inputs_are_an_error(bert) -> None:
    ids = torch.randint(1, 57, (1, 5))
    with pytest.raises(TypeError, match="takes 2 positional input"):
        bert([ids, torch.zeros_like(ids), torch.ones_like(ids)])


@pytest.mark.parametrize("bad", [-1, 2])
def test_out_of_range_segment_ids_are_an_error(bert, bad) -> None:
    ids = torch.randint(1, 57, (1, 5))
    with pytest.raises(ValueError, match=f"segment id {bad} in segment_ids"):
        bert([ids, torch.full_like(ids, bad)])


def test_segment_ids_for_a_model_without_segments_are_an_error(b4t_seed, tmp_path) -> None:
    config, weights = seed_file(b4t_seed, tmp_path, "bert", type_vocab_size=0)
    model = build_transformer_model(config, weights, model="bert", strict=False).eval()
    ids = torch.randint(1, 57, (1, 5))
    with pytest.raises(ValueError, match="segment_ids given"):
        model([ids], segment_ids=torch.zeros_like(ids))
    with pytest.raises(TypeError, match="no segment_ids input"):
        model([ids, torch.zeros_like(ids)])


# ---- prefix reuse under unilm ----------------------------------------------------------
def test_unilm_reuse_equals_the_seed_when_a_source_token_is_appended(b4t_seed, tmp_path) -> None:
    """Appending a segment-0 token changes every earlier source position; inside
    reuse_prefixes() b4t once returned the old outputs (max probability difference 0.63).
    Each step, rows permuted in place between steps too, equals 0.2.5's full pass."""
    config, weights = seed_file(b4t_seed, tmp_path, "bert", with_mlm=True)
    seed = seed_build(b4t_seed, config, weights, model="bert", application="unilm")
    mine = build_transformer_model(config, weights, model="bert", application="unilm").eval()
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 57, (2, 4), generator=g)
    seg = torch.zeros_like(ids)
    steps = [([0, 0], None), ([1, 1], None), ([1, 1], [1, 0]), ([0, 1], [1, 0]), ([1, 1], None)]
    with torch.no_grad(), reuse_prefixes():
        close(mine([ids, seg])[1], seed([ids, seg])[1])
        for segments, order in steps:
            if order is not None:  # the same rows, swapped
                ids, seg = ids[order], seg[order]
            ids = torch.cat([ids, torch.randint(3, 57, (2, 1), generator=g)], 1)
            seg = torch.cat([seg, torch.tensor(segments)[:, None]], 1)
            close(mine([ids, seg])[1], seed([ids, seg])[1])


# ---- the T5-PEGASUS / BART title pattern -------------------------------------------------
@pytest.mark.parametrize("name", ["mt5.1.1", "t5.1.0", "bart"])
def test_title_pattern_at_the_model_level(b4t_seed, tmp_path, name) -> None:
    """``encoder_output = model.encoder.predict([token_ids])``, then per step
    ``model.decoder.predict([output_ids] + inputs)[-1][:, -1, :]`` with the encoder
    outputs' rows repeated and reordered as beam search does: equal to 0.2.5 (T5 logits
    times ``H ** -0.5``, MIGRATION.md). The hidden states alone (a tensor, no mask) work
    where the source has no padding."""
    t5 = {
        "relative_attention_num_buckets": 8,
        "attention_head_size": 8,
        "hidden_act": "relu",
        "attention_scale": False,
    }
    extra = {"segment_vocab_size": 0, **(t5 if "t5" in name else {})}
    if name == "mt5.1.1":
        extra.update(hidden_act="gelu_new")
    config, weights = seed_file(b4t_seed, tmp_path, name, **extra)
    seed = seed_build(b4t_seed, config, weights, model=name)
    mine = build_transformer_model(config, weights, model=name).eval()
    factor = 1.0 if name == "bart" else CONFIG["hidden_size"] ** -0.5
    token_ids = torch.randint(3, 57, (1, 7), generator=torch.Generator().manual_seed(6))
    theirs_enc = seed.encoder.predict([token_ids])
    mine_enc = mine.encoder.predict([token_ids])
    close(mine_enc[0], theirs_enc[0])
    rows = torch.tensor([0, 0, 0])  # three beams from one source
    output_ids = torch.tensor([[2], [5], [9]])
    for step in range(3):
        inputs_theirs = [t[rows] for t in theirs_enc]
        inputs_mine = [t[rows] for t in mine_enc]
        with torch.no_grad(), reuse_prefixes():
            # the seed programs' own spelling
            theirs = seed.decoder.predict([output_ids] + inputs_theirs)[-1][:, -1, :]  # noqa: RUF005
            mine_out = mine.decoder.predict([output_ids] + inputs_mine)[-1][:, -1, :]  # noqa: RUF005
            tensor_only = mine.decoder.predict([output_ids, inputs_mine[0]])[-1][:, -1, :]
        close(mine_out * factor, theirs)
        close(tensor_only, mine_out)
        output_ids = torch.cat([output_ids[[2, 0, 1]], torch.tensor([[3], [4], [6 + step]])], 1)


@pytest.mark.parametrize("name", ["bert", "roformer"])
def test_attention_scale_false_in_config_equals_the_seed(b4t_seed, tmp_path, name) -> None:
    """``"attention_scale": false`` (0.2.5's option: unscaled scores) read from config.json
    and honoured; it was ignored. A model whose attention scales its own way refuses it."""
    config, weights = seed_file(b4t_seed, tmp_path, name, attention_scale=False)
    seed = seed_build(b4t_seed, config, weights, model=name)
    mine = build_transformer_model(config, weights, model=name).eval()
    ids = torch.randint(3, 57, (2, 8), generator=torch.Generator().manual_seed(4))
    ids[1, 6:] = 0
    seg = torch.zeros_like(ids)
    with torch.no_grad():
        close(mine([ids, seg]), seed([ids, seg]))
        scaled = build_transformer_model(config, weights, model=name, attention_scale=True)
        assert (scaled.eval()([ids, seg]) - seed([ids, seg])).abs().max() > 1e-3
    with pytest.raises(ValueError, match="attention_scale=False is not supported"):
        build_transformer_model(config, model="nezha")
