"""b4t.models beside bert4torch 0.2.5: the same checkpoint, the same inputs, the same numbers.

Every checkpoint is written once, in the Hugging Face layout 0.2.5 loads
(``pytorch_model.bin`` + ``config.json`` of a tiny random transformers model, or, for
the variants transformers lacks, a random 0.2.5 model saved under its own weight map)
and handed to both ``bert4torch.models.build_transformer_model`` and b4t's. Dropout is
off (eval mode). Where b4t differs on purpose the test asserts the difference and
``MIGRATION.md`` holds the row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from b4t.models import Transformer, build_transformer_model  # noqa: E402

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)
ATOL = 1e-5


def _flat(x: Any) -> list[torch.Tensor]:
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in _flat(y)]
    return [x]


def assert_same(seed_out: Any, b4t_out: Any) -> None:
    """Same structure (after flattening nested lists) and every tensor within 1e-5."""
    a, b = _flat(seed_out), _flat(b4t_out)
    assert len(a) == len(b), f"0.2.5 returned {len(a)} tensors, b4t {len(b)}"
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(y, x, atol=ATOL, rtol=1e-5)


def hf_checkpoint(
    folder: Path,
    config_cls: str,
    model_cls: str,
    rename: Callable[[str], str] | None = None,
    drop: tuple[str, ...] = (),
    **extra: Any,
) -> tuple[Any, Path]:
    """A tiny random transformers model, weights perturbed (so no LayerNorm is the identity
    and no bias is zero), saved as ``pytorch_model.bin`` (every key, tied ones included)
    and ``config.json``. Returns (the transformers model, the folder)."""
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**{**TINY, **extra})
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {k: v for k, v in model.state_dict().items() if not any(d in k for d in drop)}
    if rename is not None:
        state = {rename(k): v for k, v in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string())
    return model, folder


def build_both(
    b4t_seed: dict, folder: Path, model: Any, application: str = "encoder", **kw: Any
) -> tuple[nn.Module, nn.Module]:
    """(0.2.5's model, b4t's model), both from ``folder``, in eval mode."""
    seed = (
        b4t_seed["models"]
        .build_transformer_model(
            config_path=str(folder / "config.json"),
            checkpoint_path=str(folder / "pytorch_model.bin"),
            model=model,
            application=application,
            **kw,
        )
        .eval()
    )
    ours = build_transformer_model(
        config_path=folder / "config.json",
        checkpoint_path=folder / "pytorch_model.bin",
        model=model,
        application=application,
        **kw,
    ).eval()
    return seed, ours


def run_both(seed: nn.Module, ours: nn.Module, inputs: list[torch.Tensor]) -> tuple[Any, Any]:
    with torch.no_grad():
        return seed(list(inputs)), ours(list(inputs))


def padded_inputs(pad: int = 0) -> list[torch.Tensor]:
    """``[token_ids [2, 8], segment_ids]``: row 1 padded after 5 tokens, two segments."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 8), generator=g)
    ids[1, 5:] = pad
    seg = torch.zeros_like(ids)
    seg[:, 4:] = 1
    seg[1, 5:] = 0
    return [ids, seg]


def _paddle_names(key: str) -> str:
    """ERNIE as 0.2.5 loads it (Paddle-converted): LayerNorm gamma / beta."""
    return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
        "LayerNorm.bias", "LayerNorm.beta"
    )


# name: (config class, model class, checkpoint options)
BERT_LIKE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": ("BertConfig", "BertForPreTraining", {}),
    # RoBERTa as 0.2.5 knows it: the BERT layout (Chinese RoBERTa-wwm)
    "roberta": ("BertConfig", "BertForPreTraining", {}),
    "nezha": (
        "BertConfig",
        "BertForPreTraining",
        {"drop": ("position_embeddings",), "max_relative_position": 16},
    ),
    "ernie": ("ErnieConfig", "ErnieForPreTraining", {"rename": _paddle_names}),
    "roformer": ("RoFormerConfig", "RoFormerForMaskedLM", {}),
    # real ALBERT widths: embedding_size < hidden_size (see the ALBERT tests below)
    "albert": ("AlbertConfig", "AlbertForPreTraining", {"embedding_size": 16}),
}
HEADS: list[dict[str, Any]] = [
    {},
    {"with_pool": True},
    {"with_pool": "linear"},
    {"with_mlm": True},
    {"with_mlm": "softmax"},
    {"with_pool": True, "with_mlm": True},
    {"output_all_encoded_layers": True},
    {"output_all_encoded_layers": True, "with_pool": True, "with_mlm": True},
]
NO_POOLER = {"roformer"}  # transformers' RoFormer has no pooler to load
# 0.2.5's ALBERT MLM head is hidden x hidden: it cannot load a real (E < H) ALBERT head
NO_SEED_MLM = {"albert"}


@pytest.mark.parametrize("name", list(BERT_LIKE))
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_encoder_heads_equal_the_seed(b4t_seed, tmp_path, name, heads) -> None:
    if name in NO_POOLER and "with_pool" in heads:
        pytest.skip("no pooler weights in this checkpoint layout")
    if name in NO_SEED_MLM and "with_mlm" in heads:
        pytest.skip("0.2.5 cannot load this head (test_albert_mlm_head_the_seed_cannot_load)")
    config_cls, model_cls, opts = BERT_LIKE[name]
    _, folder = hf_checkpoint(tmp_path / name, config_cls, model_cls, **opts)
    seed, ours = build_both(b4t_seed, folder, name, **heads)
    seed_out, b4t_out = run_both(seed, ours, padded_inputs())
    assert_same(seed_out, b4t_out)
    if heads.get("output_all_encoded_layers"):
        layers = b4t_out[0] if len(_flat(b4t_out)) > 3 or heads.get("with_pool") else b4t_out
        assert len(layers) == TINY["num_hidden_layers"] + 1  # the embedding output first


@pytest.mark.parametrize("name", ["bert", "roberta", "nezha", "ernie", "roformer"])
@pytest.mark.parametrize("application", ["lm", "unilm", "LM", "UniLM"])
def test_lm_and_unilm_applications_equal_the_seed(b4t_seed, tmp_path, name, application) -> None:
    """'lm' / 'unilm' (any case) mask as 0.2.5 and turn the MLM head on as it does."""
    config_cls, model_cls, opts = BERT_LIKE[name]
    _, folder = hf_checkpoint(tmp_path / name, config_cls, model_cls, **opts)
    seed, ours = build_both(b4t_seed, folder, name, application=application)
    seed_out, b4t_out = run_both(seed, ours, padded_inputs())
    assert isinstance(b4t_out, list) and len(b4t_out) == 2  # [hidden, mlm_scores]
    assert_same(seed_out, b4t_out)
    seed, ours = build_both(b4t_seed, folder, name, application=application, with_mlm="softmax")
    assert_same(*run_both(seed, ours, padded_inputs()))


def test_uie_bert_layout_equals_the_seed(b4t_seed, tmp_path) -> None:
    """0.2.5's UIE checkpoints: ``bert.*`` keys plus ``linear_start`` / ``linear_end``."""
    _, folder = hf_checkpoint(
        tmp_path / "uie", "BertConfig", "BertModel", rename=lambda k: f"bert.{k}"
    )
    state = torch.load(folder / "pytorch_model.bin")
    g = torch.Generator().manual_seed(5)
    for head in ("linear_start", "linear_end"):
        state[f"{head}.weight"] = torch.randn(1, 32, generator=g)
        state[f"{head}.bias"] = torch.randn(1, generator=g)
    torch.save(state, folder / "pytorch_model.bin")
    for heads in ({}, {"with_pool": True}):
        seed, ours = build_both(b4t_seed, folder, "uie", **heads)
        assert_same(*run_both(seed, ours, padded_inputs()))


def _seed_random_checkpoint(b4t_seed, folder: Path, name: str, config: dict[str, Any]) -> Path:
    """A random 0.2.5 model saved under its own weight map (variants transformers lacks)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    seed = b4t_seed["models"].build_transformer_model(
        config_path=str(folder / "config.json"), model=name, with_mlm=True
    )
    own = dict(seed.named_parameters())
    if "mlmDecoder.weight" in own:  # released checkpoints tie the decoder to the embeddings
        own["mlmDecoder.weight"] = own["embeddings.word_embeddings.weight"]
    state = {}
    for mine, theirs in seed.variable_mapping().items():
        if mine in own:
            state[theirs] = own[mine].detach().clone()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_roformer_v2_equals_the_seed(b4t_seed, tmp_path) -> None:
    config = {**TINY, "hidden_act": "gelu", "type_vocab_size": 2}
    folder = _seed_random_checkpoint(b4t_seed, tmp_path / "v2", "roformer_v2", config)
    for kw in ({}, {"with_mlm": True}, {"output_all_encoded_layers": True}):
        seed, ours = build_both(b4t_seed, folder, "roformer_v2", **kw)
        assert_same(*run_both(seed, ours, padded_inputs()))
    seed, ours = build_both(b4t_seed, folder, "roformer_v2", application="unilm")
    assert_same(*run_both(seed, ours, padded_inputs()))


def test_gau_alpha_equals_the_seed(b4t_seed, tmp_path) -> None:
    config = {
        **TINY,
        "intermediate_size": 48,
        "hidden_act": "swish",
        "attention_key_size": 16,
        "type_vocab_size": 2,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    folder = _seed_random_checkpoint(b4t_seed, tmp_path / "gau", "gau_alpha", config)
    for kw in ({}, {"output_all_encoded_layers": True}):
        seed, ours = build_both(b4t_seed, folder, "gau_alpha", **kw)
        assert_same(*run_both(seed, ours, padded_inputs()))


def test_electra_equals_the_seed_discriminator_squeezed(b4t_seed, tmp_path) -> None:
    """The encoder is equal; 0.2.5's discriminator scores are ``[B, L, 1]``, b4t's ``[B, L]``
    (transformers' ``ElectraForPreTraining`` logits shape): MIGRATION.md."""
    _, folder = hf_checkpoint(
        tmp_path / "electra", "ElectraConfig", "ElectraForPreTraining", embedding_size=32
    )
    seed, ours = build_both(b4t_seed, folder, "electra")
    assert_same(*run_both(seed, ours, padded_inputs()))
    seed, ours = build_both(b4t_seed, folder, "electra", with_discriminator=True)
    (seed_hidden, seed_probs), (hidden, probs) = run_both(seed, ours, padded_inputs())
    assert seed_probs.shape == (2, 8, 1) and probs.shape == (2, 8)
    assert_same([seed_hidden, seed_probs.squeeze(-1)], [hidden, probs])


def test_albert_mlm_head_the_seed_cannot_load(b4t_seed, tmp_path) -> None:
    """With embedding_size < hidden_size (every released ALBERT), 0.2.5's MLM head (and so
    'lm' / 'unilm') fails to load: its mlmDense is hidden x hidden. b4t loads it and equals
    transformers' prediction logits. MIGRATION.md."""
    hf, folder = hf_checkpoint(
        tmp_path / "albert", "AlbertConfig", "AlbertForPreTraining", embedding_size=16
    )
    for kw in ({"with_mlm": True}, {"application": "unilm"}):
        with pytest.raises(RuntimeError, match=r"size mismatch for mlmDense\.weight"):
            b4t_seed["models"].build_transformer_model(
                config_path=str(folder / "config.json"),
                checkpoint_path=str(folder / "pytorch_model.bin"),
                model="albert",
                **kw,
            )
    ids, seg = padded_inputs()
    ours = build_transformer_model(
        folder, folder / "pytorch_model.bin", model="albert", with_mlm=True
    ).eval()
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=ids.ne(0).long())
        _, scores = ours([ids, seg])
    keep = ids.ne(0)
    torch.testing.assert_close(scores[keep], ref.prediction_logits[keep], atol=ATOL, rtol=1e-5)


def test_albert_equal_widths_keep_the_projection(b4t_seed, tmp_path) -> None:
    """embedding_size == hidden_size: transformers still applies
    ``embedding_hidden_mapping_in``; 0.2.5 drops it (other numbers), b4t applies it
    (transformers' numbers). MIGRATION.md."""
    hf, folder = hf_checkpoint(
        tmp_path / "albert", "AlbertConfig", "AlbertForPreTraining", embedding_size=32
    )
    seed, ours = build_both(b4t_seed, folder, "albert")
    ids, seg = padded_inputs()
    seed_out, b4t_out = run_both(seed, ours, [ids, seg])
    with torch.no_grad():
        ref = hf.albert(input_ids=ids, token_type_ids=seg, attention_mask=ids.ne(0).long())
    keep = ids.ne(0)
    torch.testing.assert_close(b4t_out[keep], ref.last_hidden_state[keep], atol=ATOL, rtol=1e-5)
    assert (seed_out[keep] - b4t_out[keep]).abs().max() > 1e-2


def test_albert_unshared_fails_in_the_seed_and_loads_in_b4t(b4t_seed, tmp_path) -> None:
    """0.2.5's ALBERT_Unshared calls ``super(ALBERT_Unshared).__init__(**kw)`` and raises;
    b4t builds it, every layer a copy of the shared one (= transformers' ALBERT)."""
    hf, folder = hf_checkpoint(
        tmp_path / "albert", "AlbertConfig", "AlbertForPreTraining", embedding_size=16
    )
    with pytest.raises(TypeError):
        b4t_seed["models"].build_transformer_model(
            config_path=str(folder / "config.json"),
            checkpoint_path=str(folder / "pytorch_model.bin"),
            model="albert_unshared",
        )
    ours = build_transformer_model(folder, folder / "pytorch_model.bin", model="albert_unshared")
    ids, seg = padded_inputs()
    with torch.no_grad():
        ref = hf.albert(input_ids=ids, token_type_ids=seg, attention_mask=ids.ne(0).long())
        out = ours.eval()([ids, seg])
    keep = ids.ne(0)
    torch.testing.assert_close(out[keep], ref.last_hidden_state[keep], atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_nsp_from_a_transformers_checkpoint(b4t_seed, tmp_path, name) -> None:
    """0.2.5 transposes ``cls.seq_relationship.weight`` / the SOP classifier (it expects
    the TF-converted ``[H, 2]``) and fails on transformers' ``[2, H]``; b4t loads it and
    equals transformers' NSP / SOP logits. MIGRATION.md."""
    config_cls, model_cls, opts = BERT_LIKE[name]
    hf, folder = hf_checkpoint(tmp_path / name, config_cls, model_cls, **opts)
    with pytest.raises(RuntimeError, match=r"size mismatch for nsp\.weight"):
        b4t_seed["models"].build_transformer_model(
            config_path=str(folder / "config.json"),
            checkpoint_path=str(folder / "pytorch_model.bin"),
            model=name,
            with_nsp=True,
        )
    ours = build_transformer_model(folder, folder / "pytorch_model.bin", model=name, with_nsp=True)
    ids, seg = padded_inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=ids.ne(0).long())
        _, _, nsp = ours.eval()([ids, seg])
    expected = ref.seq_relationship_logits if name == "bert" else ref.sop_logits
    torch.testing.assert_close(nsp, expected, atol=ATOL, rtol=1e-5)


def test_deberta_v2_follows_transformers_where_the_seed_does_not(b4t_seed, tmp_path) -> None:
    """On one DeBERTa-v2 checkpoint 0.2.5 gives other hidden states than transformers'
    ``DebertaV2Model`` (its relative-position attention differs); b4t equals transformers.
    MIGRATION.md."""
    hf, folder = hf_checkpoint(
        tmp_path / "deberta",
        "DebertaV2Config",
        "DebertaV2ForMaskedLM",
        type_vocab_size=0,
        position_biased_input=False,
        relative_attention=True,
        pos_att_type=["c2p", "p2c"],
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        position_buckets=32,
    )
    ids = torch.randint(3, 99, (2, 8), generator=torch.Generator().manual_seed(2))
    seed, ours = build_both(b4t_seed, folder, "deberta_v2")
    seed_out, b4t_out = run_both(seed, ours, [ids])  # type_vocab_size=0: no segment input
    with torch.no_grad():
        ref = hf.deberta(input_ids=ids).last_hidden_state
    torch.testing.assert_close(b4t_out, ref, atol=ATOL, rtol=1e-5)
    assert (seed_out - ref).abs().max() > 1e-2


# ---- the build options -----------------------------------------------------------------


@pytest.fixture
def bert_folder(tmp_path) -> Path:
    return hf_checkpoint(tmp_path / "bert", "BertConfig", "BertForPreTraining")[1]


def test_segment_vocab_size_defaults_to_type_vocab_size(b4t_seed, tmp_path) -> None:
    """A RoBERTa-wwm-like config with ``type_vocab_size=1`` loads without arguments."""
    _, folder = hf_checkpoint(tmp_path / "r", "BertConfig", "BertForPreTraining", type_vocab_size=1)
    seed, ours = build_both(b4t_seed, folder, "roberta", with_mlm=True)
    ids, seg = padded_inputs()
    assert ours.embeddings.segment_embeddings.num_embeddings == 1
    assert_same(*run_both(seed, ours, [ids, torch.zeros_like(seg)]))


def test_configs_dict_equals_the_seed(b4t_seed, bert_folder) -> None:
    kw = dict(with_pool="linear", with_mlm=True, keep_tokens=list(range(50)))
    seed, ours = build_both(b4t_seed, bert_folder, "bert", **kw)
    assert ours.configs == seed.configs
    assert ours.configs["max_position"] == 64 and ours.config.hidden_size == 32


@pytest.mark.parametrize(
    "kw",
    [
        {"keep_hidden_layers": [1]},
        {"keep_hidden_layers": [0], "output_all_encoded_layers": True},
        {"token_pad_ids": 7},
        {"tie_emb_prj_weight": True, "with_mlm": True},
        {"is_dropout": True},
        {"residual_attention_scores": True, "sequence_length": 8},
        {"attention_head_size": 8},
        {"max_position": 128, "hierarchical_position": True},
        {"max_position": 128, "hierarchical_position": 0.3, "with_mlm": True},
        {"keep_tokens": [0, 1, 2, *range(10, 99)], "with_mlm": True},
        {"dropout_rate": 0.3},
    ],
    ids=lambda kw: ",".join(kw),
)
def test_build_options_equal_the_seed(b4t_seed, bert_folder, kw) -> None:
    seed, ours = build_both(b4t_seed, bert_folder, "bert", **kw)
    ids, seg = padded_inputs()
    ids[0, 2] = 7  # a token that token_pad_ids=7 masks
    if "keep_tokens" in kw:
        ids = ids.clamp(max=len(kw["keep_tokens"]) - 1)
    long = kw.get("max_position") == 128
    if long:  # longer than the checkpoint's 64 positions
        ids = torch.randint(3, 99, (2, 100), generator=torch.Generator().manual_seed(3))
        seg = torch.zeros_like(ids)
    assert_same(*run_both(seed, ours, [ids, seg]))
    if kw.get("is_dropout"):
        ffn = ours.layers[0].ffn
        assert isinstance(ffn.dropout, nn.Dropout) and ffn.dropout.p == 0.1


def test_shared_segment_embeddings_equal_the_seed(b4t_seed, bert_folder) -> None:
    seed, ours = build_both(b4t_seed, bert_folder, "bert", shared_segment_embeddings=True)
    assert ours.embeddings.segment_embeddings is ours.embeddings.word_embeddings
    assert_same(*run_both(seed, ours, padded_inputs()))


def test_custom_attention_mask_equals_the_seed(b4t_seed, bert_folder) -> None:
    ids, seg = padded_inputs()
    mask = ids.ne(0).long()
    mask[0, 6:] = 0  # hide two real tokens as well
    for app in ("encoder", "unilm"):
        seed, ours = build_both(
            b4t_seed, bert_folder, "bert", application=app, custom_attention_mask=True
        )
        assert_same(*run_both(seed, ours, [ids, seg, mask]))


def test_custom_position_ids_are_used_where_the_seed_ignores_them(b4t_seed, bert_folder) -> None:
    """0.2.5 reads the position-id input and drops it (its embeddings always count
    0..L-1); b4t uses it, as transformers does. Equal for the default positions.
    MIGRATION.md."""
    seed, ours = build_both(b4t_seed, bert_folder, "bert", custom_position_ids=True)
    ids, seg = padded_inputs()
    plain = torch.arange(8).expand(2, 8)
    assert_same(*run_both(seed, ours, [ids, seg, plain]))
    shifted = plain + 3
    seed_out, b4t_out = run_both(seed, ours, [ids, seg, shifted])
    hf = transformers.BertModel.from_pretrained(bert_folder, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(
            input_ids=ids, token_type_ids=seg, position_ids=shifted, attention_mask=ids.ne(0)
        ).last_hidden_state
    keep = ids.ne(0)
    torch.testing.assert_close(b4t_out[keep], ref[keep], atol=ATOL, rtol=1e-5)
    assert (seed_out - b4t_out).abs().max() > 1e-3


def test_layer_norm_cond_equals_the_seed(b4t_seed, bert_folder) -> None:
    """Conditional LayerNorm everywhere (embeddings, every layer, the MLM head).

    0.2.5 re-initialises the condition projections N(0, 0.02) after building (its zero
    init is overwritten by ``init_model_weights``); b4t keeps them zero, so an untrained
    conditional model equals the plain one (MIGRATION.md). With the seed's projections
    copied over, the outputs are equal.
    """
    torch.manual_seed(4)
    cond = nn.Embedding(3, 8)
    seed, ours = build_both(
        b4t_seed, bert_folder, "bert", layer_norm_cond=cond, with_mlm=True, with_pool=True
    )
    ids, seg = padded_inputs()
    labels = torch.tensor([1, 2])
    plain = build_transformer_model(bert_folder, bert_folder, with_mlm=True, with_pool=True)
    with torch.no_grad():
        assert_same(plain.eval()([ids, seg]), ours([ids, seg, labels]))  # zero projections
    assert seed.encoderLayer[0].layerNorm1.dense1.weight.abs().sum() > 0
    pairs = {"embeddings.layerNorm": "embeddings.layer_norm", "mlmLayerNorm": "mlm.layer_norm"}
    for i in range(TINY["num_hidden_layers"]):
        pairs[f"encoderLayer.{i}.layerNorm1"] = f"layers.{i}.norm1"
        pairs[f"encoderLayer.{i}.layerNorm2"] = f"layers.{i}.norm2"
    seed_state = seed.state_dict()
    with torch.no_grad():
        for theirs, mine in pairs.items():
            for dense in ("dense1", "dense2"):
                ours.get_parameter(f"{mine}.{dense}.weight").copy_(
                    seed_state[f"{theirs}.{dense}.weight"]
                )
    assert_same(*run_both(seed, ours, [ids, seg, labels]))


def test_model_may_be_a_class(b4t_seed, bert_folder) -> None:
    """``model=`` a subclass: 0.2.5's of its BERT, b4t's of :class:`Transformer`."""

    class SeedScaled(b4t_seed["models"].BERT):
        def apply_final_layers(self, inputs):
            return super().apply_final_layers(inputs) * 2

    class Scaled(Transformer):
        def apply_final_layers(self, state):
            return super().apply_final_layers(state) * 2

    seed = (
        b4t_seed["models"]
        .build_transformer_model(
            config_path=str(bert_folder / "config.json"),
            checkpoint_path=str(bert_folder / "pytorch_model.bin"),
            model=SeedScaled,
        )
        .eval()
    )
    ours = build_transformer_model(
        bert_folder / "config.json", bert_folder / "pytorch_model.bin", model=Scaled
    ).eval()
    assert isinstance(ours, Scaled)
    assert_same(*run_both(seed, ours, padded_inputs()))


def test_ignore_invalid_weights_loads_what_there_is(b4t_seed, tmp_path) -> None:
    """A checkpoint without the pooler: with ``ignore_invalid_weights`` both build, the
    encoder is equal, and b4t reports the parts it could not load (0.2.5 stays silent)."""
    _, folder = hf_checkpoint(
        tmp_path / "nopool", "BertConfig", "BertForPreTraining", drop=("pooler.",)
    )
    seed, ours = build_both(b4t_seed, folder, "bert", with_pool=True, ignore_invalid_weights=True)
    (seed_hidden, _), (hidden, _) = run_both(seed, ours, padded_inputs())
    assert_same(seed_hidden, hidden)
    assert any("pooler.dense.weight" in m for m in ours.load_report.missing)
    with pytest.raises(Exception, match=r"bert\.pooler\.dense\.weight"):
        build_transformer_model(folder, folder / "pytorch_model.bin", with_pool=True)


def test_size_keywords_equal_the_seed(b4t_seed, tmp_path) -> None:
    """``embedding_size`` / ``attention_key_size`` given as keywords instead of config keys."""
    _, folder = hf_checkpoint(
        tmp_path / "albert", "AlbertConfig", "AlbertForPreTraining", embedding_size=16
    )
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("embedding_size")
    (folder / "config.json").write_text(json.dumps(raw))
    seed, ours = build_both(b4t_seed, folder, "albert", embedding_size=16)
    assert_same(*run_both(seed, ours, padded_inputs()))
    config = {**TINY, "intermediate_size": 48, "hidden_act": "swish", "type_vocab_size": 2}
    config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    folder = _seed_random_checkpoint(
        b4t_seed, tmp_path / "gau", "gau_alpha", {**config, "attention_key_size": 8}
    )
    (folder / "config.json").write_text(json.dumps(config))
    seed, ours = build_both(b4t_seed, folder, "gau_alpha", attention_key_size=8)
    assert_same(*run_both(seed, ours, padded_inputs()))
