"""Built-in callbacks: EarlyStopping, Checkpoint, ResumeCheckpoint, TerminateOnNaN, Logger,
Tensorboard, Evaluator."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    EarlyStopping,
    Evaluator,
    LambdaCallback,
    Logger,
    ResumeCheckpoint,
    Tensorboard,
    TerminateOnNaN,
)


class Scripted(Evaluator):
    """An evaluator that reports a fixed sequence of validation scores."""

    def __init__(self, values, **kw) -> None:
        super().__init__(**kw)
        self.values = list(values)

    def evaluate(self):
        return {"val_loss": self.values[self.trainer.epoch]}


def _compiled(tiny_net, lr=0.1):
    torch.manual_seed(0)
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=lr))
    return net


def _snapshots(net, store):
    return LambdaCallback(
        on_epoch_end=lambda g, e, logs: store.append(
            {k: v.clone() for k, v in net.state_dict().items()}
        )
    )


def test_early_stopping_stops_at_the_right_epoch_and_restores_best(tiny_net, loader) -> None:
    net = _compiled(tiny_net)
    snaps: list = []
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=2, restore_best_weights=True)
    values = [1.0, 0.5, 0.6, 0.7, 0.1, 0.1]
    history = net.fit(
        loader(n=8),
        epochs=6,
        callbacks=[
            Scripted(values, monitor="val_loss", mode="min"),
            _snapshots(net, snaps),
            stopper,
        ],
        verbose=0,
    )
    # best at epoch 1; epochs 2 and 3 do not improve -> stop after epoch 3
    assert history.epoch == [1, 2, 3, 4]  # counted from 1, as torch4keras does
    assert history.history["val_loss"] == values[:4]
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    for key, value in net.state_dict().items():
        assert torch.equal(value, snaps[1][key])
    assert not torch.equal(snaps[1]["fc1.weight"], snaps[3]["fc1.weight"])


def test_early_stopping_min_delta_and_missing_monitor(tiny_net, loader) -> None:
    net = _compiled(tiny_net)
    # torch4keras's positional order: monitor, min_delta, patience, verbose, mode
    stopper = EarlyStopping("val_loss", 0.2, 1, 0, "min")
    history = net.fit(
        loader(n=8),
        epochs=5,
        callbacks=[Scripted([1.0, 0.9, 0.5, 0.45, 0.1]), stopper],
        verbose=0,
    )
    assert history.epoch == [1, 2]  # 0.9 is not 0.2 better than 1.0
    # a baseline to beat: 0.5 never gets below 0.4 -> stop after the first epoch
    beat = EarlyStopping("val_loss", mode="min", baseline=0.4)
    history = net.fit(loader(n=8), epochs=5, callbacks=[Scripted([0.5] * 5), beat], verbose=0)
    assert history.epoch == [1] and beat.stopped_epoch == 0
    with pytest.raises(KeyError, match="'val_acc', which is not in the logs"):
        net.fit(loader(n=8), epochs=1, callbacks=[EarlyStopping("val_acc")], verbose=0)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_net, data, tmp_path) -> None:
    x, y = data(24)
    x[17] = float("nan")  # batch 4 (of size 4) holds a NaN
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    net = _compiled(tiny_net)
    good = []
    snap = LambdaCallback(
        on_batch_end=lambda g, s, logs: good.append(
            {k: v.clone() for k, v in net.state_dict().items()}
        )
    )
    nan_stop = TerminateOnNaN()
    ckpt = ResumeCheckpoint(tmp_path, every_n_steps=1)
    history = net.fit(loader, epochs=3, callbacks=[snap, nan_stop, ckpt], verbose=0)
    assert nan_stop.stopped_step == 4
    assert net.trainer.global_step == 5
    assert history.epoch == []  # stopped inside the first epoch
    assert not torch.isfinite(net.fc1.weight).all()
    saved = torch.load(ckpt.last_path, weights_only=True)
    assert saved["global_step"] == 4
    for key, value in saved["model"].items():
        assert torch.equal(value, good[3][key])


def test_checkpoint_keeps_top_k_and_best(tiny_net, loader, tmp_path) -> None:
    net = _compiled(tiny_net)
    values = [0.5, 0.3, 0.4, 0.2, 0.9]
    ckpt = ResumeCheckpoint(tmp_path, monitor="val_loss", mode="min", top_k=2)
    net.fit(loader(n=8), epochs=5, callbacks=[Scripted(values), ckpt], verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.pt", "epoch2.pt", "epoch4.pt", "last.pt"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 4  # after epoch 3
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 5
    assert ckpt.kept == [(0.2, "epoch4.pt"), (0.3, "epoch2.pt")]


def test_evaluator_saves_weights_when_the_monitor_improves(tiny_net, loader, tmp_path) -> None:
    net = _compiled(tiny_net)
    snaps: list = []
    ev = Scripted([0.1, 0.8, 0.5], monitor="val_loss", mode="max", save_path=tmp_path / "b.pt")
    net.fit(loader(n=8), epochs=3, callbacks=[ev, _snapshots(net, snaps)], verbose=0)
    assert ev.best == 0.8
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    for key, value in saved.items():
        assert torch.equal(value, snaps[1][key])


def test_logger_writes_epoch_and_step_lines(tiny_net, loader, tmp_path) -> None:
    net = _compiled(tiny_net)
    path = tmp_path / "logs" / "train.log"
    net.fit(loader(n=8), epochs=2, callbacks=[Logger(path, interval=1)], verbose=0)
    lines = [line.split("] ", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()]
    assert "Start Training" in lines[0] and "Finish Training" in lines[-1]
    assert "Epoch 1" in lines[1]
    epochs = [line for line in lines if line.startswith("epoch=")]
    steps = [line for line in lines if line.startswith("step=")]
    assert len(epochs) == 2 and len(steps) == 4
    assert steps[0].startswith("step=1\tloss=") and "size" not in steps[0]
    loss = float(epochs[1].split("loss=")[1].split("\t")[0])
    assert loss == pytest.approx(net.trainer.history.history["loss"][1], abs=1e-5)


def test_logger_mode_w_starts_afresh_then_appends(tiny_net, loader, tmp_path) -> None:
    path = tmp_path / "train.log"
    path.write_text("old run\n", encoding="utf-8")
    net = _compiled(tiny_net)
    logger = Logger(path, mode="w", separator=" | ")
    net.fit(loader(n=8), epochs=1, callbacks=[logger], verbose=0)
    net.fit(loader(n=8), epochs=1, callbacks=[logger], verbose=0)  # the second fit appends
    text = path.read_text(encoding="utf-8")
    assert "old run" not in text
    assert text.count("Start Training") == 2
    assert "epoch=1 | loss=" in text
    appended = tmp_path / "appended.log"
    appended.write_text("old run\n", encoding="utf-8")
    net.fit(loader(n=8), epochs=1, callbacks=[Logger(appended)], verbose=0)  # default 'a'
    assert appended.read_text(encoding="utf-8").startswith("old run")
    with pytest.raises(ValueError, match="mode must be 'a' or 'w'"):
        Logger(path, mode="x")


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_tensorboard_writes_scalars_through_the_writer(tiny_net, loader, tmp_path) -> None:
    net = _compiled(tiny_net)
    writer = FakeWriter()
    cb = Tensorboard(tmp_path, method="step", interval=2, writer=writer)
    net.fit(loader(n=16), epochs=1, callbacks=[cb], verbose=0)
    assert [(tag, step) for tag, _, step in writer.scalars] == [
        ("train/loss", 2),
        ("train/loss", 4),
    ]
    assert all(math.isfinite(v) for _, v, _ in writer.scalars)


def test_tensorboard_writes_real_event_files(tiny_net, loader, tmp_path) -> None:
    """The real SummaryWriter (the test extra installs tensorboard): events read back."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    net = _compiled(tiny_net)
    history = net.fit(
        loader(n=8), epochs=3, callbacks=[Tensorboard(tmp_path, prefix="t/")], verbose=0
    )
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    assert "t/loss" in events.Tags()["scalars"]
    written = events.Scalars("t/loss")
    assert [e.step for e in written] == [1, 2, 3]
    # float32 in the event file
    assert [e.value for e in written] == pytest.approx(history.history["loss"], rel=1e-6)


def test_tensorboard_without_the_package_is_a_clear_import_error(
    tiny_net, loader, tmp_path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    net = _compiled(tiny_net)
    with pytest.raises(ImportError, match=r"b4t-trainer\[tensorboard\]"):
        net.fit(loader(n=8), epochs=1, callbacks=[Tensorboard(tmp_path)], verbose=0)


def test_checkpoint_in_a_hook_waits_for_the_other_callbacks(tiny_net, loader, tmp_path) -> None:
    net = _compiled(tiny_net)
    # ResumeCheckpoint runs before EarlyStopping in the list, yet the saved state must hold
    # EarlyStopping's update for the same epoch (the write is deferred to the hook's end).
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=5)
    ckpt = ResumeCheckpoint(tmp_path, top_k=0)
    net.fit(loader(n=8), epochs=2, callbacks=[Scripted([1.0, 2.0]), ckpt, stopper], verbose=0)
    saved = torch.load(ckpt.last_path, weights_only=True)
    states = {entry["name"]: entry["state"] for entry in saved["callbacks"]}
    assert states["EarlyStopping"]["wait"] == 1 and states["EarlyStopping"]["best"] == 1.0
    assert states["History"]["history"]["val_loss"] == [1.0, 2.0]
    assert (saved["epoch"], saved["local_step"]) == (2, 0)  # the epoch is complete
