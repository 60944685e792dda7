"""ListDataset, seed_everything, BaseModel / BaseModelDP surfaces."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import BaseModel, BaseModelDDP, BaseModelDP, ListDataset, Trainer, seed_everything


def test_list_dataset_load_data_and_data_list(tmp_path) -> None:
    class Pairs(ListDataset):
        @staticmethod
        def load_data(filename):
            with open(filename, encoding="utf-8") as handle:
                return [line.rstrip("\n").split("\t") for line in handle]

    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("x\t1\ny\t0\n", encoding="utf-8")
    second.write_text("z\t1\n", encoding="utf-8")
    assert Pairs(first)[1] == ["y", "0"]
    both = Pairs([first, second])
    assert len(both) == 3 and both[2] == ["z", "1"]
    assert len(ListDataset(data_list=[1, 2, 3])) == 3
    with pytest.raises(NotImplementedError, match="load_data"):
        ListDataset(first)
    with pytest.raises(ValueError, match="file_path or data_list"):
        ListDataset()


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


def test_base_model_dp_trains_and_saves_without_prefix(data, tmp_path) -> None:
    x, y = data(8)
    torch.manual_seed(0)
    inner = nn.Linear(6, 3)
    model = BaseModelDP(inner)
    assert model.module is inner
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(inner.parameters(), lr=0.5))
    before = inner.weight.detach().clone()
    model.fit(DataLoader(TensorDataset(x, y), batch_size=4), verbose=0)
    assert not torch.equal(before, inner.weight)
    model.save_weights(tmp_path / "w.pt")
    assert set(torch.load(tmp_path / "w.pt", weights_only=True)) == {"weight", "bias"}
    assert set(model.state_dict()) == {"weight", "bias"}


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
