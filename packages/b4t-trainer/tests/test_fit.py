"""fit / evaluate / predict: hooks, logs, metrics, loss forms, loader cycling."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import Callback, LambdaCallback, Trainer


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))

    def on_epoch_begin(self, global_step, epoch, logs=None):
        self.calls.append(("epoch_begin", global_step, epoch))

    def on_epoch_end(self, global_step, epoch, logs=None):
        self.calls.append(("epoch_end", global_step, epoch, sorted(logs)))

    def on_batch_begin(self, global_step, local_step, logs=None):
        self.calls.append(("batch_begin", global_step, local_step))

    def on_batch_end(self, global_step, local_step, logs=None):
        self.calls.append(("batch_end", global_step, local_step, sorted(logs)))

    def on_after_backward(self, global_step, local_step, logs=None):
        grads = [p.grad for p in self.trainer.module.parameters()]
        assert all(g is not None for g in grads)
        self.calls.append(("after_backward", global_step, local_step))

    def on_dataloader_end(self, logs=None):
        self.calls.append(("dataloader_end",))

    def on_train_step_end(self, logs=None):  # torch4keras's hook: after backward, logs empty
        assert logs == {}
        assert all(p.grad is not None for p in self.trainer.module.parameters())
        self.calls.append(("train_step_end",))


def test_hook_order_and_arguments(tiny_net, loader) -> None:
    torch.manual_seed(0)
    model = tiny_net()
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    rec = Recorder()
    # 2 batches per pass, 3 steps per epoch: the loader wraps inside epoch 0 and again in epoch 1.
    model.fit(loader(n=8, batch_size=4), epochs=2, steps_per_epoch=3, callbacks=[rec], verbose=0)
    keys = ["loss", "size"]
    expected: list[tuple] = [("train_begin",)]
    step = 0
    for epoch in range(2):
        expected.append(("epoch_begin", step, epoch))
        for local in range(3):
            if step in (2, 4):
                expected.append(("dataloader_end",))
            expected += [
                ("batch_begin", step, local),
                ("train_step_end",),
                ("after_backward", step, local),
                ("batch_end", step, local, keys),
            ]
            step += 1
        expected.append(("epoch_end", step - 1, epoch, ["loss"]))  # epoch logs carry no size
    expected.append(("train_end",))
    assert rec.calls == expected


def test_only_defined_hooks_are_called(tiny_net, loader) -> None:
    calls = []
    cb = LambdaCallback(on_epoch_end=lambda g, e, logs: calls.append(e))
    assert cb.defines("on_epoch_end") and not cb.defines("on_batch_end")
    model = tiny_net()
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    model.fit(loader(), epochs=2, callbacks=[cb], verbose=0)
    assert calls == [0, 1]
    assert cb in model.trainer.callbacks
    assert cb.on_epoch_end not in model.trainer._hooks["on_batch_end"]
    with pytest.raises(ValueError, match="unknown hook"):
        LambdaCallback(on_batch_ending=print)


def test_metrics_and_history_match_hand_computation(tiny_net, data) -> None:
    torch.manual_seed(0)
    model = tiny_net()
    x, y = data(13)
    # lr=0 keeps the weights fixed, so the per-batch values are known in advance.
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def top_logit(y_pred, y_true):
        return y_pred.max(dim=-1).values.mean()

    def hits(y_pred, y_true):  # a bare function returning a dict, as the seed's NER examples
        return {"hit": float((y_pred.argmax(-1) == y_true).float().mean()), "n": len(y_true)}

    model.compile(nn.CrossEntropyLoss(), opt, metrics=["accuracy", {"top": top_logit}, hits])
    # uneven batches: 4, 4, 4, 1; every epoch figure is a mean over the 13 samples
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    history = model.fit(loader, epochs=2, verbose=0)
    with torch.no_grad():
        out = model(x)
    right = (out.argmax(-1) == y).float()
    true_acc = float(right.mean())
    true_loss = float(nn.functional.cross_entropy(out, y))
    per_batch = [float(right[i : i + 4].mean()) for i in (0, 4, 8, 12)]
    assert abs(sum(per_batch) / 4 - true_acc) > 0.01  # a plain mean of batches is wrong here
    assert history.epoch == [1, 2]
    assert history.history["accuracy"] == pytest.approx([true_acc] * 2)
    assert history.history["hit"] == pytest.approx([true_acc] * 2)
    assert history.history["n"] == pytest.approx([(3 * 4 * 4 + 1) / 13] * 2)
    assert history.history["loss"] == pytest.approx([true_loss] * 2, rel=1e-6)
    assert history.history["top"] == pytest.approx([float(out.max(-1).values.mean())] * 2)
    assert "size" not in history.history
    evaluated = model.evaluate(DataLoader(TensorDataset(x, y), batch_size=5))
    assert evaluated["accuracy"] == pytest.approx(true_acc)
    assert evaluated["hit"] == pytest.approx(true_acc)
    assert evaluated["loss"] == pytest.approx(true_loss, rel=1e-6)
    assert set(evaluated) == {"loss", "accuracy", "top", "hit", "n"}


def test_fit_and_evaluate_agree_on_batches_of_4_and_1(tiny_net) -> None:
    """The issue's case: batches of 4 and 1, 4 of 5 right -> 0.8 in fit as in evaluate."""
    model = tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.zeros(5, 6)
    y = torch.tensor([0, 0, 0, 1, 0])  # batch 1: 3 of 4 right, batch 2: 1 of 1

    def fixed(y_pred, y_true):  # predicts class 0 for every sample
        return {"acc0": float((y_true == 0).float().mean())}

    model.compile(nn.CrossEntropyLoss(), opt, metrics=[fixed])
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    history = model.fit(loader, epochs=1, verbose=0)
    assert history.history["acc0"] == pytest.approx([0.8])  # not (0.75 + 1) / 2 = 0.875
    assert model.evaluate(loader)["acc0"] == pytest.approx(0.8)


def test_stateful_metrics_keep_the_last_batch_value(tiny_net, data) -> None:
    model = tiny_net()
    x, y = data(10)
    calls = iter(range(100))
    model.compile(
        nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.0),
        metrics={"count": lambda p, t: float(next(calls))},
        stateful_metrics="count",
    )
    history = model.fit(DataLoader(TensorDataset(x, y), batch_size=4), epochs=2, verbose=0)
    assert history.history["count"] == [2.0, 5.0]  # 3 batches an epoch: the last one's value


@pytest.mark.parametrize("form", ["dict", "tuple"])
def test_loss_dict_or_tuple_logs_the_other_parts(tiny_net, loader, form) -> None:
    ce = nn.CrossEntropyLoss()

    def loss(y_pred, y_true):
        main = ce(y_pred, y_true)
        aux = y_pred.pow(2).mean()
        if form == "dict":
            return {"loss": main + aux, "ce": main, "aux": aux}
        return main + aux, main, aux

    model = tiny_net()
    model.compile(loss, torch.optim.SGD(model.parameters(), lr=0.0))
    history = model.fit(loader(n=8), epochs=1, verbose=0)
    names = ("ce", "aux") if form == "dict" else ("loss1", "loss2")  # torch4keras's names
    total = history.history["loss"][0]
    assert total == pytest.approx(history.history[names[0]][0] + history.history[names[1]][0])


def test_list_inputs_are_splatted_into_forward(data) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)

        def forward(self, x1, x2):
            return self.a(x1) + self.b(x2)

    x, y = data(8)
    batches = [([x[:4], x[:4] * 2], y[:4]), ([x[4:], x[4:] * 2], y[4:])]
    module = TwoInputs()
    trainer = Trainer(module)
    trainer.compile(nn.CrossEntropyLoss(), torch.optim.SGD(module.parameters(), lr=0.1))
    before = module.a.weight.detach().clone()
    trainer.fit(batches, epochs=1, verbose=0)
    assert not torch.equal(before, module.a.weight)
    assert trainer.global_step == 2


def test_predict_runs_in_eval_mode_without_grad(tiny_net, data) -> None:
    model = tiny_net(dropout=0.9)
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    x, _ = data(5)
    model.train()
    out1, out2 = model.predict(x), model.predict(x)
    assert torch.equal(out1, out2)  # dropout is off
    assert not out1.requires_grad
    assert model.training  # mode restored


def test_steps_per_epoch_larger_than_loader_cycles(tiny_net, loader) -> None:
    ends = []
    model = tiny_net()
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    cb = LambdaCallback(on_dataloader_end=lambda logs: ends.append(model.trainer.global_step))
    model.fit(loader(n=12, batch_size=4), epochs=1, steps_per_epoch=7, callbacks=[cb], verbose=0)
    assert ends == [3, 6]
    assert model.trainer.global_step == 7


def test_progress_bar_writes_epoch_and_loss(tiny_net, loader, capsys) -> None:
    model = tiny_net()
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    model.fit(loader(n=8), epochs=2, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 2/2" in err and "loss=" in err


def test_regression_metrics_by_hand() -> None:
    from b4t.trainer.metrics import METRICS

    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    true = torch.tensor([[1.5, 2.0], [1.0, 5.0]])
    assert METRICS["mae"](pred, true) == pytest.approx((0.5 + 0 + 2 + 0) / 4)
    assert METRICS["mse"](pred, true) == pytest.approx((0.25 + 0 + 4 + 0) / 4)
    probs = torch.tensor([0.2, 0.7, 0.9, 0.4])
    assert METRICS["binary_accuracy"](probs, torch.tensor([0, 1, 0, 0])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"mae: y_pred shape \(2, 2\) differs"):
        METRICS["mae"](pred, true[:, 0])


def test_progress_bar_counts_every_step_at_a_bounded_redraw_rate(tiny_net, loader) -> None:
    import io

    from b4t.trainer import ProgressBar

    model = tiny_net()
    model.compile(nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    bar = ProgressBar(interval=3600.0, file=io.StringIO())  # no redraw inside the epoch
    seen = []
    spy = LambdaCallback(on_batch_end=lambda g, s, logs: seen.append((bar.bar.n, bar._pending)))
    model.fit(loader(n=8), epochs=1, steps_per_epoch=5, callbacks=[bar, spy], verbose=1)
    # every step is counted, but the bar itself is not touched until the epoch ends
    assert seen == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]
    text = bar.file.getvalue()
    assert "5/5" in text and "loss=" in text
