"""Weights files between b4t and bert4torch 0.2.5, both directions.

0.2.5's ``save_weights('best_model.pt')`` writes one state-dict file in its own module
names; b4t writes the same file (same keys, same tensors) and reads 0.2.5's. Checked
by loading each library's file into the other and comparing outputs on the same
inputs: the bare built model, the common fine-tuning shape (the built model as
``self.bert`` beside a head in the user's own ``BaseModel``), the ``prefix=''`` /
``prefix='bert'`` checkpoint-name forms and the callbacks that save.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import b4t.models as bm
import b4t.trainer as bt

CONFIG = {
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
HEADS = {"with_pool": True, "with_mlm": True, "with_nsp": True}
VARIANTS = {
    **dict.fromkeys(("bert", "roberta", "ernie", "encoder", "nezha", "roformer"), HEADS),
    "electra": {"with_discriminator": True},
    # 0.2.5's ALBERT MLM head cannot hold ALBERT's (MIGRATION.md): pooler and SOP only
    "albert": {"with_pool": True, "with_nsp": True},
    "uie": {"with_pool": True},
    "roformer_v2": {},  # 0.2.5 drops pool and NSP; its MLM decoder is untied, b4t's tied
    "gau_alpha": {},
    # the LMs' heads are tied to the embeddings
    **{key: {} for key in ("gpt", "gpt2", "gpt2_ml", "transformer_xl", "transformer_xl_tied")},
}
NO_SEGMENTS = {"segment_vocab_size": 0}
# config entries beside CONFIG: ALBERT as released, embeddings narrower than the layers;
# the decoder LMs without segments, as released
CONFIG_EXTRA = {
    "albert": {"embedding_size": 8},
    "gau_alpha": {"attention_key_size": 4, "hidden_act": "swish", "intermediate_size": 48},
    "gpt": NO_SEGMENTS,
    # eps as b4t reads it from a 0.2.5 gpt2 checkpoint (0.2.5's norms are all 1e-12); built
    # from a bare config b4t's gpt2 is transformers' (1e-5)
    "gpt2": {**NO_SEGMENTS, "hidden_act": "gelu_new", "layer_norm_eps": 1e-12},
    "gpt2_ml": NO_SEGMENTS,
    "transformer_xl": {**NO_SEGMENTS, "untie_r": True},  # as transformers' configs say
    "transformer_xl_tied": NO_SEGMENTS,  # 0.2.5's default: also model-level r_w/r_r_bias
}
# called with [token_ids]
TOKENS_ONLY = {"gpt", "gpt2", "gpt2_ml", "transformer_xl", "transformer_xl_tied"}
MODEL = {"transformer_xl_tied": "transformer_xl"}  # test id -> model name


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (3, 7), generator=gen)
    ids[2, 5:] = 0  # padding
    return [ids, torch.randint(0, 2, (3, 7), generator=gen)]


def _outputs(model, tokens_only=False):
    model.eval()
    inputs = _inputs()[:1] if tokens_only else _inputs()
    with torch.no_grad():
        out = model(*inputs) if isinstance(model, _Wrapped) else model(inputs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if x.dim() + 1 == y.dim() == 3 or y.dim() + 1 == x.dim() == 3:
            x, y = x.reshape(-1), y.reshape(-1)  # ELECTRA's [B, L] vs 0.2.5's [B, L, 1]: MIGRATION
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)


def _perturbed(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # as training does: frozen ones (RoFormer-v2's gains) stay
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_built_model_weights_files_load_both_ways(b4t_seed, tmp_path, variant):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({**CONFIG, **CONFIG_EXTRA.get(variant, {})}))
    config_path = str(config_path)
    build_seed = b4t_seed["models"].build_transformer_model
    heads = VARIANTS[variant]
    one = variant in TOKENS_ONLY
    variant = MODEL.get(variant, variant)
    torch.manual_seed(0)
    seed = build_seed(config_path, model=variant, **heads)
    with torch.no_grad():  # 0.2.5 leaves XL's r_w_bias / r_r_bias uninitialised memory
        for key, param in seed.named_parameters():
            if key.endswith(("r_w_bias", "r_r_bias")):
                param.normal_(generator=torch.Generator().manual_seed(3))
    seed.save_weights(str(tmp_path / "seed.pt"))
    ours = bm.build_transformer_model(config_path, model=variant, **heads)
    ours.load_weights(str(tmp_path / "seed.pt"))
    _assert_same(_outputs(ours, one), _outputs(seed, one))

    _perturbed(ours, 1).save_weights(tmp_path / "b4t.pt", seed_names=True)
    assert (tmp_path / "b4t.pt").is_file()
    written = torch.load(tmp_path / "b4t.pt", weights_only=True)
    assert set(written) == set(seed.state_dict())  # 0.2.5's module names, no more, no less
    torch.manual_seed(2)
    again = build_seed(config_path, model=variant, **heads)
    for key, table in again.named_buffers():  # fixed tables: written as 0.2.5 computes them
        if key in written:
            torch.testing.assert_close(written[key], table, rtol=0, atol=1e-6)
    again.load_weights(str(tmp_path / "b4t.pt"))  # strict, 0.2.5's own load_weights
    _assert_same(_outputs(again, one), _outputs(ours, one))


class _Wrapped:  # marker: the user's own module, called with (token_ids, segment_ids)
    pass


def _user_models(b4t_seed, config_path, model="bert"):
    """The fine-tuning shape in both libraries: ``self.bert`` beside a dense head."""
    seed_base = b4t_seed["t4k_model"].BaseModel
    build_seed = b4t_seed["models"].build_transformer_model

    class SeedModel(seed_base, _Wrapped):
        def __init__(self):
            super().__init__()
            self.bert = build_seed(config_path, model=model, with_pool=True)
            self.dense = nn.Linear(16, 3)

        def forward(self, token_ids, segment_ids):
            return self.dense(self.bert([token_ids, segment_ids])[1])

    class B4tModel(bt.BaseModel, _Wrapped):
        def __init__(self):
            super().__init__()
            self.bert = bm.build_transformer_model(config_path, model=model, with_pool=True)
            self.dense = nn.Linear(16, 3)

        def forward(self, token_ids, segment_ids):
            return self.dense(self.bert([token_ids, segment_ids])[1])

    return SeedModel, B4tModel


@pytest.mark.parametrize("variant", ["albert", "uie"])
def test_other_variants_inside_the_user_s_module(b4t_seed, tmp_path, variant):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({**CONFIG, **CONFIG_EXTRA.get(variant, {})}))
    SeedModel, B4tModel = _user_models(b4t_seed, str(config_path), variant)
    torch.manual_seed(0)
    seed = SeedModel()
    _perturbed(seed, 21).save_weights(str(tmp_path / "best_model.pt"))
    ours = B4tModel()
    ours.load_weights(str(tmp_path / "best_model.pt"))
    _assert_same(_outputs(ours), _outputs(seed))
    _perturbed(ours, 22).save_weights(tmp_path / "b4t.pt", seed_names=True)
    assert set(torch.load(tmp_path / "b4t.pt", weights_only=True)) == set(seed.state_dict())
    again = SeedModel()
    again.load_weights(str(tmp_path / "b4t.pt"))
    _assert_same(_outputs(again), _outputs(ours))


def test_the_built_model_inside_the_user_s_module(b4t_seed, config_path, tmp_path):
    SeedModel, B4tModel = _user_models(b4t_seed, config_path)
    torch.manual_seed(0)
    seed = SeedModel()
    seed.save_weights(str(tmp_path / "best_model.pt"))
    ours = B4tModel()
    ours.load_weights(str(tmp_path / "best_model.pt"))
    _assert_same(_outputs(ours), _outputs(seed))

    _perturbed(ours, 3).save_weights(tmp_path / "b4t.pt", seed_names=True)
    assert set(torch.load(tmp_path / "b4t.pt", weights_only=True)) == set(seed.state_dict())
    again = SeedModel()
    again.load_weights(str(tmp_path / "b4t.pt"))
    _assert_same(_outputs(again), _outputs(ours))

    # 0.2.5's checkpoint-name form for the inner model: save_weights(path, prefix='bert')
    seed_prefixed = SeedModel()
    _perturbed(seed_prefixed.bert, 4)
    t4k_save = b4t_seed["models"].BaseModel.save_weights
    t4k_load = b4t_seed["models"].BaseModel.load_weights
    t4k_save(seed_prefixed, str(tmp_path / "seed_bert.pt"), prefix="bert")
    ours.load_weights(tmp_path / "seed_bert.pt", prefix="bert")
    _assert_same(_outputs(ours), _outputs(seed_prefixed))
    ours.save_weights(tmp_path / "b4t_bert.pt", prefix="bert")
    third = SeedModel()
    t4k_load(third, str(tmp_path / "b4t_bert.pt"), prefix="bert")
    _assert_same(_outputs(third), _outputs(ours))


@pytest.mark.parametrize("variant", ("bert", "roberta"))
def test_prefix_empty_checkpoint_names_both_ways(b4t_seed, config_path, tmp_path, variant):
    build_seed = b4t_seed["models"].build_transformer_model
    kwargs = {"with_pool": True, "with_nsp": True}
    torch.manual_seed(0)
    seed = build_seed(config_path, model=variant, **kwargs)
    seed.save_weights(str(tmp_path / "seed.pt"), prefix="")
    ours = bm.build_transformer_model(config_path, model=variant, **kwargs)
    ours.load_weights(tmp_path / "seed.pt", prefix="")
    _assert_same(_outputs(ours), _outputs(seed))
    _perturbed(ours, 5).save_weights(tmp_path / "b4t.pt", prefix="")
    assert (tmp_path / "b4t.pt").is_file()
    assert set(torch.load(tmp_path / "b4t.pt", weights_only=True)) == set(
        torch.load(tmp_path / "seed.pt", weights_only=True)
    )
    again = build_seed(config_path, model=variant, **kwargs)
    again.load_weights(str(tmp_path / "b4t.pt"), prefix="")
    _assert_same(_outputs(again), _outputs(ours))


def test_checkpoint_and_evaluator_files_are_the_state_dict(b4t_seed, config_path, tmp_path):
    """torch4keras's ``Checkpoint('model.pt')`` and ``Evaluator(checkpoint_path=...)``: b4t
    writes the same single file, the model's ``state_dict()`` (as torch4keras does, so
    ``load_state_dict(torch.load(path))`` reads it), and a 0.2.5 model reads the same
    weights once they are written in its names (``save_weights(..., seed_names=True)``)."""
    SeedModel, B4tModel = _user_models(b4t_seed, config_path)
    torch.manual_seed(0)
    ours = B4tModel()
    ids, segs = _inputs()
    batches = [([ids, segs], torch.tensor([0, 1, 2]))]

    class Eval(bt.Evaluator):
        def evaluate(self):
            return {"perf": 1.0}

    ours.compile(nn.CrossEntropyLoss(), torch.optim.SGD(ours.parameters(), lr=0.1))
    ours.fit(
        batches,
        epochs=1,
        callbacks=[
            bt.Checkpoint(str(tmp_path / "model.pt")),
            Eval(checkpoint_path=str(tmp_path / "best_model.pt")),
        ],
        verbose=0,
    )
    for name in ("model.pt", "best_model.pt"):
        saved = torch.load(tmp_path / name, weights_only=True)
        assert list(saved) == list(ours.state_dict())
        assert all(torch.equal(saved[k], v) for k, v in ours.state_dict().items())
        again = B4tModel()
        again.load_weights(str(tmp_path / name))
        _assert_same(_outputs(again), _outputs(ours))
    ours.save_weights(str(tmp_path / "seed.pt"), seed_names=True)
    seed = SeedModel()
    seed.load_weights(str(tmp_path / "seed.pt"))
    _assert_same(_outputs(seed), _outputs(ours))


@pytest.mark.parametrize("version", ["t5.1.0", "t5.1.1", "mt5.1.1"])
def test_t5_weights_files_load_both_ways(b4t_seed, tmp_path, version):
    """0.2.5's ``T5`` file (its relative-position table under every layer's name, the
    bucket buffers, the tied head) loads in b4t and b4t's loads strictly in 0.2.5; logits
    equal (t5.1.1: up to 0.2.5's ``d_model ** -0.5`` factor, MIGRATION.md)."""
    v11 = version != "t5.1.0"
    dims = {"vocab_size": 57, "num_hidden_layers": 2, "num_attention_heads": 4}
    seed_cfg = tmp_path / "seed.json"
    seed_cfg.write_text(json.dumps({
        **dims, "hidden_size": 32, "attention_head_size": 8, "intermediate_size": 48,
        "relative_attention_num_buckets": 8, "hidden_act": "gelu_new" if v11 else "relu",
        "attention_scale": False, "max_position": 64, "segment_vocab_size": 0,
        "hidden_dropout_prob": 0.0,
    }))  # fmt: skip
    ours_cfg = tmp_path / "config.json"
    ours_cfg.write_text(json.dumps({
        "vocab_size": 57, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2,
        "num_heads": 4, "relative_attention_num_buckets": 8, "dropout_rate": 0.0,
        "feed_forward_proj": "gated-gelu" if v11 else "relu", "layer_norm_epsilon": 1e-12,
        "tie_word_embeddings": not v11, "model_type": "t5", "max_position": 64,
    }))  # fmt: skip
    build_seed = b4t_seed["models"].build_transformer_model
    torch.manual_seed(0)
    seed = _perturbed(build_seed(str(seed_cfg), model=version), 7).eval()
    # as a real checkpoint (one ``shared.weight``): encoder and decoder read one table, and
    # T5.1.0's head is that table too
    shared = seed.encoder.embeddings.word_embeddings.weight
    seed.decoder.embeddings.word_embeddings.weight = shared
    if not v11:
        seed.decoder.final_dense.weight = shared
    seed.save_weights(str(tmp_path / "seed.pt"))
    ours = bm.build_transformer_model(ours_cfg, model=version).eval()
    ours.load_weights(tmp_path / "seed.pt")
    enc = torch.randint(2, 57, (2, 9), generator=torch.Generator().manual_seed(8))
    dec = torch.randint(2, 57, (2, 6), generator=torch.Generator().manual_seed(9))
    factor = 32**-0.5 if v11 else 1.0

    def logits(seed_model, b4t_model):
        with torch.no_grad():
            return seed_model.predict([[enc], [dec]])[-1], b4t_model([enc, dec])[-1] * factor

    theirs, mine = logits(seed, ours)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)

    _perturbed(ours, 8).save_weights(tmp_path / "b4t.pt", seed_names=True)
    written = torch.load(tmp_path / "b4t.pt", weights_only=True)
    assert set(written) == set(seed.state_dict())
    torch.manual_seed(1)
    again = build_seed(str(seed_cfg), model=version).eval()
    again.load_weights(str(tmp_path / "b4t.pt"))  # strict
    theirs, mine = logits(again, ours)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_bart_weights_files_load_both_ways(b4t_seed, tmp_path):
    """0.2.5's ``BART`` file (tied word tables, the tied head as ``decoder.final_dense``)
    loads in b4t's BART built on 0.2.5's converted layout, and b4t's file loads strictly
    in 0.2.5: encoder states, decoder states and logits equal."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**CONFIG, **NO_SEGMENTS}))
    build_seed = b4t_seed["models"].build_transformer_model
    torch.manual_seed(0)
    seed = _perturbed(build_seed(str(config), model="bart"), 9).eval()
    seed.save_weights(str(tmp_path / "layout.pt"), prefix="")  # 0.2.5's checkpoint names
    seed.save_weights(str(tmp_path / "seed.pt"))
    torch.manual_seed(1)
    # a 0.2.5 user fine-tunes from a 0.2.5-layout checkpoint: b4t builds that layout
    ours = bm.build_transformer_model(config, tmp_path / "layout.pt", model="bart").eval()
    _perturbed(ours, 10)
    ours.load_weights(tmp_path / "seed.pt")
    enc = torch.randint(1, 40, (2, 9), generator=torch.Generator().manual_seed(11))
    dec = torch.randint(1, 40, (2, 6), generator=torch.Generator().manual_seed(12))

    def outputs(seed_model, b4t_model):
        with torch.no_grad():
            return seed_model.predict([[enc], [dec]]), b4t_model([enc, dec])

    _assert_same(*outputs(seed, ours))

    _perturbed(ours, 13).save_weights(tmp_path / "b4t.pt", seed_names=True)
    written = torch.load(tmp_path / "b4t.pt", weights_only=True)
    assert set(written) == set(seed.state_dict())
    torch.manual_seed(2)
    again = build_seed(str(config), model="bart").eval()
    again.load_weights(str(tmp_path / "b4t.pt"))  # strict
    _assert_same(*outputs(again, ours))


def test_generic_transformer_weights_files_load_both_ways(b4t_seed, tmp_path):
    """0.2.5's generic ``Transformer`` (``encoder.encoderLayer.{i}``,
    ``decoder.decoderLayer.{i}``, untied tables and ``decoder.final_dense``): encoder
    states, decoder states and logits equal both ways."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**CONFIG, **NO_SEGMENTS}))
    build_seed = b4t_seed["models"].build_transformer_model
    torch.manual_seed(0)
    seed = _perturbed(build_seed(str(config), model="transformer"), 17).eval()
    seed.save_weights(str(tmp_path / "seed.pt"))
    ours = bm.build_transformer_model(config, model="transformer").eval()
    ours.load_weights(tmp_path / "seed.pt")
    enc = torch.randint(1, 40, (2, 9), generator=torch.Generator().manual_seed(18))
    enc[1, 6:] = 0
    dec = torch.randint(1, 40, (2, 6), generator=torch.Generator().manual_seed(19))

    def outputs(seed_model, b4t_model):
        with torch.no_grad():
            return seed_model.predict([[enc], [dec]]), b4t_model([enc, dec])

    _assert_same(*outputs(seed, ours))

    _perturbed(ours, 20).save_weights(tmp_path / "b4t.pt", seed_names=True)
    assert set(torch.load(tmp_path / "b4t.pt", weights_only=True)) == set(seed.state_dict())
    torch.manual_seed(2)
    again = build_seed(str(config), model="transformer").eval()
    again.load_weights(str(tmp_path / "b4t.pt"))  # strict
    _assert_same(*outputs(again, ours))


def test_decoder_weights_files_load_both_ways(b4t_seed, tmp_path):
    """0.2.5's generic ``Decoder`` (``decoderLayer.{i}`` with cross attention,
    ``final_dense``): ``[decoder_ids, encoder_hidden, encoder_mask] -> [hidden, logits]``
    equal both ways."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**CONFIG, **NO_SEGMENTS}))
    build_seed = b4t_seed["models"].build_transformer_model
    torch.manual_seed(0)
    seed = _perturbed(build_seed(str(config), model="decoder"), 14).eval()
    seed.save_weights(str(tmp_path / "seed.pt"))
    ours = bm.build_transformer_model(config, model="decoder").eval()
    ours.load_weights(tmp_path / "seed.pt")
    gen = torch.Generator().manual_seed(15)
    dec = torch.randint(1, 40, (2, 6), generator=gen)
    memory = torch.randn(2, 7, 16, generator=gen)
    mask = torch.ones(2, 1, 1, 7)
    mask[1, ..., 5:] = 0

    def outputs(model):
        with torch.no_grad():
            return model.predict([dec, memory, mask])

    _assert_same(outputs(ours), outputs(seed))

    _perturbed(ours, 16).save_weights(tmp_path / "b4t.pt", seed_names=True)
    assert set(torch.load(tmp_path / "b4t.pt", weights_only=True)) == set(seed.state_dict())
    torch.manual_seed(2)
    again = build_seed(str(config), model="decoder").eval()
    again.load_weights(str(tmp_path / "b4t.pt"))  # strict
    _assert_same(outputs(again), outputs(ours))
