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
        first, cache = ours.decode_step(ids[:, :5], past_key_values=None)
        rest, _ = ours.decode_step(ids[:, 5:], past_key_values=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), logits, atol=1e-5, rtol=0)


GENERIC = {
    "vocab_size": 57,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "hidden_act": "gelu",
    "max_position_embeddings": 24,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "segment_vocab_size": 0,
}


def seed_generic(b4t_seed: dict, tmp_path: Path, model: str) -> tuple[object, Path]:
    """A random 0.2.5 model saved the way 0.2.5 loads it: mapped names, else its own."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(GENERIC))
    torch.manual_seed(0)
    seed = b4t_seed["models"].build_transformer_model(str(cfg), model=model).eval()
    with torch.no_grad():  # the seed zero-initialises biases: give them values
        for p in seed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mapping = seed.variable_mapping()
    checkpoint = {mapping.get(k, k): v for k, v in seed.state_dict().items()}
    path = tmp_path / f"{model}.bin"
    torch.save(checkpoint, path)
    if model == "transformer":  # 0.2.5 cannot load one (see the test below): it keeps its own
        with pytest.raises(TypeError, match="load_variable"):
            seed.load_weights_from_pytorch_checkpoint(str(path))
    else:
        seed.load_weights_from_pytorch_checkpoint(str(path))
    return seed, path


def _ids(rows: int, length: int, seed: int) -> torch.Tensor:
    ids = torch.randint(1, 57, (rows, length), generator=torch.Generator().manual_seed(seed))
    ids[1, length - 3 :] = 0
    return ids


def test_generic_transformer_equals_the_seed(b4t_seed: dict, tmp_path: Path) -> None:
    """0.2.5's Transformer raises TypeError loading any checkpoint (its load_variable takes
    no arguments); b4t loads the seed's own parameter names (MIGRATION.md)."""
    seed, path = seed_generic(b4t_seed, tmp_path, "transformer")
    ours = build_transformer_model(tmp_path / "config.json", path, model="transformer").eval()
    enc, dec = _ids(2, 9, 1), _ids(2, 7, 2)
    with torch.no_grad():
        theirs = seed.predict([[enc], [dec]])
        mine = ours([[enc], [dec]])
    keep_enc, keep_dec = enc.ne(0), dec.ne(0)
    torch.testing.assert_close(mine[0][keep_enc], theirs[0][keep_enc], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine[1][keep_dec], theirs[1][keep_dec], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine[2][keep_dec], theirs[2][keep_dec], atol=1e-5, rtol=0)
    # the cached decoder (b4t's addition) gives the seed's logits step by step
    memory = ours.encode(enc, keep_enc)
    with torch.no_grad():
        first, cache = ours.decode(dec[:1, :3], memory[:1], keep_enc[:1])
        rest, _ = ours.decode(dec[:1, 3:], memory[:1], keep_enc[:1], cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), theirs[2][:1], atol=1e-5, rtol=0)


def test_generic_encoder_and_decoder_equal_the_seed(b4t_seed: dict, tmp_path: Path) -> None:
    seed_enc, enc_path = seed_generic(b4t_seed, tmp_path, "encoder")
    ours_enc = build_transformer_model(
        tmp_path / "config.json", enc_path, model="encoder", segment_vocab_size=0
    ).eval()
    enc = _ids(2, 9, 3)
    with torch.no_grad():
        hidden, mask = seed_enc.predict([enc])
        mine_hidden, mine_mask = ours_enc([enc])
    keep = enc.ne(0)
    torch.testing.assert_close(mine_hidden[keep], hidden[keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine_mask, mask.float())
    seed_dec, dec_path = seed_generic(b4t_seed, tmp_path, "decoder")
    ours_dec = build_transformer_model(tmp_path / "config.json", dec_path, model="decoder").eval()
    dec = _ids(2, 6, 4)
    with torch.no_grad():
        theirs = seed_dec.predict([dec, hidden, mask])
        mine = ours_dec.predict([dec, hidden, mask])
    keep = dec.ne(0)
    torch.testing.assert_close(mine[0][keep], theirs[0][keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine[1][keep], theirs[1][keep], atol=1e-5, rtol=0)


def test_gpt2_returns_what_the_seed_returns(b4t_seed: dict, tmp_path: Path) -> None:
    """b4t's gpt2 (transformers' layout) and 0.2.5's GPT2 (its converted layout) on the
    same weights: the same softmax probabilities. (0.2.5 fixes every LayerNorm eps at
    1e-12; the transformers model here uses 1e-12 too.)"""
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(
        vocab_size=57,
        n_positions=24,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=48,
        layer_norm_epsilon=1e-12,
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = build_transformer_model(checkpoint_path=tmp_path / "hf", model="gpt2").eval()
    cfg = tmp_path / "seed.json"
    cfg.write_text(json.dumps({**CONFIG, "hidden_act": "gelu_new", "segment_vocab_size": 0}))
    seed = b4t_seed["models"].build_transformer_model(str(cfg), model="gpt2").eval()
    mine = ours.state_dict()
    state = {
        "embeddings.word_embeddings.weight": mine["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": mine["embeddings.position_embeddings.weight"],
        "LayerNormFinal.weight": mine["norm.weight"],
        "LayerNormFinal.bias": mine["norm.bias"],
    }
    for i in range(2):
        ours_l, seed_l = f"layers.{i}", f"encoderLayer.{i}"
        for part in ("weight", "bias"):
            q, k, v = mine[f"{ours_l}.attention.qkv.{part}"].chunk(3)
            state.update(
                {
                    f"{seed_l}.multiHeadAttention.{n}.{part}": t
                    for n, t in zip("qkv", (q, k, v), strict=True)
                }
            )
            state[f"{seed_l}.multiHeadAttention.o.{part}"] = mine[f"{ours_l}.attention.o.{part}"]
            state[f"{seed_l}.layerNorm1.{part}"] = mine[f"{ours_l}.norm1.{part}"]
            state[f"{seed_l}.layerNorm2.{part}"] = mine[f"{ours_l}.norm2.{part}"]
            state[f"{seed_l}.feedForward.intermediateDense.{part}"] = mine[
                f"{ours_l}.ffn.intermediate.{part}"
            ]
            state[f"{seed_l}.feedForward.outputDense.{part}"] = mine[f"{ours_l}.ffn.output.{part}"]
    missing, unexpected = seed.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"dense.weight"}  # dense is the tied embedding
    ids = torch.randint(1, 57, (2, 10), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(ours([ids]), seed.predict([ids]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ["gpt", "gpt2"])
@pytest.mark.parametrize("segments", [0, 2])
def test_gpt_and_gpt2_in_the_seed_layout(
    b4t_seed: dict, tmp_path: Path, model: str, segments: int
) -> None:
    """A checkpoint in 0.2.5's converted layout (``gpt.*`` / ``gpt2.*``) loads into b4t's
    ``gpt`` / ``gpt2`` (told apart from transformers' layout by its keys), same outputs."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**CONFIG, "hidden_act": "gelu_new", "type_vocab_size": segments}))
    torch.manual_seed(0)
    seed = b4t_seed["models"].build_transformer_model(str(cfg), model=model).eval()
    with torch.no_grad():
        for p in seed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mapping = seed.variable_mapping()
    state = seed.state_dict()
    checkpoint = {old: state[new] for new, old in mapping.items() if new in state}
    path = tmp_path / f"{model}.bin"
    torch.save(checkpoint, path)
    seed.load_weights_from_pytorch_checkpoint(str(path))
    ours = build_transformer_model(cfg, path, model=model).eval()
    ids = torch.randint(1, 57, (2, 10), generator=torch.Generator().manual_seed(7))
    inputs = [ids] if not segments else [ids, (torch.arange(10) > 5).long().expand(2, 10)]
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs), seed.predict(inputs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", ["t5.1.0", "t5.1.1"])
def test_t5_against_the_seed(b4t_seed: dict, tmp_path: Path, version: str) -> None:
    """0.2.5's T5 on a transformers T5 checkpoint. t5.1.0: the same logits. t5.1.1: 0.2.5
    scales the decoder output by ``d_model ** -0.5`` although the head is untied, which
    transformers (and b4t) do not (MIGRATION.md): b4t's logits times that factor equal
    0.2.5's."""
    transformers = pytest.importorskip("transformers")
    v11 = version == "t5.1.1"
    hf_cfg = transformers.T5Config(
        vocab_size=57, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu" if v11 else "relu",
        tie_word_embeddings=not v11, layer_norm_epsilon=1e-12,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    if v11:  # an untied head of its own, as real T5.1.1 checkpoints have
        state["lm_head.weight"] = torch.randn_like(state["shared.weight"]) * 0.05
    path = tmp_path / "t5.bin"
    torch.save(state, path)
    raw = json.loads(hf_cfg.to_json_string())
    raw.update(tie_word_embeddings=not v11)
    raw.pop("scale_decoder_outputs", None)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    seed_cfg = tmp_path / "seed.json"
    seed_cfg.write_text(json.dumps({
        "vocab_size": 57, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "attention_head_size": 8, "intermediate_size": 48, "relative_attention_num_buckets": 8,
        "hidden_act": "gelu_new" if v11 else "relu", "attention_scale": False,
        "max_position": 64, "segment_vocab_size": 0, "hidden_dropout_prob": 0.0,
    }))  # fmt: skip
    seed = b4t_seed["models"].build_transformer_model(str(seed_cfg), path, model=version).eval()
    ours = build_transformer_model(tmp_path / "config.json", path, model=version).eval()
    enc = torch.randint(2, 57, (2, 9), generator=torch.Generator().manual_seed(8))
    dec = torch.randint(2, 57, (2, 6), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        theirs = seed.predict([[enc], [dec]])[-1]
        mine = ours([enc, dec])[-1]
    factor = 32**-0.5 if v11 else 1.0
    torch.testing.assert_close(mine * factor, theirs, atol=1e-5, rtol=0)
    if v11:
        assert not torch.allclose(mine, theirs, atol=1e-3)


def test_bart_against_the_seed(b4t_seed: dict, tmp_path: Path) -> None:
    """0.2.5's BART on a transformers BartModel checkpoint reads positions from row 0 of
    the table (transformers, and b4t, from row 2) and fixes LayerNorm eps at 1e-12: with
    the table shifted by two rows and eps 1e-12, b4t's logits equal 0.2.5's; on the real
    checkpoint they differ (MIGRATION.md)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BartConfig(
        vocab_size=57, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=20, dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.BartModel(cfg).eval()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    real = tmp_path / "real.bin"
    torch.save(state, real)
    for stack in ("encoder", "decoder"):  # what 0.2.5 reads at position p is row p
        table = state[f"{stack}.embed_positions.weight"]
        state[f"{stack}.embed_positions.weight"] = torch.cat([table[:2], table[:-2]])
    shifted = tmp_path / "shifted.bin"
    torch.save(state, shifted)
    (tmp_path / "config.json").write_text(cfg.to_json_string())
    seed_cfg = tmp_path / "seed.json"
    seed_cfg.write_text(json.dumps({
        "vocab_size": 57, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 48, "hidden_act": "gelu", "max_position": 22,
        "segment_vocab_size": 0, "hidden_dropout_prob": 0.0,
    }))  # fmt: skip
    seed = b4t_seed["models"].build_transformer_model(str(seed_cfg), str(real), model="bart")
    seed.eval()
    enc = torch.randint(3, 57, (2, 9), generator=torch.Generator().manual_seed(10))
    dec = torch.randint(3, 57, (2, 6), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        theirs = seed.predict([[enc], [dec]])[-1]
        config = tmp_path / "config.json"
        like_seed = build_transformer_model(config, shifted, model="bart", layer_norm_eps=1e-12)
        b4t_real = build_transformer_model(config, real, model="bart")
        torch.testing.assert_close(like_seed.eval()([enc, dec])[-1], theirs, atol=1e-5, rtol=0)
        ours = b4t_real.eval()([enc, dec])[-1]
        ref = base(input_ids=enc, decoder_input_ids=dec).last_hidden_state @ base.shared.weight.T
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, theirs, atol=1e-3)
