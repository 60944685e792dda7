"""Callbacks that write the logs somewhere: a text file (:class:`Logger`) or TensorBoard
(:class:`Tensorboard`)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from b4t.trainer.callback import Callback, Logs


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
