"""Bad input: errors that name the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from b4t.trainer import Trainer


def test_fit_before_compile(tiny_net, loader) -> None:
    with pytest.raises(RuntimeError, match=r"compile\(loss=\.\.\., optimizer=\.\.\.\) before fit"):
        tiny_net().fit(loader())


def test_loss_of_the_wrong_shape(tiny_net, loader) -> None:
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(reduction="none"), torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"scalar tensor, got shape \(4,\)"):
        net.fit(loader(), verbose=0)


def test_loss_dict_without_loss_key(tiny_net, loader) -> None:
    net = tiny_net()
    net.compile(lambda p, t: {"ce": p.sum()}, torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="without a 'loss' key"):
        net.fit(loader(), verbose=0)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"x": torch.zeros(2, 6)}, "got a dict"),
        ((torch.zeros(2, 6),), "got a tuple of length 1"),
        (torch.zeros(2, 6), "got a Tensor"),
    ],
)
def test_dataloader_of_the_wrong_structure(tiny_net, batch, message) -> None:
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=rf"train_dataloader must yield \(X, y\) pairs, {message}"):
        net.fit([batch], verbose=0)


def test_unknown_metric_name(tiny_net, data) -> None:
    """A name that is no built-in metric must be a key of the loss's dict (torch4keras
    0.0.4 accepts such names); one the loss never returns fails at the first batch."""
    x, y = data(8)
    net = tiny_net()
    net.compile(
        nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=0.1),
        metrics=["accuracy", "f1_micro"],
    )
    with pytest.raises(ValueError, match=r"unknown metric name 'f1_micro'.*returned \['loss'\]"):
        net.fit([(x, y)], verbose=0)
    with pytest.raises(ValueError, match="unknown metric name 'f1_micro'"):
        net.evaluate([(x, y)])


def test_metric_names_may_name_keys_of_the_loss_dict(tiny_net, data) -> None:
    x, y = data(8)
    net = tiny_net()

    def loss(y_pred, y_true):
        ce = nn.functional.cross_entropy(y_pred, y_true)
        return {"loss": ce + 1.0, "entity_loss": ce}

    net.compile(loss, torch.optim.SGD(net.parameters(), lr=0.0), metrics=["loss", "entity_loss"])
    history = net.fit([(x, y)], verbose=0)
    assert history.history["entity_loss"][0] == pytest.approx(history.history["loss"][0] - 1.0)
    assert net.evaluate([(x, y)])["entity_loss"] == pytest.approx(
        nn.functional.cross_entropy(net(x), y).item()
    )


def test_bad_compile_arguments(tiny_net) -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="grad_accumulation_steps"):
        net.compile(nn.CrossEntropyLoss(), opt, grad_accumulation_steps=0)
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        net.compile(nn.CrossEntropyLoss(), "adam")
    with pytest.raises(TypeError, match=r"Trainer needs an nn\.Module"):
        Trainer(lambda x: x)


def test_resume_needs_the_same_schedulers(tiny_net, loader, tmp_path) -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.compile(nn.CrossEntropyLoss(), opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1))
    net.fit(loader(n=8), verbose=0)
    net.save_checkpoint(tmp_path / "c.pt")
    other = tiny_net()
    other.compile(nn.CrossEntropyLoss(), torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="1 scheduler states but 0 schedulers"):
        other.fit(loader(n=8), verbose=0, resume_from=tmp_path / "c.pt")


def test_a_logged_loss_part_that_is_not_a_scalar_is_named(tiny_net, loader) -> None:
    net = tiny_net()
    ce = nn.CrossEntropyLoss()
    net.compile(lambda p, t: (ce(p, t), p.mean(0)), torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"logged value 'loss1'.*shape \(3,\)"):
        net.fit(loader(), verbose=0)
