"""The seam with b4t-models: a built model is a trainer when b4t-trainer is installed.

Needs b4t-models beside b4t-trainer (the ``tests`` session); skipped in the isolated
session, which installs b4t-trainer alone.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import sys

import pytest
import torch
from torch import nn

models = pytest.importorskip("b4t.models")
from b4t.models import build_transformer_model  # noqa: E402
from b4t.models.transformer import Transformer  # noqa: E402
from b4t.trainer import BaseModel  # noqa: E402

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


def _batches(n_batches=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for size in (4, 3, 1)[:n_batches]:  # uneven batches
        ids = torch.randint(1, 40, (size, 6), generator=gen)
        out.append(([ids, torch.zeros_like(ids)], torch.randint(0, 2, (size,), generator=gen)))
    return out


def _cls_loss(out, y):  # pooled output -> 2 classes from its first two features
    return nn.functional.cross_entropy(out[1][:, :2], y)


def _built(seed=0):
    torch.manual_seed(seed)
    return build_transformer_model(CONFIG, with_pool=True)


def test_the_built_model_is_a_trainer_and_trains_like_a_hand_loop() -> None:
    model = _built()
    assert isinstance(model, BaseModel) and isinstance(model, Transformer)
    assert type(model).__name__ == "Transformer"
    assert type(_built(1)) is type(model)  # one mixed class per model class, cached
    mro = type(model).__mro__
    assert mro.index(Transformer) < mro.index(BaseModel) < mro.index(nn.Module)
    assert type(model).compile is BaseModel.compile  # not the install-b4t-trainer guard
    hand = copy.deepcopy(model)
    batches = _batches()

    model.compile(loss=_cls_loss, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    history = model.fit(batches, epochs=2, verbose=0)

    opt = torch.optim.SGD(hand.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        total = 0.0
        for X, y in batches:
            opt.zero_grad()
            loss = _cls_loss(hand(X), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        losses.append(total / 8)
    assert history.history["loss"] == pytest.approx(losses, rel=1e-6)
    for a, b in zip(model.state_dict().values(), hand.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    X = batches[0][0]
    pooled = model.predict(X, return_all=1)
    hand.eval()
    with torch.no_grad():
        torch.testing.assert_close(pooled, hand(X)[1])


class Model(BaseModel):
    """bert4torch's tutorial shape: a BaseModel holding a built transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.bert = build_transformer_model(CONFIG, with_pool=True)
        self.dense = nn.Linear(16, 2)

    def forward(self, token_ids, segment_ids):
        _, pooled = self.bert([token_ids, segment_ids])
        return self.dense(pooled)


def test_the_seed_s_model_class_with_a_built_transformer_inside(tmp_path) -> None:
    torch.manual_seed(0)
    model = Model()
    hand = copy.deepcopy(model)
    batches = _batches()
    model.compile(loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), 1e-2))
    model.fit(batches, epochs=2, verbose=0)
    opt = torch.optim.Adam(hand.parameters(), 1e-2)
    for _ in range(2):
        for X, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(hand(*X), y).backward()
            opt.step()
    for a, b in zip(model.state_dict().values(), hand.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # prefix='bert': the inner model's keys under their checkpoint names, and back
    model.save_weights(tmp_path / "w.pt", prefix="bert")
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert "bert.embeddings.word_embeddings.weight" in saved  # the HF name
    assert "dense.weight" in saved
    qkv = model.bert.variable_mapping()
    assert any(not isinstance(v, str) and v is not None for v in qkv.values())  # split on save
    other = Model()
    other.load_weights(tmp_path / "w.pt", prefix="bert")
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_pickle_deepcopy_and_torch_save_keep_the_trainer_surface() -> None:
    model = _built()
    model.compile(loss=_cls_loss, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    for twin in (
        copy.deepcopy(model),
        pickle.loads(pickle.dumps(model)),
        torch.load(io.BytesIO(_saved(model)), weights_only=False),
    ):
        assert type(twin) is type(model) and isinstance(twin, BaseModel)
        assert twin.trainer is not model.trainer and not twin.trainer.compiled
        assert twin.trainer.module is twin
        for a, b in zip(twin.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b)
    assert model.trainer.compiled


def _saved(model) -> bytes:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.getvalue()


def test_model_side_weights_take_the_seed_s_arguments(tmp_path) -> None:
    model = _built()
    # 0.2.5: save_weights(path, prefix) with prefix='' -> one file in checkpoint names
    model.save_weights(tmp_path / "seed.pt", "")
    model.save_pretrained(tmp_path / "b4t")  # b4t's checkpoint layout: a folder
    from safetensors.torch import load_file

    as_file = torch.load(tmp_path / "seed.pt", weights_only=True)
    in_folder = load_file(tmp_path / "b4t" / "model.safetensors")
    assert (tmp_path / "seed.pt").is_file() and set(as_file) == set(in_folder)
    for key, value in in_folder.items():
        assert torch.equal(as_file[key], value), key
    other = _built(seed=3)
    other.load_weights(tmp_path / "seed.pt", True)  # 0.2.5: load_weights(path, strict)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    for source, kwargs in ((tmp_path / "seed.pt", {"prefix": ""}), (tmp_path / "b4t", {})):
        third = _built(seed=4)
        third.load_weights(source, **kwargs)
        for key, value in model.state_dict().items():
            assert torch.equal(third.state_dict()[key], value), (source, key)


def test_save_weights_writes_one_file_in_the_seed_s_module_names(tmp_path) -> None:
    """0.2.5's ``save_weights('best_model.pt')``: one state-dict file at the path, the
    model's own ``state_dict()`` (``load_state_dict(torch.load(path))`` reads it);
    ``seed_names=True`` writes 0.2.5's module names (q, k, v apart). Both load back, by path
    or by keyword."""
    model = _built()
    model.save_weights(save_path=tmp_path / "best_model.pt")
    assert (tmp_path / "best_model.pt").is_file()
    saved = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert list(saved) == list(model.state_dict())
    _built(seed=4).load_state_dict(saved)
    model.save_weights(tmp_path / "seed.pt", seed_names=True)
    saved = torch.load(tmp_path / "seed.pt", weights_only=True)
    assert "encoderLayer.1.multiHeadAttention.q.weight" in saved
    assert "embeddings.layerNorm.weight" in saved and "pooler.weight" in saved
    assert not any(key.startswith("layers.") for key in saved)
    for name in ("best_model.pt", "seed.pt"):
        other = _built(seed=5)
        other.load_weights(load_path=tmp_path / name)
        for key, value in model.state_dict().items():
            assert torch.equal(other.state_dict()[key], value), (name, key)
    # a file in b4t's own names (b4t 0.2's trainer files) still loads
    torch.save(model.state_dict(), tmp_path / "own.pt")
    third = _built(seed=6)
    third.load_weights(tmp_path / "own.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(third.state_dict()[key], value), key
    with pytest.raises(TypeError, match="save_path"):
        model.save_weights(tmp_path / "a.pt", save_path=tmp_path / "b.pt")
    with pytest.raises(TypeError, match="path twice"):  # b4t's keyword beside 0.2.5's place
        model.save_weights(tmp_path / "a.pt", path=tmp_path / "b.pt")


def test_a_model_without_seed_names_saves_its_own_names_and_says_so(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_transformer_model(CONFIG, model="deberta_v2")
    assert model.seed_state_names() is None
    with pytest.warns(UserWarning, match="0.2.5's parameter names of the model are not known"):
        model.save_weights(tmp_path / "deberta.pt", seed_names=True)
    assert set(torch.load(tmp_path / "deberta.pt", weights_only=True)) == set(model.state_dict())
    torch.manual_seed(1)
    other = build_transformer_model(CONFIG, model="deberta_v2")
    other.load_weights(tmp_path / "deberta.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_without_b4t_trainer_compile_says_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "b4t.trainer", None)  # import b4t.trainer now fails
    model = build_transformer_model(CONFIG)
    assert type(model) is Transformer and not isinstance(model, BaseModel)
    with pytest.raises(ImportError, match="pip install b4t-trainer"):
        model.compile(loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters()))
    with pytest.raises(ImportError, match="pip install b4t-trainer"):
        model.compile(nn.CrossEntropyLoss(), None)
    assert not hasattr(model, "fit")


def test_a_safetensors_path_is_the_checkpoint_layout(tmp_path) -> None:
    """A torch pickle cannot be a ``.safetensors`` file: that path gets the layout."""
    from safetensors.torch import load_file

    model = _built()
    model.save_weights(tmp_path / "w.safetensors")
    saved = load_file(tmp_path / "w.safetensors")
    assert "bert.encoder.layer.0.attention.self.query.weight" in saved
    other = _built(seed=7)
    other.load_weights(tmp_path / "w.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_save_and_load_weights_have_one_argument_order(tmp_path) -> None:
    """bert4torch's positional order in the models as in the trainer: ``(path, prefix)`` /
    ``(path, strict, prefix)``; b4t's ``mapping`` is keyword only. A mapping passed where
    0.2.5 takes ``prefix`` / ``strict`` is a TypeError saying so (it was guessed before)."""
    model = _built()
    own = {name: name for name in model.state_dict()}
    with pytest.raises(TypeError, match=r"prefix must be a str.*mapping=") as err:
        model.save_weights(tmp_path / "x.safetensors", own)
    assert "dict" in str(err.value)
    with pytest.raises(TypeError, match=r"strict must be a bool.*mapping="):
        model.load_weights(tmp_path / "x.safetensors", own)
    assert not (tmp_path / "x.safetensors").exists()
    model.save_weights(tmp_path / "own.safetensors", mapping=own)
    other = _built(seed=3)
    other.load_weights(tmp_path / "own.safetensors", True, mapping=own)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    # the model class's own methods (no trainer) take the same order
    assert list(inspect.signature(Transformer.save_weights).parameters)[:3] == [
        "self",
        "path",
        "prefix",
    ]
    load = inspect.signature(Transformer.load_weights).parameters
    assert list(load)[:4] == ["self", "path", "strict", "prefix"]
    assert load["mapping"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(ValueError, match="seed_names=True names a state-dict file"):
        model.save_weights(tmp_path / "y.pt", mapping=own, seed_names=True)
