"""torch4keras 0.0.4 / bert4torch 0.2.5 names in b4t.trainer (tests/seed compares them with
the seed itself; these need no seed)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import b4t.trainer as bt


class _Rec(bt.Callback):
    def __init__(self, name, seen):
        self.name, self.seen = name, seen

    def on_batch_end(self, global_step, local_step, logs=None):
        self.seen.append((self.name, global_step))


def test_callback_list_runs_each_hook_on_every_callback_in_order(tiny_net, loader) -> None:
    seen: list = []
    group = bt.CallbackList([_Rec("a", seen)])
    group.append(_Rec("b", seen))
    assert len(group) == 2 and [cb.name for cb in group] == ["a", "b"]
    assert group.defines("on_batch_end") and not group.defines("on_epoch_begin")
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    net.fit(loader(n=8), epochs=1, callbacks=group, verbose=0)
    assert seen == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    with pytest.raises(TypeError, match="Callback instances"):
        group.append(object())


def test_reduce_lr_on_plateau_cuts_after_patience_and_logs_the_lr(tiny_net, loader) -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net.compile(lambda y_pred, y: y_pred.sum() * 0 + 1.0, opt)  # a flat loss never improves
    plateau = bt.ReduceLROnPlateau(factor=0.5, patience=2, method="step", min_lr=0.2)
    seen = []
    rec = bt.LambdaCallback(on_batch_end=lambda step, local, logs: seen.append(logs["lr"]))
    net.fit(loader(n=32), epochs=1, callbacks=[plateau, rec], verbose=0)
    # first check sets the best; then two non-improving checks per cut, floored at min_lr
    assert seen == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2]
    with pytest.raises(KeyError, match="'val_acc'"):
        bad = bt.ReduceLROnPlateau(monitor="val_acc")
        net.fit(loader(n=8), epochs=1, callbacks=[bad], verbose=0)
    with pytest.raises(ValueError, match=r"factor < 1\.0"):
        bt.ReduceLROnPlateau(factor=1.0)


def test_progbar_averages_over_steps_and_keeps_stateful_values() -> None:
    out = io.StringIO()
    bar = bt.Progbar(4, verbose=1, interval=0, stateful_metrics=["lr"], file=out)
    bar.update(1, [("loss", 4.0), ("lr", 0.1)])
    bar.update(3, [("loss", 1.0), ("lr", 0.05)])  # two steps at 1.0
    bar.add(1, [("loss", 0.0), ("lr", 0.01)])
    assert bar.averages() == pytest.approx({"loss": 6.0 / 4, "lr": 0.01})
    assert out.getvalue().endswith("\n") and "4/4 [" in out.getvalue()


def test_iter_dataset_search_layer_and_metric_mapping(tmp_path, tiny_net) -> None:
    path = tmp_path / "a.txt"
    path.write_text("x\ny\n", encoding="utf-8")
    assert list(bt.IterDataset(str(path))) == ["x\n", "y\n"]
    assert list(bt.IterDataset([path, path])) == ["x\n", "y\n"] * 2
    with pytest.raises(TypeError, match="file_path"):
        bt.IterDataset()
    net = tiny_net()
    assert bt.search_layer(net, "fc2") is net.fc2.weight
    assert bt.search_layer(net, "bias", return_first=False) == [net.fc1.bias, net.fc2.bias]
    assert bt.search_layer(net, "missing") is None
    pred, true = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])
    assert bt.metric_mapping("mape", None, pred, true) == pytest.approx(25.0)
    assert bt.metric_mapping("loss", None, pred, true) is None
    with pytest.raises(TypeError, match="must return a dict"):
        bt.metric_mapping(len, lambda p, t: 1.0, pred, true)


def test_progbar_logger_shows_each_epoch_with_its_batch_means(tiny_net, loader) -> None:
    out = io.StringIO()
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.0))
    history = net.fit(loader(n=8), epochs=2, callbacks=[bt.ProgbarLogger(file=out)], verbose=0)
    text = out.getvalue()
    assert text.count("Epoch ") == 2 and "Epoch 2/2" in text and "2/2 [" in text
    assert f"loss: {history.history['loss'][1]:.4f}" in text  # lr 0: equal batches, one mean
