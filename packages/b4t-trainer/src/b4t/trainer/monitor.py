"""Watching one logged value: :class:`Monitor` keeps its best, :class:`MonitorCallback` is
the base of the callbacks that watch one (``monitor``, ``best``), and :class:`PeriodicCheck`
runs their ``process`` once per epoch or once per step, as ``method`` says."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from b4t.trainer.callback import Callback, Logs


def is_finite_log(value: Any) -> bool:
    """False only for a logged number that is NaN or infinite."""
    return not isinstance(value, (int, float)) or math.isfinite(value)


class Monitor:
    """Track the best value of a logged quantity (``mode`` 'min' or 'max'; 'auto' maximises
    names holding acc, f1, auc or perf), improved by more than ``min_delta``."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode == "auto":
            mode = "max" if any(w in monitor for w in ("acc", "f1", "auc", "perf")) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def reset(self, baseline: float | None = None) -> None:
        """Forget the best: back to ``baseline``, or to the worst value of the mode."""
        if baseline is not None:
            self.best = float(baseline)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs: Mapping[str, Any] | None, who: str) -> float:
        """The monitored value in ``logs``; a ``KeyError`` naming ``who`` and the keys there
        are when it is missing."""
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"{who} monitors {self.monitor!r}, which is not in the logs: {sorted(logs)}"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best by more than ``min_delta`` (never for NaN/inf)."""
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class MonitorCallback(Callback):
    """Base of the callbacks that watch one logged value through a :class:`Monitor`."""

    _monitor: Monitor

    @property
    def monitor(self) -> str:
        """The name of the watched log value."""
        return self._monitor.monitor

    @property
    def best(self) -> float:
        """The best value seen so far."""
        return self._monitor.best


class PeriodicCheck(MonitorCallback):
    """A :class:`MonitorCallback` whose :meth:`process` runs at each epoch end
    (``method='epoch'``, with the epoch) or after each batch (``'step'``, with the global
    step), as torch4keras's EarlyStopping and ReduceLROnPlateau do."""

    method: str = "epoch"

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        if self.method == "step":
            self.process(global_step, logs)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if self.method == "epoch":
            self.process(epoch, logs)

    def process(self, iteration: int, logs: Logs | None = None) -> None:
        """One check at ``iteration`` (an epoch, or a step with ``method='step'``)."""
        raise NotImplementedError(f"{type(self).__name__} must override process()")
