"""The built-in callbacks.

``ProgressBar`` and ``History`` are added by ``fit`` itself (the bar unless
``verbose=0``). The others are passed in ``fit(callbacks=[...])``; they run
in list order, so put an ``Evaluator`` before the ``EarlyStopping`` or
``Checkpoint`` that monitors its values.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch

from b4t.trainer.callback import HOOK_NAMES, Callback, Logs
from b4t.trainer.ema import ExponentialMovingAverage
from b4t.trainer.state import atomic_save


def _finite(value: Any) -> bool:
    return not isinstance(value, (int, float)) or math.isfinite(value)


def _format_logs(logs: Mapping[str, Any]) -> dict[str, str]:
    return {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in logs.items()}


class ProgressBar(Callback):
    """A tqdm bar per epoch showing the running mean of the loss and metrics.

    The bar is redrawn at most every ``interval`` seconds, so its cost per
    step is a clock read. Only the master rank shows it.
    """

    def __init__(self, interval: float = 0.5, file: Any = None) -> None:
        self.interval = interval
        self.file = file
        self.bar: Any = None
        self._pending = 0
        self._last = 0.0

    def _open(self) -> None:
        from tqdm.auto import tqdm

        trainer = self.trainer
        self.bar = tqdm(
            total=trainer.steps_per_epoch,
            initial=trainer.local_step,
            desc=f"Epoch {trainer.epoch + 1}/{trainer.epochs}",
            file=self.file if self.file is not None else sys.stderr,
            disable=not trainer.is_master,
            dynamic_ncols=True,
            leave=True,
        )
        self._last = time.monotonic()

    def _running_means(self) -> dict[str, str]:
        return _format_logs(self.trainer.epoch_totals.running_means())

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.trainer.local_step:  # resumed mid-epoch: no on_epoch_begin for this one
            self._open()

    def on_epoch_begin(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self._close()
        self._open()

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            if self.bar is None:
                self._open()
            self.bar.set_postfix(self._running_means(), refresh=False)
            self.bar.update(self._pending)
            self._pending = 0
            self._last = now

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if self.bar is None:
            self._open()
        self.bar.set_postfix(_format_logs(logs or {}), refresh=False)
        self._close()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            if self._pending:
                self.bar.update(self._pending)
            self.bar.close()
            self.bar = None
            self._pending = 0


class History(Callback):
    """Per-epoch logs: ``history.history['loss'][e]``; ``history.epoch`` lists the epochs,
    counted from 1 as torch4keras 0.0.4 does."""

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[Any]] = {}

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch + 1)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}


class Logger(Callback):
    """Write the logs to a text file: one line per epoch and one every ``interval`` steps.

    torch4keras 0.0.4's arguments: ``mode`` opens the file (``'a'`` appends,
    ``'w'`` starts it afresh at the first ``fit``, later fits append),
    ``separator`` joins the fields, ``verbosity`` 0/1 writes, 2 writes nothing
    (0.2.5 logs at INFO level), ``name`` names the lines' source. Lines read
    ``[time][name][INFO] epoch=1<sep>loss=0.12345``; ``size`` is left out. The file
    is opened when training begins and closed when it ends (also when ``fit``
    fails). Only the master rank writes.
    """

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        interval: int = 10,
        mode: str = "a",
        separator: str = "\t",
        verbosity: int = 1,
        name: str | None = None,
    ) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' or 'w', got {mode!r}")
        if verbosity not in (0, 1, 2):
            raise ValueError(f"verbosity must be 0, 1 or 2, got {verbosity!r}")
        self.path = Path(log_path)
        self.interval = interval
        self.mode, self.sep, self.verbosity = mode, separator, verbosity
        self.name = name or "b4t.trainer"
        self._opened_before = False
        self._file: Any = None

    def _write(self, message: str) -> None:
        if self._file is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._file.write(f"[{stamp}][{self.name}][INFO] {message}\n")
        self._file.flush()

    def _fields(self, head: str, logs: Mapping[str, Any] | None) -> str:
        parts = [head]
        for key, value in (logs or {}).items():
            if key == "size":
                continue
            parts.append(f"{key}={value:.5f}" if isinstance(value, float) else f"{key}={value}")
        return self.sep.join(parts)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.trainer.is_master and self.verbosity < 2:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            mode = "a" if self._opened_before else self.mode
            self._file = open(self.path, mode, encoding="utf-8")  # noqa: SIM115
            self._opened_before = True
            self._write("Start Training".center(40, "="))

    def on_epoch_begin(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self._write(f"Epoch {epoch + 1}".center(40, "="))

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.interval and (global_step + 1) % self.interval == 0:
            self._write(self._fields(f"step={global_step + 1}", logs))

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self._write(self._fields(f"epoch={epoch + 1}", logs))

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            failed = getattr(self.trainer, "train_error", None)
            self._write(
                f"Training failed: {failed!r}" if failed else "Finish Training".center(40, "=")
            )
            self._file.close()
            self._file = None


class Tensorboard(Callback):
    """Write logs as TensorBoard scalars (needs ``pip install 'b4t-trainer[tensorboard]'``).

    torch4keras 0.0.4's arguments: ``method='epoch'`` writes the epoch logs at
    step ``epoch + 1`` (``global_step + 1`` with ``on_epoch_end_scalar_epoch=False``);
    ``'step'`` writes batch logs every ``interval`` steps at ``global_step + 1``.
    A key is written as ``{prefix}/{key}`` (``train/loss``), or as it is when it
    holds a ``/`` already (``dev/f1``) or the prefix is empty; ``size`` is left
    out. ``writer`` (b4t) may be any object with ``add_scalar(tag, value, step)``
    (and optionally ``close``); without one, a SummaryWriter is opened when
    training begins and closed when it ends (also when ``fit`` fails).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        method: str = "epoch",
        interval: int = 10,
        prefix: str = "train",
        on_epoch_end_scalar_epoch: bool = True,
        writer: Any = None,
    ) -> None:
        if method not in ("epoch", "step"):
            raise ValueError(f"method must be 'epoch' or 'step', got {method!r}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.log_dir = os.fspath(log_dir)
        self.method, self.interval = method, interval
        prefix = prefix.strip().rstrip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.on_epoch_end_scalar_epoch = on_epoch_end_scalar_epoch
        self.writer = writer
        self._owns_writer = False

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.writer is not None or not self.trainer.is_master:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "the Tensorboard callback needs the tensorboard package: "
                "pip install 'b4t-trainer[tensorboard]'"
            ) from exc
        self.writer = SummaryWriter(log_dir=self.log_dir)
        self._owns_writer = True

    def process(self, iteration: int, logs: Mapping[str, Any] | None) -> None:
        """Write ``logs`` as scalars at step ``iteration`` (torch4keras's name)."""
        self._write(logs, iteration)

    def _write(self, logs: Mapping[str, Any] | None, step: int) -> None:
        if self.writer is None:
            return
        for key, value in (logs or {}).items():
            if key != "size" and isinstance(value, (int, float)):
                tag = key if "/" in key else f"{self.prefix}{key}"
                self.writer.add_scalar(tag, value, step)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.method == "step" and (global_step + 1) % self.interval == 0:
            self._write(logs, global_step + 1)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if self.method == "epoch":
            self._write(logs, epoch + 1 if self.on_epoch_end_scalar_epoch else global_step + 1)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.writer is None:
            return
        if self._owns_writer:  # ours: close the event file; a later fit opens a new one
            self.writer.close()
            self.writer, self._owns_writer = None, False
        elif hasattr(self.writer, "flush"):
            self.writer.flush()


class _Monitor:
    """Track the best value of a logged quantity (``mode`` 'min' or 'max')."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode == "auto":
            mode = "max" if any(w in monitor for w in ("acc", "f1", "auc", "perf")) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs: Mapping[str, Any] | None, who: str) -> float:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"{who} monitors {self.monitor!r}, which is not in the logs: {sorted(logs)}"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` checks.

    torch4keras 0.0.4's arguments and order: ``method='epoch'`` checks at each
    epoch end, ``'step'`` after each batch (``patience`` then counts steps);
    ``baseline`` is the value to beat at the start; ``restore_best_weights=True``
    loads the best weights back when it stops (``restore_best`` is b4t 0.1's
    name for it). ``mode='auto'`` maximises names holding acc, f1, auc or perf.
    """

    def __init__(
        self,
        monitor: str = "loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        method: str = "epoch",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        restore_best: bool | None = None,
    ) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if method not in ("epoch", "step"):
            raise ValueError(f"method must be 'epoch' or 'step', got {method!r}")
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience, self.verbose, self.method = patience, verbose, method
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights or restore_best)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self._reset()

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @property
    def best(self) -> float:
        return self._monitor.best

    @property
    def restore_best(self) -> bool:  # b4t 0.1's name
        return self.restore_best_weights

    def _reset(self) -> None:
        self.wait = 0
        if self.baseline is not None:
            self._monitor.best = float(self.baseline)
        else:
            self._monitor.best = math.inf if self._monitor.mode == "min" else -math.inf

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not self.trainer.global_step:  # a fresh run (a resumed one keeps its state)
            self._reset()
            self.stopped_epoch = self.best_epoch = None
            self.best_weights = None

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.method == "step":
            self.process(global_step, logs)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if self.method == "epoch":
            self.process(epoch, logs)

    def get_monitor_value(self, logs: Mapping[str, Any] | None) -> float:
        """The monitored value in ``logs``; a ``KeyError`` naming the keys there are when it
        is missing (torch4keras warns and returns ``None``: see MIGRATION.md)."""
        return self._monitor.value(logs, "EarlyStopping")

    def process(self, iteration: int, logs: Logs | None = None) -> None:
        """One check at ``iteration`` (an epoch, or a step with ``method='step'``): keep the
        best, count the wait, stop (and restore the best weights) after ``patience``."""
        value = self.get_monitor_value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, iteration, 0
            if self.restore_best_weights:
                self.best_weights = {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in self.trainer.module.state_dict().items()
                }
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = iteration
            self.trainer.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose and self.trainer.is_master:
                    print("Restoring model weights from the end of the best iteration")
                self.trainer.module.load_state_dict(self.best_weights)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch is not None and self.verbose and self.trainer.is_master:
            print(f"Iteration {self.stopped_epoch + 1}: early stopping")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self._monitor.best,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        self._monitor.best = state["best"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best_epoch, self.best_weights = state["best_epoch"], state["best_weights"]


def _state_is_finite(trainer: Any, logs: Mapping[str, Any] | None) -> bool:
    if not all(_finite(v) for v in (logs or {}).values()):
        return False
    return all(bool(torch.isfinite(p).all()) for p in trainer.module.parameters())


_SEED_CHECKPOINT_KEYS = frozenset(
    {"optimizer_path", "steps_params_path", "method", "step_interval"}
)


def _is_template(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and "{" in os.fspath(value)


_WEIGHTS_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt"})


def _is_weights_file(value: Any) -> bool:
    """A path naming a weights file (``'model.pt'``): torch4keras's ``Checkpoint(path)``."""
    return (
        isinstance(value, (str, os.PathLike))
        and Path(os.fspath(value)).suffix.lower() in _WEIGHTS_SUFFIXES
    )


class Checkpoint(Callback):
    """torch4keras 0.0.4's ``Checkpoint``: weights / optimizer / steps params to path templates.

    ``Checkpoint(checkpoint_path, optimizer_path=None, steps_params_path=None,
    method='epoch', step_interval=100)``: after each epoch (``method='epoch'``, paths
    formatted with ``{epoch}`` from 1 and the logs) or every ``step_interval`` steps
    (``'step'``, with ``{step}``) it saves ``module.state_dict()``, the optimizer's state
    and :meth:`Trainer.save_steps_params` where the templates say (master rank only).

    b4t's form, ``Checkpoint(directory, monitor='loss', mode='auto', top_k=1,
    save_last=True, every_n_steps=None)``, saves full resume checkpoints instead:
    ``last.pt`` after each epoch (``save_last``) and every ``every_n_steps`` steps,
    ``best.pt`` and the ``top_k`` best epochs by ``monitor`` (``epoch{N}.pt``); a state
    with a non-finite logged value or weight is never saved. Load with
    ``fit(..., resume_from=directory / 'last.pt')``. ``Checkpoint(...)`` builds that one
    when its first argument is a directory (not a weights file such as ``'model.pt'``,
    nor a template holding ``{``) and no torch4keras keyword is given.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Checkpoint:
        if cls is Checkpoint and not (
            _SEED_CHECKPOINT_KEYS & kwargs.keys()
            or any(_is_template(a) for a in args[:3])
            or (args and _is_weights_file(args[0]))
            or any(_is_template(kwargs.get(k)) for k in ("checkpoint_path", "directory"))
            or "checkpoint_path" in kwargs
            or (args and args[0] is None)
        ):
            return super().__new__(_DirectoryCheckpoint)
        return super().__new__(cls)

    def __init__(
        self,
        checkpoint_path: str | os.PathLike[str] | None = None,
        optimizer_path: str | os.PathLike[str] | None = None,
        steps_params_path: str | os.PathLike[str] | None = None,
        method: str = "epoch",
        step_interval: int = 100,
    ) -> None:
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
        key = "epoch" if self.method == "epoch" else "step"
        trainer = self.trainer
        fields = {k: v for k, v in (logs or {}).items() if k.isidentifier() and k != key}
        for template, write in (
            (self.checkpoint_path, trainer.save_weights),
            (self.optimizer_path, lambda p: atomic_save(trainer.optimizer.state_dict(), p)),
            (self.steps_params_path, trainer.save_steps_params),
        ):
            if template is not None and trainer.is_master:
                path = Path(os.fspath(template).format(**{key: suffix}, **fields))
                path.parent.mkdir(parents=True, exist_ok=True)
                write(path)

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


class _DirectoryCheckpoint(Checkpoint):
    """b4t's ``Checkpoint(directory, ...)``: full resume checkpoints in ``directory`` (master
    rank only).

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
        self._monitor = _Monitor(monitor, mode)
        self.top_k, self.save_last, self.every_n_steps = top_k, save_last, every_n_steps
        self.kept: list[tuple[float, str]] = []  # (value, file name), best first

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
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


class Evaluator(Callback):
    """Base for validation callbacks: override ``evaluate() -> dict`` (or a float).

    torch4keras 0.0.4's arguments: ``Evaluator(monitor='perf', mode='max', verbose=1,
    checkpoint_path=None, optimizer_path=None, steps_params_path=None, method='epoch',
    step_interval=100)``. At each epoch end (or every ``step_interval`` steps with
    ``method='step'``) the results are added to the logs (so later callbacks can
    monitor them; a float result is logged as ``perf``); when ``monitor`` is at least as
    good as the best so far, the weights are saved to ``checkpoint_path`` (formatted
    with ``{epoch}`` / ``{step}`` and the logs), the optimizer state to
    ``optimizer_path`` and the steps params to ``steps_params_path``. ``verbose``
    prints the results and the best value. b4t 0.1's keywords still work:
    ``save_path`` (a fixed weights path) and ``interval`` (steps between evaluations).
    """

    def __init__(
        self,
        monitor: str = "perf",
        mode: str = "max",
        verbose: int = 1,
        checkpoint_path: str | os.PathLike[str] | None = None,
        optimizer_path: str | os.PathLike[str] | None = None,
        steps_params_path: str | os.PathLike[str] | None = None,
        method: str = "epoch",
        step_interval: int = 100,
        save_path: str | os.PathLike[str] | None = None,
        interval: int | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"Evaluator mode must be 'max' or 'min', got {mode!r}")
        if method not in ("epoch", "step"):
            raise ValueError(f"method must be 'epoch' or 'step', got {method!r}")
        if step_interval < 1 or (interval is not None and interval < 1):
            raise ValueError("step_interval / interval must be >= 1")
        self._monitor = _Monitor(monitor, mode)
        self.verbose = verbose
        self.checkpoint_path, self.optimizer_path = checkpoint_path, optimizer_path
        self.steps_params_path = steps_params_path
        self.save_path = save_path
        if interval is None and method == "step":
            interval = step_interval
        self.interval = interval
        self.results: dict[str, float] = {}

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @property
    def best(self) -> float:
        return self._monitor.best

    @property
    def best_perf(self) -> float:  # torch4keras's name
        return self._monitor.best

    def evaluate(self) -> Mapping[str, float] | float:
        """Return validation metrics; override this."""
        raise NotImplementedError(f"{type(self).__name__} must override evaluate()")

    def _at_least_as_good(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        best = self._monitor.best
        return value >= best if self._monitor.mode == "max" else value <= best

    def _save(self, key: str, suffix: int, logs: Mapping[str, Any]) -> None:
        trainer = self.trainer
        fields = {k: v for k, v in logs.items() if isinstance(k, str) and k.isidentifier()}
        for template, write in (
            (self.checkpoint_path, trainer.save_weights),
            (
                self.optimizer_path,
                lambda p: trainer.is_master and atomic_save(trainer.optimizer.state_dict(), p),
            ),
            (self.steps_params_path, trainer.save_steps_params),
        ):
            if template is not None:
                path = Path(os.fspath(template).format(**{key: suffix}, **fields))
                path.parent.mkdir(parents=True, exist_ok=True)
                write(path)
        if self.save_path is not None:
            trainer.save_weights(self.save_path)

    def _run(self, logs: Logs | None, key: str, suffix: int) -> None:
        results = self.evaluate()
        if not isinstance(results, Mapping):
            results = {"perf": float(results)}
        self.results = dict(results)
        if logs is not None:
            logs.update(self.results)
        if self._monitor.monitor in self.results:
            value = float(self.results[self._monitor.monitor])
            if self._at_least_as_good(value):
                self._monitor.best = value
                self._save(key, suffix, logs if logs is not None else self.results)
        if self.verbose and self.trainer.is_master:
            shown = ", ".join(
                f"{k}: {v:.5f}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in self.results.items()
            )
            print(f"{shown}. best_{self._monitor.monitor}: {self._monitor.best:.5f}")

    def process(self, suffix: int, logs: Logs | None) -> None:
        """Evaluate, add the results to ``logs``, and save when ``monitor`` is at least as
        good as the best so far (``suffix`` fills ``{epoch}`` / ``{step}``)."""
        self._run(logs, "step" if self.interval else "epoch", suffix)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.interval and (global_step + 1) % self.interval == 0:
            self._run(logs, "step", global_step + 1)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if not self.interval:
            self._run(logs, "epoch", epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        self._monitor.best = state["best"]


class TerminateOnNaN(Callback):
    """Stop training as soon as a logged batch value (the loss) is NaN or infinite."""

    def __init__(self) -> None:
        self.stopped_step: int | None = None

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        bad = [k for k, v in (logs or {}).items() if not _finite(v)]
        if bad:
            self.stopped_step = global_step
            self.trainer.stop_training = True
            if self.trainer.is_master:
                print(f"TerminateOnNaN: non-finite {bad} at step {global_step}; stopping")


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=fn, ...)``.

    torch4keras 0.0.4's named hooks, plus any other hook of :data:`HOOK_NAMES`
    (``on_train_step_end``, ``on_after_backward``) as a keyword; other keywords become
    attributes of the callback, as in torch4keras. A keyword starting with ``on_`` that
    names no hook is an error (a typo would silently never run).
    """

    def __init__(
        self,
        on_epoch_begin: Callable[..., None] | None = None,
        on_epoch_end: Callable[..., None] | None = None,
        on_batch_begin: Callable[..., None] | None = None,
        on_batch_end: Callable[..., None] | None = None,
        on_train_begin: Callable[..., None] | None = None,
        on_train_end: Callable[..., None] | None = None,
        on_dataloader_end: Callable[..., None] | None = None,
        **kwargs: Any,
    ) -> None:
        named = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_batch_begin": on_batch_begin,
            "on_batch_end": on_batch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_dataloader_end": on_dataloader_end,
        }
        hooks = {k: v for k, v in named.items() if v is not None}
        unknown = sorted(k for k in kwargs if k.startswith("on_") and k not in HOOK_NAMES)
        if unknown:
            raise ValueError(f"unknown hook(s) {unknown}; hooks are {HOOK_NAMES}")
        hooks.update({k: kwargs.pop(k) for k in list(kwargs) if k in HOOK_NAMES})
        for name, fn in hooks.items():
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)
        self.__dict__.update(kwargs)
        self._defined = frozenset(hooks)

    def defines(self, hook: str) -> bool:
        if hook not in HOOK_NAMES:
            raise ValueError(f"unknown hook {hook!r}; hooks are {HOOK_NAMES}")
        return hook in self._defined


class EMA(Callback):
    """Keep an :class:`ExponentialMovingAverage` of the weights, stepped after each optimizer step.

    ``self.ema.apply_ema_weights()`` / ``restore_raw_weights()`` swap the
    averages in and out (e.g. inside an Evaluator); ``apply_at_end=True``
    leaves the averaged weights in the model when training ends.
    """

    def __init__(self, decay: float = 0.999, apply_at_end: bool = False) -> None:
        self.decay = decay
        self.apply_at_end = apply_at_end
        self.ema: ExponentialMovingAverage | None = None

    def set_trainer(self, trainer: Any) -> None:
        super().set_trainer(trainer)
        if self.ema is None or self.ema.model is not trainer.module:
            self.ema = ExponentialMovingAverage(trainer.module, self.decay)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if (global_step + 1) % self.trainer.grad_accumulation_steps == 0:
            assert self.ema is not None
            self.ema.step()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.apply_at_end and self.ema is not None:
            self.ema.apply_ema_weights()

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict() if self.ema is not None else {}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        if state and self.ema is not None:
            self.ema.load_state_dict(state)
