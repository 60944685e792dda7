"""ListDataset, seed_everything, BaseModel / BaseModelDP surfaces."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    BaseModel,
    BaseModelDDP,
    BaseModelDP,
    ListDataset,
    Trainer,
    cal_ts_num,
    seed_everything,
)


def test_list_dataset_load_data_and_data(tmp_path) -> None:
    calls = []

    class Pairs(ListDataset):
        @staticmethod
        def load_data(filenames):
            calls.append(filenames)
            names = [filenames] if isinstance(filenames, (str, Path)) else filenames
            rows = []
            for name in names:
                with open(name, encoding="utf-8") as handle:
                    rows += [line.rstrip("\n").split("\t") for line in handle]
            return rows

    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("x\t1\ny\t0\n", encoding="utf-8")
    second.write_text("z\t1\n", encoding="utf-8")
    assert Pairs(first)[1] == ["y", "0"]
    both = Pairs([first, second])
    assert calls[-1] == [first, second]  # once, with the whole list (0.2.5)
    assert len(calls) == 2
    assert len(both) == 3 and both[2] == ["z", "1"]
    # the default load_data returns what it was given, as 0.2.5's does
    assert ListDataset(["s1", "s2"]).data == ["s1", "s2"]
    samples = [1, 2, 3]
    assert ListDataset(data=samples).data is samples
    assert len(ListDataset(data_list=[1, 2, 3])) == 3  # b4t 0.1's name still works
    assert ListDataset(None, [4, 5], extra=1).kwargs == {"extra": 1}
    with pytest.raises(ValueError, match="file_path or data"):
        ListDataset()
    with pytest.raises(ValueError, match="not both"):
        ListDataset(first, data=[1])
    with pytest.raises(TypeError, match="data must be a list"):
        ListDataset(data="abc")


def test_cal_ts_num_counts_live_tensors_of_a_shape(capsys) -> None:
    keep = [torch.zeros(3, 7, 5) for _ in range(3)]
    assert cal_ts_num((3, 7, 5), device="cpu") == 3
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "3" and out.count("torch.Size([3, 7, 5])") == 3
    assert cal_ts_num(torch.Size([3, 7, 5]), device=None) == 3
    if not torch.cuda.is_available():
        assert cal_ts_num((3, 7, 5)) == 0  # CUDA tensors only by default, as 0.2.5
    del keep


def test_seed_everything_repeats_python_numpy_torch() -> None:
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    assert seed_everything(42) == 42
    first = draw()
    seed_everything(42)
    assert draw() == first
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_base_model_is_a_plain_module_with_the_trainer_surface(tiny_net) -> None:
    net = tiny_net()
    assert isinstance(net, nn.Module) and isinstance(net.trainer, Trainer)
    assert net.trainer.module is net
    assert "trainer" not in dict(net.named_children())
    assert not any("trainer" in key for key in net.state_dict())
    assert not isinstance(net.trainer, nn.Module)  # composition, not inheritance
    assert issubclass(BaseModel, nn.Module)


class Tagger(nn.Module):
    """A module with a submodule and a method users call after wrapping (``model.crf.decode``)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(6, 8)
        self.crf = Decoder(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.crf(torch.tanh(self.encoder(x)))


class Decoder(nn.Linear):
    def decode(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.argmax(-1)


def test_base_model_dp_trains_exactly_like_the_bare_module(data, tmp_path) -> None:
    """DataParallel on one device (or CPU) must train the same weights as the module alone:
    a wrong module in the optimizer, forward or save path breaks the equality."""
    x, y = data(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    torch.manual_seed(0)
    bare = Tagger()
    wrapped_inner = Tagger()
    wrapped_inner.load_state_dict(bare.state_dict())
    ref = Trainer(bare)
    ref.compile(nn.CrossEntropyLoss(), torch.optim.SGD(bare.parameters(), lr=0.5, momentum=0.9))
    ref.fit(loader, epochs=2, verbose=0)
    model = BaseModelDP(wrapped_inner)
    assert model.module is wrapped_inner
    model.compile(
        nn.CrossEntropyLoss(), torch.optim.SGD(wrapped_inner.parameters(), lr=0.5, momentum=0.9)
    )
    history = model.fit(loader, epochs=2, verbose=0)
    assert history.history["loss"] == pytest.approx(ref.history.history["loss"], abs=1e-7)
    for key, value in bare.state_dict().items():
        torch.testing.assert_close(wrapped_inner.state_dict()[key], value, rtol=0, atol=1e-7)
    model.save_weights(tmp_path / "w.pt")
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(saved) == set(bare.state_dict())  # no module./wrapper. prefix
    assert set(model.state_dict()) == set(bare.state_dict())
    # attribute access reaches the wrapped module (bert4torch issue #134)
    assert model.crf is wrapped_inner.crf
    scores = model.predict(x)
    assert torch.equal(model.crf.decode(scores), bare.crf.decode(bare(x)))
    with pytest.raises(AttributeError, match="neither has the wrapped 'Tagger'"):
        model.no_such_thing  # noqa: B018


def test_base_model_wraps_a_module_as_torch4keras_does(data) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)

        def forward(self, x1, x2):
            return self.a(x1) + self.b(x2)

    x, y = data(8)
    inner = TwoInputs()
    model = BaseModel(inner)
    assert set(model.state_dict()) == {
        "module.a.weight",
        "module.a.bias",
        "module.b.weight",
        "module.b.bias",
    }
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    model.fit([([x, x], y)], verbose=0)  # the list is spread over the inner forward's arguments
    torch.testing.assert_close(model.predict([x, x]), inner(x, x))
    with pytest.raises(NotImplementedError, match="has no forward"):
        BaseModel()(x)


def test_base_model_ddp_needs_an_initialised_process_group() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        BaseModelDDP(nn.Linear(2, 2))


def test_copies_and_pickles_of_a_base_model_leave_the_trainer_behind(tiny_net, tmp_path) -> None:
    import copy
    import pickle

    net = tiny_net()
    net.compile(lambda p, t: p.sum(), torch.optim.SGD(net.parameters(), lr=0.1))  # a lambda
    twin = copy.deepcopy(net)
    assert twin.trainer is not net.trainer and not twin.trainer.compiled
    assert twin.trainer.module is twin
    restored = pickle.loads(pickle.dumps(net))  # the lambda loss would not pickle
    for a, b in zip(restored.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    assert net.trainer.compiled
