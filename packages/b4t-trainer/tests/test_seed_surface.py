"""bert4torch 0.2.5 / torch4keras 0.0.4's trainer surface: argument orders, the resume recipe,
cleanup after a failed fit, bad input, predict, weights with prefix/mapping."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    BaseModel,
    Callback,
    Checkpoint,
    EarlyStopping,
    Evaluator,
    LambdaCallback,
    Logger,
    ResumeCheckpoint,
    Tensorboard,
    Trainer,
)


def _net(tiny_net, lr=0.05, **compile_kw):
    torch.manual_seed(0)
    net = tiny_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.compile(nn.CrossEntropyLoss(), opt, **compile_kw)
    return net, opt


# ---------------------------------------------------------------- argument orders
def test_fit_and_compile_take_the_seed_s_positional_order(tiny_net, loader) -> None:
    net, opt = _net(tiny_net)
    # torch4keras: fit(train_dataloader, steps_per_epoch, epochs, callbacks, verbose)
    history = net.fit(loader(n=24, batch_size=4), 2, 3, None, 0)
    assert net.trainer.steps_per_epoch == 2 and net.trainer.epochs == 3
    assert history.epoch == [1, 2, 3] and net.trainer.global_step == 6
    # compile(loss, optimizer, scheduler, clip_grad_norm, use_amp, metrics, stateful_metrics,
    #         grad_accumulation_steps)
    net.compile(nn.CrossEntropyLoss(), opt, None, 1.0, False, ["accuracy"], None, 2)
    assert list(net.trainer.metrics) == ["accuracy"]
    assert net.trainer.clip_grad_norm == 1.0 and net.trainer.grad_accumulation_steps == 2


def test_use_amp_on_cpu_warns_and_trains_in_full_precision(tiny_net, loader) -> None:
    ref, _ = _net(tiny_net)
    ref.fit(loader(n=8), verbose=0)
    torch.manual_seed(0)
    net = tiny_net()
    with pytest.warns(UserWarning, match="use_amp=True does nothing on cpu"):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.Adam(net.parameters(), lr=0.05), use_amp=True
        )
    assert net.trainer.use_amp and net.trainer.mixed_precision is None
    net.fit(loader(n=8), verbose=0)
    for a, b in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cannot be combined with mixed_precision='bf16'"):
        net.compile(
            nn.CrossEntropyLoss(),
            torch.optim.SGD(net.parameters(), lr=0.1),
            use_amp=True,
            mixed_precision="bf16",
        )


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": -1}, ValueError, r"epochs must be an int >= 1, got -1"),
        ({"epochs": 0}, ValueError, r"epochs must be an int >= 1, got 0"),
        ({"epochs": 2.5}, TypeError, r"epochs must be an int >= 1, got 2\.5"),
        ({"epochs": True}, TypeError, r"epochs must be an int >= 1, got True"),
        ({"steps_per_epoch": 0}, ValueError, r"steps_per_epoch must be an int >= 1, got 0"),
        ({"steps_per_epoch": 1.5}, TypeError, r"steps_per_epoch must be an int >= 1"),
    ],
)
def test_bad_fit_counts_are_refused(tiny_net, loader, kwargs, error, message) -> None:
    net, _ = _net(tiny_net)
    with pytest.raises(error, match=message):
        net.fit(loader(n=8), verbose=0, **kwargs)
    assert net.trainer.global_step == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_clip_grad_norm_is_refused(tiny_net, value) -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match="clip_grad_norm must be a finite number > 0"):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), clip_grad_norm=value
        )
    with pytest.raises(TypeError, match="clip_grad_norm must be a number"):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), clip_grad_norm="1"
        )


def test_a_one_shot_generator_shorter_than_steps_per_epoch_is_named(tiny_net, data) -> None:
    net, _ = _net(tiny_net)
    x, y = data(12)
    batches = ((x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8))  # 3 batches, once
    with pytest.raises(ValueError, match=r"epoch 1, step 4 of steps_per_epoch=5.*one-shot"):
        net.fit(batches, steps_per_epoch=5, verbose=0)
    assert net.trainer.global_step == 3


# ---------------------------------------------------------------- the resume recipe
class Recorder(Callback):
    """Every batch trained (epoch, local step, global step, first sample) and every epoch end."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.epoch_ends: list[tuple] = []

    def on_batch_end(self, global_step, local_step, logs=None):
        X, _ = self.trainer.current_batch
        self.batches.append((self.trainer.epoch, local_step, global_step, float(X[0, 0])))

    def on_epoch_end(self, global_step, epoch, logs=None):
        self.epoch_ends.append((epoch, sorted(logs)))


class Saver(Callback):
    """The tutorial's recipe: weights, optimizer and steps params saved in a hook."""

    def __init__(self, model, opt, directory, hook, stop_at) -> None:
        self.model, self.opt, self.dir, self.hook, self.stop_at = (
            model,
            opt,
            directory,
            hook,
            stop_at,
        )

    def _save(self):
        self.model.save_weights(self.dir / "w.pt")
        torch.save(self.opt.state_dict(), self.dir / "opt.pt")
        self.model.save_steps_params(self.dir / "steps.pt")

    def on_batch_end(self, global_step, local_step, logs=None):
        if self.hook == "on_batch_end":
            self._save()
            if global_step == self.stop_at:
                raise KeyboardInterrupt  # the machine goes away right after the save

    def on_epoch_end(self, global_step, epoch, logs=None):
        if self.hook == "on_epoch_end":
            self._save()

    def on_epoch_begin(self, global_step, epoch, logs=None):
        if self.hook == "on_epoch_end" and global_step == self.stop_at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("hook", "stop_at", "ended"),
    [
        ("on_batch_end", 4, [0, 1, 2]),
        # stopped on an epoch's last batch: that epoch's end never ran, the next one resumes
        ("on_batch_end", 5, [0, 2]),
        ("on_batch_end", 2, [1, 2]),
        ("on_epoch_end", 6, [0, 1, 2]),
    ],
)
def test_resume_recipe_trains_every_step_once(
    tiny_net, data, tmp_path, hook, stop_at, ended
) -> None:
    x, y = data(12)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 3 batches an epoch

    ref, _ = _net(tiny_net)
    ref_rec = Recorder()
    ref.fit(loader, epochs=3, callbacks=[ref_rec], verbose=0)

    net, opt = _net(tiny_net)
    first = Recorder()
    with pytest.raises(KeyboardInterrupt):
        net.fit(loader, epochs=3, callbacks=[first, Saver(net, opt, tmp_path, hook, stop_at)])

    again, opt2 = _net(tiny_net)
    again.load_weights(tmp_path / "w.pt")
    opt2.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    again.load_steps_params(tmp_path / "steps.pt")
    second = Recorder()
    ckpt = ResumeCheckpoint(tmp_path / "ckpt")  # monitors 'loss': an empty epoch end would raise
    history = again.fit(loader, epochs=3, callbacks=[second, ckpt], verbose=0)

    trained = [b for b in first.batches if b[2] <= stop_at] + second.batches
    if hook == "on_epoch_end":
        trained = [b for b in first.batches if b[2] < stop_at] + second.batches
    assert trained == ref_rec.batches  # every step once, the same batch at each step
    assert all(keys == ["loss"] for _, keys in second.epoch_ends)  # never an empty epoch end
    assert [e for e, _ in first.epoch_ends + second.epoch_ends] == ended
    assert history.epoch == [e + 1 for e, _ in second.epoch_ends]
    assert (tmp_path / "ckpt" / "last.pt").exists()
    for a, b in zip(again.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_steps_params_reads_a_torch4keras_file(tiny_net, loader, tmp_path) -> None:
    net, _ = _net(tiny_net)
    torch.save({"resume_step": 1, "resume_epoch": 1}, tmp_path / "t4k.pt")  # 0.0.4's keys
    net.load_steps_params(tmp_path / "t4k.pt")
    rec = Recorder()
    net.fit(loader(n=8), epochs=2, callbacks=[rec], verbose=0)  # 2 batches an epoch
    assert [(e, s, g) for e, s, g, _ in rec.batches] == [(1, 1, 3)]
    torch.save({"step": 3}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match="no 'resume_epoch'"):
        net.load_steps_params(tmp_path / "bad.pt")


# ---------------------------------------------------------------- cleanup on failure
class Hooker(Callback):
    """Adds a forward hook when training begins and removes it when training ends."""

    def on_train_begin(self, logs=None):
        self.handle = self.trainer.module.register_forward_hook(lambda *a: None)

    def on_train_end(self, logs=None):
        self.error = self.trainer.train_error
        self.handle.remove()


class Spy(Callback):
    def __init__(self, logger, board) -> None:
        self.logger, self.board = logger, board
        self.files, self.writers = [], []

    def on_train_begin(self, logs=None):
        self.files.append(self.logger._file)
        self.writers.append(self.board.writer)


def test_three_failed_fits_leak_nothing(tiny_net, loader, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    net, _ = _net(tiny_net)
    logger, board = Logger(tmp_path / "log.txt"), Tensorboard(tmp_path / "tb")
    spy, hooker = Spy(logger, board), Hooker()
    failures = [
        LambdaCallback(on_batch_end=lambda g, s, logs: (_ for _ in ()).throw(RuntimeError("x"))),
        LambdaCallback(on_epoch_end=lambda g, e, logs: (_ for _ in ()).throw(KeyboardInterrupt)),
        LambdaCallback(on_train_begin=lambda logs: (_ for _ in ()).throw(OSError("disk"))),
    ]
    errors = (RuntimeError, KeyboardInterrupt, OSError)
    for failing, error in zip(failures, errors):
        with pytest.raises(error):
            net.fit(loader(n=8), callbacks=[logger, board, spy, hooker, failing], verbose=0)
        assert isinstance(hooker.error, error)  # on_train_end saw the failure
        assert not net._forward_hooks  # removed every time: no pile-up
        assert logger._file is None and board.writer is None
    assert len(spy.files) == 3 and all(f.closed for f in spy.files)
    assert all(w.all_writers is None for w in spy.writers)  # SummaryWriter.close() ran
    text = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert text.count("Training failed") == 3


def test_a_failing_on_train_end_does_not_hide_the_original_error(tiny_net, loader) -> None:
    net, _ = _net(tiny_net)
    hooker = Hooker()

    def broken(logs):
        raise ValueError("teardown bug")

    cbs = [
        LambdaCallback(on_train_end=broken),
        hooker,
        LambdaCallback(on_batch_end=lambda g, s, logs: (_ for _ in ()).throw(RuntimeError("x"))),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="x"):
            net.fit(loader(n=8), callbacks=cbs, verbose=0)
    assert any("teardown bug" in str(w.message) for w in caught)
    assert not net._forward_hooks  # the hooks after the broken one still ran


# ---------------------------------------------------------------- predict, weights
class ListIn(BaseModel):
    """A one-argument forward taking the seed's list of inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, inputs):
        a, b = inputs
        return [self.lin(a), self.lin(b) * 2]


def test_one_argument_forward_gets_the_list_and_predict_return_all(data) -> None:
    x, y = data(8)
    model = ListIn()
    model.compile(
        lambda out, t: nn.functional.cross_entropy(out[0], t),
        torch.optim.SGD(model.parameters(), lr=0.1),
    )
    model.fit([([x, x + 1], y)], verbose=0)
    out = model.predict([x, x + 1])
    assert isinstance(out, list) and len(out) == 2
    torch.testing.assert_close(model.predict([x, x + 1], return_all=1), model.lin(x + 1) * 2)
    with pytest.raises(ValueError, match=r"return_all=2.*list of 2 items"):
        model.predict([x, x], return_all=2)
    with pytest.raises(ValueError, match=r"return_all=0.*Tensor"):
        Trainer(nn.Linear(6, 3)).predict(x, return_all=0)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(6, 4)

    def variable_mapping(self):
        return {"dense.weight": "bert.encoder.w", "dense.bias": "bert.encoder.b"}


class WithBert(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.bert = Encoder()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.bert.dense(x))


def test_save_and_load_weights_with_prefix_and_mapping(tmp_path) -> None:
    torch.manual_seed(0)
    model = WithBert()
    model.save_weights(tmp_path / "own.pt")
    assert set(torch.load(tmp_path / "own.pt", weights_only=True)) == set(model.state_dict())
    # prefix='bert': bert.<key> under the name bert.variable_mapping() gives (0.2.5's rule)
    model.save_weights(tmp_path / "p.pt", prefix="bert")
    saved = torch.load(tmp_path / "p.pt", weights_only=True)
    assert set(saved) == {"bert.encoder.w", "bert.encoder.b", "head.weight", "head.bias"}
    assert torch.equal(saved["bert.encoder.w"], model.bert.dense.weight)
    fresh = WithBert()
    fresh.load_weights(tmp_path / "p.pt", prefix="bert")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    # mapping= renames module keys to file keys, and back
    model.save_weights(tmp_path / "m.pt", mapping={"head.weight": "cls.w"})
    assert "cls.w" in torch.load(tmp_path / "m.pt", weights_only=True)
    other = WithBert()
    other.load_weights(tmp_path / "m.pt", False, mapping={"head.weight": "cls.w"})
    assert torch.equal(other.head.weight, model.head.weight)
    with pytest.raises(ValueError, match="has no submodule 'roberta'"):
        model.save_weights(tmp_path / "x.pt", prefix="roberta")
    with pytest.raises(TypeError, match="Linear has no variable_mapping"):
        model.save_weights(tmp_path / "x.pt", prefix="head")


# ---------------------------------------------------------------- callbacks' seed arguments
class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


class DevF1(Evaluator):
    def evaluate(self):
        return {"dev/f1": 0.5}


def test_tensorboard_prefix_as_the_seed_writes_it(tiny_net, loader, tmp_path) -> None:
    net, _ = _net(tiny_net)
    writer = FakeWriter()
    board = Tensorboard(tmp_path, prefix="train", writer=writer)
    net.fit(loader(n=8), epochs=2, callbacks=[DevF1(monitor="dev/f1"), board], verbose=0)
    assert [(t, s) for t, _, s in writer.scalars] == [
        ("train/loss", 1),
        ("dev/f1", 1),
        ("train/loss", 2),
        ("dev/f1", 2),
    ]
    bare = FakeWriter()
    net.fit(
        loader(n=8),
        callbacks=[Tensorboard(tmp_path, prefix="", on_epoch_end_scalar_epoch=False, writer=bare)],
        verbose=0,
    )
    assert bare.scalars[0][0] == "loss" and bare.scalars[0][2] == 2  # global_step + 1


def test_early_stopping_restore_best_weights_and_step_method(tiny_net, loader) -> None:
    net, _ = _net(tiny_net)
    snaps = []
    values = iter([0.5, 0.2, 0.3, 0.4, 0.1])

    class Scores(Evaluator):
        def evaluate(self):
            snaps.append({k: v.clone() for k, v in net.state_dict().items()})
            return {"val_loss": next(values)}

    stop = EarlyStopping("val_loss", patience=2, mode="min", restore_best_weights=True)
    assert stop.restore_best  # b4t 0.1's name reads the same flag
    history = net.fit(
        loader(n=8), epochs=5, callbacks=[Scores(monitor="val_loss", mode="min"), stop], verbose=0
    )
    assert history.epoch == [1, 2, 3, 4] and stop.stopped_epoch == 3
    for key, value in net.state_dict().items():
        assert torch.equal(value, snaps[1][key])  # restored when it stopped
    per_step, _ = _net(tiny_net)
    losses = iter([3.0, 2.0, 2.5, 2.6, 1.0, 1.0])
    step_stop = EarlyStopping("fake", method="step", patience=2, mode="min")
    fake = LambdaCallback(on_batch_end=lambda g, s, logs: logs.update(fake=next(losses)))
    per_step.fit(loader(n=24), epochs=1, callbacks=[fake, step_stop], verbose=0)
    assert step_stop.stopped_epoch == 3 and per_step.trainer.global_step == 4


def test_evaluator_takes_the_seed_s_arguments(tiny_net, loader, tmp_path, capsys) -> None:
    net, _ = _net(tiny_net)
    values = iter([0.2, 0.1, 0.4, 0.4, 0.3, 0.9])

    class Scores(Evaluator):
        def evaluate(self):
            return next(values)  # a float is logged as 'perf'

    seen = []
    ev = Scores(
        "perf",
        "max",
        1,
        str(tmp_path / "w-{step}-{perf:.1f}.pt"),
        method="step",
        step_interval=2,
    )
    spy = LambdaCallback(on_batch_end=lambda g, s, logs: seen.append(logs.get("perf")))
    net.fit(loader(n=24), epochs=2, callbacks=[ev, spy], verbose=0)  # 12 steps: 6 evaluations
    assert seen[1::2] == [0.2, 0.1, 0.4, 0.4, 0.3, 0.9]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["w-12-0.9.pt", "w-2-0.2.pt", "w-6-0.4.pt", "w-8-0.4.pt"]  # ties save too
    assert ev.best_perf == 0.9
    out = capsys.readouterr().out
    assert "perf: 0.10000. best_perf: 0.20000" in out


def test_checkpoint_with_the_seed_s_path_templates(tiny_net, loader, tmp_path) -> None:
    net, opt = _net(tiny_net)
    every_epoch = Checkpoint(
        str(tmp_path / "model_{epoch}.pt"),
        optimizer_path=str(tmp_path / "opt_{epoch}.pt"),
        steps_params_path=str(tmp_path / "steps_{epoch}.pt"),
    )
    assert isinstance(every_epoch, Checkpoint) and every_epoch.method == "epoch"
    by_step = Checkpoint(
        str(tmp_path / "s" / "w_{step}_{loss:.3f}.pt"), method="step", step_interval=3
    )
    snaps = []
    keep = LambdaCallback(
        on_epoch_end=lambda g, e, logs: snaps.append(
            {k: v.clone() for k, v in net.state_dict().items()}
        )
    )
    net.fit(
        loader(n=16), epochs=2, callbacks=[every_epoch, by_step, keep], verbose=0
    )  # 4 steps/epoch
    for epoch in (1, 2):
        saved = torch.load(tmp_path / f"model_{epoch}.pt", weights_only=True)
        for key, value in snaps[epoch - 1].items():
            assert torch.equal(saved[key], value)
        steps = torch.load(tmp_path / f"steps_{epoch}.pt", weights_only=True)
        assert (steps["resume_epoch"], steps["resume_step"]) == (epoch, 0)
    assert (
        torch.load(tmp_path / "opt_2.pt", weights_only=True)["state"].keys()
        == opt.state_dict()["state"].keys()
    )
    step_files = sorted(p.name.split("_")[1] for p in (tmp_path / "s").iterdir())
    assert step_files == ["3", "6"]
    # torch4keras's Checkpoint('model.pt'): the weights file, rewritten after each epoch
    net, opt = _net(tiny_net)
    ckpt = Checkpoint(tmp_path / "model.pt")
    net.fit(loader(n=8), epochs=2, callbacks=[ckpt], verbose=0)
    assert (tmp_path / "model.pt").is_file()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, value in net.state_dict().items():
        assert torch.equal(saved[key], value), key


def test_the_run_state_reads_through_the_model_as_in_torch4keras(tiny_net, loader) -> None:
    net, opt = _net(tiny_net)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    net.compile(nn.CrossEntropyLoss(), opt, sched, grad_accumulation_steps=2)
    seen = []

    class SeedStyle(Callback):  # a torch4keras callback: everything through self.model
        def on_batch_end(self, global_step, local_step, logs=None):
            m = self.model
            seen.append((m.global_step, m.local_step, m.epoch, m.optimizer is opt))
            if m.global_step == 2:
                m.stop_training = True

    net.fit(loader(n=16), epochs=3, callbacks=[SeedStyle()], verbose=0)
    assert seen == [(0, 0, 0, True), (1, 1, 0, True), (2, 2, 0, True)]
    assert net.scheduler is sched and isinstance(net.criterion, nn.CrossEntropyLoss)
    assert net.grad_accumulation_steps == 2 and net.total_steps == 12
    assert net.steps_per_epoch == 4 and net.callbacks[-1] is net.trainer.history
    with pytest.raises(AttributeError, match="no_such"):
        net.no_such  # noqa: B018


def test_training_steps_run_in_train_mode_after_a_callback_evaluates(tiny_net, loader) -> None:
    net, _ = _net(tiny_net)
    modes = []
    evaluates = LambdaCallback(on_batch_end=lambda g, s, logs: net.eval())  # and leaves it so
    spy = LambdaCallback(on_batch_begin=lambda g, s, logs: modes.append(net.training))
    net.fit(loader(n=12), epochs=1, callbacks=[evaluates, spy], verbose=0)
    assert modes == [True, True, True]


def test_torch4keras_keyword_names_and_their_b4t_aliases(tiny_net, tmp_path) -> None:
    """``predict(train_X=...)``, ``save_weights(save_path=...)``, ``load_weights(load_path=...)``
    as torch4keras 0.0.4 spells them; b4t's ``X=`` / ``path=`` still work."""
    torch.manual_seed(0)
    net = tiny_net()
    x = torch.randn(3, 6)
    expected = net.predict(x)
    assert torch.equal(net.predict(train_X=x), expected)
    assert torch.equal(net.predict(X=x), expected)
    with pytest.raises(TypeError, match="train_X= or X=, not both"):
        net.predict(x, X=x)
    net.save_weights(save_path=tmp_path / "a.pt")
    net.save_weights(path=tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        assert set(torch.load(tmp_path / name, weights_only=True)) == set(net.state_dict())
    for kwargs in ({"load_path": tmp_path / "a.pt"}, {"path": tmp_path / "b.pt"}):
        other = tiny_net()
        other.load_weights(**kwargs)
        assert torch.equal(other.predict(x), expected)
    with pytest.raises(TypeError, match="missing the argument save_path"):
        net.save_weights()
