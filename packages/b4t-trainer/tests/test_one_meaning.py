"""One meaning per name: ``Checkpoint`` is torch4keras's path-template checkpoint and
``ResumeCheckpoint`` b4t's directory of resume checkpoints; ``BaseModel``'s trainer
methods are ``Trainer``'s (one signature); ``save_weights`` / ``load_weights`` take
``mapping`` by keyword only; the resume state is typed."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from b4t.trainer import (
    BaseModel,
    Checkpoint,
    EarlyStopping,
    ReduceLROnPlateau,
    ResumeCheckpoint,
    Trainer,
)
from b4t.trainer.monitor import PeriodicCheck
from b4t.trainer.persistence import ResumePoint


def _compiled(tiny_net):
    net = tiny_net()
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    return net


def test_checkpoint_is_always_torch4keras_s_path_checkpoint(tiny_net, loader, tmp_path) -> None:
    """A path without ``{`` and without a weights suffix was b4t's directory form; now it is
    the file torch4keras writes, rewritten after each epoch."""
    net = _compiled(tiny_net)
    ckpt = Checkpoint(tmp_path / "runs" / "model")
    assert type(ckpt) is Checkpoint
    net.fit(loader(n=8), epochs=2, callbacks=[ckpt], verbose=0)
    saved = torch.load(tmp_path / "runs" / "model", weights_only=True)
    for key, value in net.state_dict().items():
        assert torch.equal(saved[key], value), key


def test_checkpoint_refuses_a_directory_and_b4t_s_resume_keywords(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"names a directory.*ResumeCheckpoint"):
        Checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"steps_params_path=.*names a directory"):
        Checkpoint("w.pt", steps_params_path="ckpt/")
    with pytest.raises(TypeError, match=r"\['every_n_steps', 'top_k'\].*ResumeCheckpoint"):
        Checkpoint(tmp_path / "ckpt", top_k=2, every_n_steps=5)


def test_resume_checkpoint_is_its_own_class(tiny_net, loader, tmp_path) -> None:
    resume = ResumeCheckpoint(tmp_path / "dir", top_k=1)
    assert not isinstance(resume, Checkpoint)
    assert resume.last_path == tmp_path / "dir" / "last.pt"
    net = _compiled(tiny_net)
    net.fit(loader(n=8), epochs=1, callbacks=[resume], verbose=0)
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [
        "best.pt",
        "epoch1.pt",
        "last.pt",
    ]


def test_base_model_methods_have_the_trainer_s_signatures() -> None:
    for name in ("compile", "fit", "evaluate", "save_checkpoint", "load_checkpoint"):
        ours, theirs = getattr(BaseModel, name), getattr(Trainer, name)
        assert inspect.signature(ours) == inspect.signature(theirs), name
        assert ours.__doc__ == theirs.__doc__


def test_compile_through_the_model_reaches_the_trainer(tiny_net) -> None:
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.compile(nn.MSELoss(), opt, None, 1.5, False, ["mae"], "mae", 2)
    trainer = net.trainer
    assert trainer.compiled and trainer.optimizer is opt and trainer.clip_grad_norm == 1.5
    assert list(trainer.metrics) == ["mae"] and trainer.stateful_metrics == {"mae"}
    assert trainer.grad_accumulation_steps == 2
    with pytest.raises(TypeError, match="unexpected keyword"):
        net.compile(nn.MSELoss(), opt, clip_norm=1.0)


def test_trainer_weights_take_mapping_by_keyword_only(tiny_net, tmp_path) -> None:
    net = tiny_net()
    mapping = {"fc2.weight": "head.w"}
    with pytest.raises(TypeError):
        net.trainer.save_weights(tmp_path / "w.pt", None, mapping)
    with pytest.raises(TypeError):
        net.save_weights(tmp_path / "w.pt", None, mapping)
    net.save_weights(tmp_path / "w.pt", mapping=mapping)
    assert "head.w" in torch.load(tmp_path / "w.pt", weights_only=True)


def test_the_resume_point_is_typed(tiny_net, loader, tmp_path) -> None:
    with pytest.raises(TypeError, match="global_stpe"):
        ResumePoint(epoch=0, local_step=1, global_stpe=3)  # type: ignore[call-arg]
    point = ResumePoint(epoch=1, local_step=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.epoch = 3  # type: ignore[misc]
    net = _compiled(tiny_net)
    net.fit(loader(n=8), epochs=1, verbose=0)
    net.save_steps_params(tmp_path / "steps.pt")
    net.load_steps_params(tmp_path / "steps.pt")
    pending = net.trainer.persistence.resume
    assert pending == ResumePoint(
        epoch=1, local_step=0, global_step=2, schedulers=[], skip_trained=True
    )


def test_early_stopping_and_reduce_lr_share_one_dispatch() -> None:
    """Both run ``process`` once per epoch or once per step, through ``PeriodicCheck``."""
    for cls in (EarlyStopping, ReduceLROnPlateau):
        assert issubclass(cls, PeriodicCheck)
        assert "on_batch_end" not in vars(cls) and "on_epoch_end" not in vars(cls)
    seen = []

    class Probe(EarlyStopping):
        def process(self, iteration, logs=None):
            seen.append((self.method, iteration))

    by_step, by_epoch = Probe(method="step"), Probe()
    for cb in (by_step, by_epoch):
        cb.on_batch_end(7, 3, {"loss": 1.0})
        cb.on_epoch_end(7, 2, {"loss": 1.0})
    assert seen == [("step", 7), ("epoch", 2)]
