"""torch4keras 0.0.4's trainer surface that b4t gained for the surface check: ``train_step``,
``args_segmentate``, ``compile``'s positional order, ``save_steps_params(save_path)``, the
DP constructor, ``BM``, the callbacks' ``set_model`` / ``set_params`` / ``process`` /
``get_monitor_value``, ``CallbackList``'s hooks and ``LambdaCallback``'s named hooks;
each beside torch4keras itself where it computes something."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import b4t.trainer as bt


def _layers():
    torch.manual_seed(0)
    return nn.Linear(6, 8), nn.Linear(8, 3)


def _pair(b4t_seed, two_args: bool = False):
    """The same MLP as a torch4keras BaseModel and a b4t BaseModel (equal weights)."""

    def make(base):
        class Net(base):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = _layers()

            if two_args:

                def forward(self, x, scale):
                    return self.fc2(torch.tanh(self.fc1(x))) * scale

            else:

                def forward(self, x):
                    return self.fc2(torch.tanh(self.fc1(x)))

        return Net()

    return make(b4t_seed["t4k_model"].BaseModel), make(bt.BaseModel)


def _loss(y_pred, y_true):
    ce = nn.functional.cross_entropy(y_pred, y_true)
    return ce + 0.01 * y_pred.pow(2).mean(), ce


def test_train_step_equals_the_seed(b4t_seed):
    seed, ours = _pair(b4t_seed)
    for net in (seed, ours):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net.compile(_loss, opt, None, None, False, None, None, 2)  # positional, as torch4keras
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 1, 0])
    s_out, s_loss, s_detail = seed.train_step(x, y)
    o_out, o_loss, o_detail = ours.train_step(x, y)
    torch.testing.assert_close(o_out, s_out)
    torch.testing.assert_close(o_loss, s_loss)  # divided by grad_accumulation_steps
    assert o_detail.keys() == s_detail.keys() == {"loss1"}
    torch.testing.assert_close(o_detail["loss1"], s_detail["loss1"])
    for (name, p), q in zip(ours.named_parameters(), seed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert all(p.grad is not None for p in ours.parameters())  # no optimizer step, no zeroing


def test_fit_runs_an_overridden_train_step_as_the_seed(b4t_seed):
    """torch4keras's fit calls ``self.train_step``: a subclass's own step (here the loss
    plus an L1 term, back-propagated) trains the same weights in both."""

    def make(base):
        class Net(base):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = _layers()

            def forward(self, x):
                return self.fc2(torch.tanh(self.fc1(x)))

            def train_step(self, train_X, train_y):
                output = self.forward(train_X)
                loss = nn.functional.cross_entropy(output, train_y)
                loss = loss + 0.05 * sum(p.abs().sum() for p in self.parameters())
                loss.backward()
                return output, loss, {}

        return Net()

    seed, ours = make(b4t_seed["t4k_model"].BaseModel), make(bt.BaseModel)
    data = TensorDataset(torch.randn(8, 6), torch.randint(0, 3, (8,)))
    for net in (seed, ours):
        net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
        net.fit(DataLoader(data, batch_size=4), epochs=2, verbose=1)
    for (name, p), q in zip(ours.named_parameters(), seed.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    plain = _pair(b4t_seed)[1]
    plain.compile(nn.CrossEntropyLoss(), torch.optim.SGD(plain.parameters(), lr=0.1))
    plain.fit(DataLoader(data, batch_size=4), epochs=2, verbose=0)
    assert not torch.allclose(plain.fc1.weight, ours.fc1.weight)  # the override did count


def test_args_segmentate_equals_the_seed(b4t_seed):
    for two_args in (False, True):
        seed, ours = _pair(b4t_seed, two_args)
        for inputs in (torch.zeros(2, 6), [torch.zeros(2, 6), 2.0], (torch.zeros(2, 6),)):
            assert ours.args_segmentate(inputs) == seed.args_segmentate(inputs), (two_args, inputs)
    wrapped = bt.BaseModel(nn.Bilinear(2, 2, 1))
    seed_wrapped = b4t_seed["t4k_model"].BaseModel(nn.Bilinear(2, 2, 1))
    pair = [torch.zeros(1, 2), torch.zeros(1, 2)]
    assert wrapped.args_segmentate(pair) == seed_wrapped.args_segmentate(pair) is True


def test_steps_params_by_save_path_and_dp_constructor(b4t_seed, tmp_path):
    _, ours = _pair(b4t_seed)
    ours.compile(nn.CrossEntropyLoss(), torch.optim.SGD(ours.parameters(), lr=0.1))
    data = TensorDataset(torch.randn(8, 6), torch.randint(0, 3, (8,)))
    ours.fit(DataLoader(data, batch_size=4), epochs=1, verbose=0)
    ours.save_steps_params(save_path=tmp_path / "steps.pt")
    state = ours.load_steps_params(save_path=tmp_path / "steps.pt")
    assert (state["resume_epoch"], state["resume_step"]) == (1, 0)
    assert ours.load_steps_params(path=tmp_path / "steps.pt") == state  # b4t's keyword
    with pytest.raises(TypeError, match="not both"):
        ours.save_steps_params(tmp_path / "a.pt", path=tmp_path / "b.pt")
    inner = nn.Linear(6, 3)
    dp = bt.BaseModelDP(inner, device_ids=None)  # nn.DataParallel's arguments
    assert dp.module is inner
    assert bt.BM is bt.BaseModel and b4t_seed["models"].BM is b4t_seed["t4k_model"].BaseModel


def test_callback_params_and_model_equal_the_seed_s(b4t_seed):
    seen = {}

    def recorder(base, key):
        class Rec(base):
            def on_train_begin(self, logs=None):
                seen[key] = (dict(self.params), self.model)

        return Rec()

    seed, ours = _pair(b4t_seed)
    data = TensorDataset(torch.randn(8, 6), torch.randint(0, 3, (8,)))
    for net, base, key in (
        (seed, b4t_seed["t4k_snippets"].Callback, "seed"),
        (ours, bt.Callback, "ours"),
    ):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), metrics=["accuracy"]
        )
        net.fit(
            DataLoader(data, batch_size=4), epochs=2, callbacks=[recorder(base, key)], verbose=1
        )
    assert seen["ours"][0] == seen["seed"][0]
    assert seen["ours"][1] is ours and seen["seed"][1] is seed
    cb = bt.Callback()
    cb.set_params({"epochs": 3})
    cb.set_model(ours)
    assert cb.params == {"epochs": 3} and cb.model is ours and cb.trainer is ours.trainer


def test_callback_list_hooks_by_the_seed_s_names(b4t_seed):
    calls = []
    lam = bt.LambdaCallback(
        on_epoch_begin=lambda global_step, epoch, logs: calls.append(("eb", global_step, epoch)),
        on_batch_end=lambda global_step, local_step, logs: calls.append(
            ("be", global_step, local_step)
        ),
        on_train_end=lambda logs: calls.append(("te", logs)),
        note="kept",  # torch4keras keeps other keywords as attributes
    )
    assert lam.note == "kept" and lam.defines("on_batch_end") and not lam.defines("on_batch_begin")
    group = bt.CallbackList([lam])
    group.on_epoch_begin(global_step=3, epoch=1, logs={})
    group.on_batch_end(global_step=4, local_step=0, logs={})
    group.on_batch_begin(global_step=4, local_step=0)
    group.on_train_end(logs={"x": 1})
    assert calls == [("eb", 3, 1), ("be", 4, 0), ("te", {"x": 1})]
    group.set_params({"epochs": 1})
    assert lam.params == {"epochs": 1}
    with pytest.raises(ValueError, match="on_epoch_ennd"):  # deliberate: MIGRATION.md
        bt.LambdaCallback(on_epoch_ennd=print)
    assert b4t_seed["t4k_snippets"].LambdaCallback(on_epoch_ennd=print).on_epoch_ennd is print
    ended = []
    bt.LambdaCallback(on_dataloader_end=ended.append, on_train_end=print).on_dataloader_end({})
    assert ended == [{}]  # 0.2.5 runs on_train_end there
    bar = bt.ProgbarLogger()
    bar.on_batch_begin()  # torch4keras's optional arguments
    bar.on_epoch_end()


def test_process_and_get_monitor_value(b4t_seed, tmp_path):
    seed, ours = _pair(b4t_seed)
    ours.compile(nn.CrossEntropyLoss(), torch.optim.SGD(ours.parameters(), lr=0.5))
    stop, seed_stop = (
        bt.EarlyStopping(patience=1),
        b4t_seed["t4k_snippets"].EarlyStopping(patience=1),
    )
    for cb, net in ((stop, ours), (seed_stop, seed)):
        cb.set_model(net)
        cb.on_train_begin({})
    assert (
        stop.get_monitor_value({"loss": 0.5}) == seed_stop.get_monitor_value({"loss": 0.5}) == 0.5
    )
    with pytest.raises(KeyError, match="loss"):  # a missing monitor: MIGRATION.md
        stop.get_monitor_value({})
    for value in (1.0, 0.8, 0.9):
        stop.process(0, {"loss": value})
        seed_stop.process(0, {"loss": value})
    assert ours.trainer.stop_training and seed.stop_training
    assert stop.wait == seed_stop.wait
    plateau = bt.ReduceLROnPlateau(patience=0, factor=0.5)
    plateau.set_model(ours)
    plateau.on_train_begin({})
    logs = {"loss": 1.0}
    plateau.process(0, logs)
    plateau.process(1, {"loss": 2.0})
    assert logs["lr"] == 0.5 and ours.optimizer.param_groups[0]["lr"] == 0.25
    ckpt = bt.Checkpoint(str(tmp_path / "w_{epoch}.pt"))
    assert type(ckpt) is bt.Checkpoint
    ckpt.set_model(ours)
    ckpt.process(3, {"loss": 0.1})
    saved = torch.load(tmp_path / "w_3.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in ours.state_dict().items())

    class Eval(bt.Evaluator):
        def evaluate(self):
            return {"perf": 0.7}

    ev = Eval(checkpoint_path=str(tmp_path / "best_{epoch}.pt"), verbose=0)
    ev.set_model(ours)
    logs = {}
    ev.process(2, logs)
    assert logs == {"perf": 0.7} and (tmp_path / "best_2.pt").is_file()

    class Writer:
        def __init__(self):
            self.rows = []

        def add_scalar(self, tag, value, step):
            self.rows.append((tag, value, step))

    board = bt.Tensorboard(tmp_path, writer=Writer())
    board.process(5, {"loss": 0.3, "size": 4, "dev/f1": 0.9})
    assert board.writer.rows == [("train/loss", 0.3, 5), ("dev/f1", 0.9, 5)]
