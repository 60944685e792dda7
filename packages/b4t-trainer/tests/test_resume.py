"""Checkpoints: atomic writes, bit-identical resume mid-epoch, the manual recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    EMA,
    Callback,
    ResumeCheckpoint,
    atomic_save,
    get_linear_schedule_with_warmup,
    seed_everything,
)
from b4t.trainer import state as state_module


class Killed(Exception):
    pass


class KillAt(Callback):
    """Raise after the batch ``step`` (a crash without a clean shutdown)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, global_step, local_step, logs=None):
        if global_step == self.step:
            raise Killed


def _run(tiny_net, data, tmp_path, kill_at=None, resume=False, generator=False):
    seed_everything(0 if not resume else 123)  # a resumed run must not depend on the seed
    net = tiny_net(dropout=0.3)
    x, y = data(20)
    gen = torch.Generator().manual_seed(7) if generator else None
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.compile(
        nn.CrossEntropyLoss(),
        opt,
        scheduler=get_linear_schedule_with_warmup(opt, 2, 12),
        grad_accumulation_steps=2,
        metrics=["accuracy"],
    )
    # Saving every step (fsync each time) only where a kill is coming keeps the test fast.
    every = 1 if kill_at is not None else None
    callbacks: list[Callback] = [EMA(0.9), ResumeCheckpoint(tmp_path, every_n_steps=every, top_k=2)]
    if kill_at is not None:
        callbacks.append(KillAt(kill_at))
    resume_from = tmp_path / "last.pt" if resume else None
    history = net.fit(
        loader,
        epochs=3,
        steps_per_epoch=7,
        callbacks=callbacks,
        verbose=0,
        resume_from=resume_from,
    )
    return net, history, callbacks[0]


@pytest.mark.parametrize(("kill_at", "generator"), [(9, False), (12, True), (13, False)])
def test_kill_mid_epoch_and_resume_is_bit_identical(tiny_net, data, tmp_path, kill_at, generator):
    ref, ref_history, ref_ema = _run(tiny_net, data, tmp_path / "ref", generator=generator)
    with pytest.raises(Killed):
        _run(tiny_net, data, tmp_path / "run", kill_at=kill_at, generator=generator)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["global_step"] == kill_at  # the state after batch kill_at - 1
    assert (saved["grads"] is not None) == (kill_at % 2 == 1)  # mid-accumulation
    net, history, ema = _run(tiny_net, data, tmp_path / "run", resume=True, generator=generator)
    for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
    for name, shadow in ema.ema.shadow.items():
        assert torch.equal(shadow, ref_ema.ema.shadow[name]), name
    assert history.history == ref_history.history
    assert net.trainer.global_step == 21


def test_atomic_save_keeps_the_old_file_when_a_write_crashes(tmp_path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    atomic_save({"v": torch.tensor(1)}, target)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(state_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    seed_everything(3)
    saved = state_module.get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(4)
    state_module.set_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_manual_recipe_save_weights_steps_params_and_optimizer(tiny_net, data, tmp_path) -> None:
    x, y = data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)

    def build():
        torch.manual_seed(0)
        net = tiny_net()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        net.compile(nn.CrossEntropyLoss(), opt)
        return net, opt

    ref, _ = build()
    ref.fit(loader, epochs=3, verbose=0)

    net, opt = build()
    net.fit(loader, epochs=2, verbose=0)
    net.save_weights(tmp_path / "w.pt")
    net.save_steps_params(tmp_path / "steps.pt")
    torch.save(opt.state_dict(), tmp_path / "opt.pt")

    net2, opt2 = build()
    net2.load_weights(tmp_path / "w.pt")
    opt2.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    params = net2.load_steps_params(tmp_path / "steps.pt")
    assert (params["resume_epoch"], params["resume_step"], params["global_step"]) == (2, 0, 8)
    history = net2.fit(loader, epochs=3, verbose=0)
    assert history.epoch == [3]
    assert net2.trainer.global_step == 12
    for a, b in zip(net2.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loading_a_non_checkpoint_names_the_file(tiny_net, tmp_path) -> None:
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    net.save_weights(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt is not a b4t trainer checkpoint"):
        net.load_checkpoint(tmp_path / "weights.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        net.load_checkpoint(tmp_path / "missing.pt")
