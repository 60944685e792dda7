"""build_transformer_model inputs, applications and bad-input errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from b4t.models import ConfigError, build_transformer_model, load_config, variant_names

CONFIG = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "max_position_embeddings": 20,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def _model(**kw):
    torch.manual_seed(0)
    return build_transformer_model(dict(CONFIG), **kw).eval()


def test_config_errors_name_the_key_and_file(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in CONFIG.items() if k != "hidden_size"}))
    with pytest.raises(ConfigError, match=rf"'hidden_size' is missing from {path}"):
        load_config(path)
    path.write_text(json.dumps({**CONFIG, "num_hidden_layers": "two"}))
    with pytest.raises(ConfigError, match=rf"'num_hidden_layers' in {path} must be int"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope")


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model='bart_x'.*bert"):
        build_transformer_model(dict(CONFIG), model="bart_x")
    assert {"bert", "roberta", "albert", "albert_unshared", "electra", "ernie", "uie"} <= set(
        variant_names()
    )


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument.*with_poool"):
        build_transformer_model(dict(CONFIG), with_poool=True)


@pytest.mark.parametrize("model", ["bert", "t5.1.0", "bart"])
def test_add_trainer_is_accepted_and_changes_nothing(model: str) -> None:
    """bert4torch's later ``add_trainer=True`` (which 0.2.5-era examples pass) builds the same
    model: the trainer surface comes with b4t-trainer either way."""
    config = (
        {**CONFIG, "num_decoder_layers": 2, "d_ff": 24, "d_kv": 8} if model != "bert" else CONFIG
    )
    torch.manual_seed(0)
    plain = build_transformer_model(dict(config), model=model)
    torch.manual_seed(0)
    flagged = build_transformer_model(dict(config), model=model, add_trainer=True)
    assert type(plain) is type(flagged)
    for (name, a), (_, b) in zip(plain.state_dict().items(), flagged.state_dict().items()):
        assert torch.equal(a, b), name


def test_token_ids_beyond_vocab_and_too_long_sequences() -> None:
    model = _model()
    with pytest.raises(ValueError, match="token id 50 is outside the vocabulary"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match="sequence length 21 is longer than the position table"):
        model(torch.ones(1, 21, dtype=torch.long))
    with pytest.raises(ValueError, match="segment id 2"):
        model(torch.tensor([[1, 2]]), torch.tensor([[0, 2]]))


def test_list_positional_and_keyword_inputs_agree() -> None:
    model = _model()
    ids = torch.tensor([[2, 5, 7, 0], [3, 4, 0, 0]])
    seg = torch.tensor([[0, 0, 1, 0], [0, 1, 0, 0]])
    a = model([ids, seg])
    torch.testing.assert_close(a, model(ids, seg))
    torch.testing.assert_close(a, model(token_ids=ids, segment_ids=seg))
    torch.testing.assert_close(a, model(input_ids=ids, token_type_ids=seg, attention_mask=ids > 0))


def test_padding_does_not_change_real_positions() -> None:
    model = _model()
    ids = torch.tensor([[2, 5, 7]])
    padded = torch.tensor([[2, 5, 7, 0, 0]])
    torch.testing.assert_close(model(ids), model(padded)[:, :3])


def test_lm_application_is_causal() -> None:
    model = _model(application="lm")
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    changed = ids.clone()
    changed[0, 3] = 20
    (a, a_mlm), (b, _) = model(ids), model(changed)  # 'lm' turns the MLM head on (0.2.5)
    assert a_mlm.shape == (1, 5, 50)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_unilm_application_source_bidirectional_target_causal() -> None:
    model = _model(application="unilm")
    ids = torch.tensor([[2, 5, 7, 9, 11, 13]])
    seg = torch.tensor([[0, 0, 0, 1, 1, 1]])
    base = model(ids, seg)[0]  # 'unilm' turns the MLM head on, as in 0.2.5
    later_target = ids.clone()
    later_target[0, 4] = 20
    out = model(later_target, seg)[0]
    torch.testing.assert_close(base[:, :4], out[:, :4])  # source and earlier target unaffected
    source = ids.clone()
    source[0, 2] = 20
    out = model(source, seg)[0]
    assert not torch.allclose(base[:, :2], out[:, :2])  # the source sees its own future
    with pytest.raises(ValueError, match="unilm' needs segment_ids"):
        model(ids)


def test_segment_vocab_size_zero_and_layer_add_embs() -> None:
    model = _model(segment_vocab_size=0)
    assert model.embeddings.segment_embeddings is None
    extra = nn.Embedding(4, 16)
    before = extra.weight.detach().clone()
    with_extra = _model(layer_add_embs=extra)
    ids = torch.tensor([[2, 5, 7]])
    tags = torch.tensor([[1, 2, 3]])
    plain = _model()
    torch.testing.assert_close(extra.weight.detach(), before)  # user modules keep their init
    plain.load_state_dict(
        {k: v for k, v in with_extra.state_dict().items() if "layer_add_embs" not in k}
    )
    with torch.no_grad():
        extra.weight.zero_()
    torch.testing.assert_close(with_extra([ids, torch.zeros_like(ids), tags]), plain(ids))
    with torch.no_grad():
        extra.weight.fill_(0.5)
    assert not torch.allclose(with_extra([ids, torch.zeros_like(ids), tags]), plain(ids))


def test_return_model_config_and_uie_outputs() -> None:
    model, config = build_transformer_model(dict(CONFIG), model="uie", return_model_config=True)
    assert config.hidden_size == 16
    hidden, start, end = model.eval()(torch.tensor([[2, 5, 7]]))
    assert hidden.shape == (1, 3, 16) and start.shape == (1, 3) and end.shape == (1, 3)
    assert bool(((start > 0) & (start < 1)).all())
    with torch.no_grad():  # known head weights: start = sigmoid(hidden . w + b), by hand
        model.linear_start.weight.copy_(torch.linspace(-1, 1, 16)[None])
        model.linear_start.bias.fill_(0.25)
        hidden, start, _ = model(torch.tensor([[2, 5, 7]]))
    by_hand = [
        1
        / (
            1
            + math.exp(
                -(sum(h * w for h, w in zip(row, torch.linspace(-1, 1, 16).tolist())) + 0.25)
            )
        )
        for row in hidden[0].tolist()
    ]
    torch.testing.assert_close(start[0], torch.tensor(by_hand), atol=1e-6, rtol=1e-6)
