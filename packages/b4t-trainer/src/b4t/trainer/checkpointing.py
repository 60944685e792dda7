"""Callbacks that save during ``fit``: torch4keras's :class:`Checkpoint` (weights, optimizer
state and steps params to path templates) and b4t's :class:`ResumeCheckpoint` (a directory
of full resume checkpoints). :func:`save_to_templates` is the save both ``Checkpoint`` and
:class:`~b4t.trainer.evaluator.Evaluator` run."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch

from b4t.trainer.callback import Callback, Logs
from b4t.trainer.monitor import Monitor, is_finite_log
from b4t.trainer.state import atomic_save


def save_to_templates(
    callback: Checkpoint | Any, position: Mapping[str, int], logs: Mapping[str, Any] | None
) -> None:
    """Save what torch4keras's ``callback.checkpoint_path`` / ``optimizer_path`` /
    ``steps_params_path`` templates name (the weights, the optimizer state, the steps
    params; ``None`` skips one), formatted with ``position`` (``{'epoch': 3}`` or
    ``{'step': 300}``) and the logs' values (``{loss:.3f}``); master rank only.
    ``callback`` is a :class:`Checkpoint` or an :class:`~b4t.trainer.evaluator.Evaluator`."""
    trainer = callback.trainer
    if not trainer.is_master:
        return
    fields = {
        k: v
        for k, v in (logs or {}).items()
        if isinstance(k, str) and k.isidentifier() and k not in position
    }
    for template, write in (
        (callback.checkpoint_path, trainer.save_weights),
        (callback.optimizer_path, lambda p: atomic_save(trainer.optimizer.state_dict(), p)),
        (callback.steps_params_path, trainer.save_steps_params),
    ):
        if template is not None:
            path = Path(os.fspath(template).format(**position, **fields))
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)


def _check_file_template(name: str, value: Any) -> None:
    """A ``Checkpoint`` path names a file: not an existing directory, no trailing separator."""
    if value is None:
        return
    text = os.fspath(value)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise ValueError(
            f"Checkpoint({name}={text!r}) names a directory; Checkpoint writes one file per "
            "path (a template such as 'ckpt/model_{epoch}.pt'); for a directory of full "
            "resume checkpoints use ResumeCheckpoint(directory)"
        )


def _state_is_finite(trainer: Any, logs: Mapping[str, Any] | None) -> bool:
    """No logged value and no weight is NaN or infinite."""
    if not all(is_finite_log(v) for v in (logs or {}).values()):
        return False
    return all(bool(torch.isfinite(p).all()) for p in trainer.module.parameters())


class Checkpoint(Callback):
    """torch4keras 0.0.4's ``Checkpoint``: weights / optimizer / steps params to path templates.

    ``Checkpoint(checkpoint_path, optimizer_path=None, steps_params_path=None,
    method='epoch', step_interval=100)``: after each epoch (``method='epoch'``, paths
    formatted with ``{epoch}`` from 1 and the logs) or every ``step_interval`` steps
    (``'step'``, with ``{step}``) it saves the module's weights (through
    ``save_weights``), the optimizer's state and
    :meth:`b4t.trainer.trainer.Trainer.save_steps_params` where the paths say (master rank
    only). A path without ``{...}`` is one file, rewritten at each save. Each path names a
    file: an existing directory or a path ending in a separator is a ``ValueError`` (b4t's
    directory of full resume checkpoints is :class:`ResumeCheckpoint`).
    """

    def __init__(
        self,
        checkpoint_path: str | os.PathLike[str] | None = None,
        optimizer_path: str | os.PathLike[str] | None = None,
        steps_params_path: str | os.PathLike[str] | None = None,
        method: str = "epoch",
        step_interval: int = 100,
        **resume_options: Any,
    ) -> None:
        if resume_options:
            raise TypeError(
                f"Checkpoint got {sorted(resume_options)}: Checkpoint is torch4keras's "
                "(checkpoint_path, optimizer_path, steps_params_path, method, step_interval); "
                "b4t's directory of resume checkpoints is ResumeCheckpoint(directory, "
                "monitor=..., mode=..., top_k=..., save_last=..., every_n_steps=...)"
            )
        for name, value in (
            ("checkpoint_path", checkpoint_path),
            ("optimizer_path", optimizer_path),
            ("steps_params_path", steps_params_path),
        ):
            _check_file_template(name, value)
        if method not in ("epoch", "step"):
            raise ValueError(f"method must be 'epoch' or 'step', got {method!r}")
        if step_interval < 1:
            raise ValueError(f"step_interval must be >= 1, got {step_interval}")
        self.checkpoint_path, self.optimizer_path = checkpoint_path, optimizer_path
        self.steps_params_path = steps_params_path
        self.method, self.step_interval = method, step_interval

    def process(self, suffix: int, logs: Logs | None) -> None:
        """Save what the templates name, formatted with ``{epoch}`` / ``{step}`` (per
        ``method``) = ``suffix`` and the logs."""
        save_to_templates(self, {"epoch" if self.method == "epoch" else "step": suffix}, logs)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.method == "step" and (global_step + 1) % self.step_interval == 0:
            self.process(global_step + 1, logs)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if self.method == "epoch":
            self.process(epoch + 1, logs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        pass


class ResumeCheckpoint(Callback):
    """Full resume checkpoints in ``directory`` (master rank only): b4t's own form.

    ``ResumeCheckpoint(directory, monitor='loss', mode='auto', top_k=1, save_last=True,
    every_n_steps=None)`` writes what :meth:`b4t.trainer.trainer.Trainer.save_checkpoint` writes:

    - ``last.pt`` after each epoch (``save_last``) and every ``every_n_steps`` steps;
    - ``best.pt`` and the ``top_k`` best epochs by ``monitor``
      (``epoch{N}.pt``; ``top_k=0`` keeps none).

    A state with a non-finite logged value or weight is never saved, so after
    a NaN the files hold the last good state. Load with
    ``fit(..., resume_from=directory / 'last.pt')``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        monitor: str = "loss",
        mode: str = "auto",
        top_k: int = 1,
        save_last: bool = True,
        every_n_steps: int | None = None,
    ) -> None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.directory = Path(directory)
        self._monitor = Monitor(monitor, mode)
        self.top_k, self.save_last, self.every_n_steps = top_k, save_last, every_n_steps
        self.kept: list[tuple[float, str]] = []  # (value, file name), best first

    @property
    def last_path(self) -> Path:
        """``directory / 'last.pt'``: the latest state."""
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        """``directory / 'best.pt'``: the state with the best ``monitor`` value."""
        return self.directory / "best.pt"

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        due = self.every_n_steps and (global_step + 1) % self.every_n_steps == 0
        if due and _state_is_finite(self.trainer, logs):
            self.trainer.save_checkpoint(self.last_path)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self.process(epoch + 1, logs)

    def process(self, suffix: int, logs: Logs | None) -> None:
        """The end-of-epoch save for epoch ``suffix`` (counted from 1): ``last.pt``, and
        ``epoch{suffix}.pt`` / ``best.pt`` when ``monitor`` ranks among the ``top_k``."""
        if not _state_is_finite(self.trainer, logs):
            return
        if self.save_last:
            self.trainer.save_checkpoint(self.last_path)
        if not self.top_k:
            return
        value = self._monitor.value(logs, "Checkpoint")
        reverse = self._monitor.mode == "max"
        if len(self.kept) >= self.top_k:
            worst = self.kept[-1][0]
            if (value <= worst) if reverse else (value >= worst):
                return
        name = f"epoch{suffix}.pt"
        if not self.kept or self._monitor.improved(value):
            self._monitor.best = value
            self.trainer.save_checkpoint(self.best_path)
        self.trainer.save_checkpoint(self.directory / name)
        self.kept.append((value, name))
        self.kept.sort(key=lambda item: item[0], reverse=reverse)
        for _, dropped in self.kept[self.top_k :]:
            if self.trainer.is_master:
                (self.directory / dropped).unlink(missing_ok=True)
        del self.kept[self.top_k :]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "kept": [list(item) for item in self.kept]}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        self._monitor.best = state["best"]
        self.kept = [(float(v), str(n)) for v, n in state["kept"]]
