"""Callbacks that stop a run: :class:`EarlyStopping` (a watched value stopped improving) and
:class:`TerminateOnNaN` (a logged value is NaN or infinite)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import torch

from b4t.trainer.callback import Callback, Logs
from b4t.trainer.monitor import Monitor, PeriodicCheck, is_finite_log


class EarlyStopping(PeriodicCheck):
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
        self._monitor = Monitor(monitor, mode, min_delta)
        self.patience, self.verbose, self.method = patience, verbose, method
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights or restore_best)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self._reset()

    @property
    def restore_best(self) -> bool:
        """b4t 0.1's name for ``restore_best_weights``."""
        return self.restore_best_weights

    def _reset(self) -> None:
        self.wait = 0
        self._monitor.reset(self.baseline)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not self.trainer.global_step:  # a fresh run (a resumed one keeps its state)
            self._reset()
            self.stopped_epoch = self.best_epoch = None
            self.best_weights = None

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


class TerminateOnNaN(Callback):
    """Stop training as soon as a logged batch value (the loss) is NaN or infinite."""

    def __init__(self) -> None:
        self.stopped_step: int | None = None

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        bad = [k for k, v in (logs or {}).items() if not is_finite_log(v)]
        if bad:
            self.stopped_step = global_step
            self.trainer.stop_training = True
            if self.trainer.is_master:
                print(f"TerminateOnNaN: non-finite {bad} at step {global_step}; stopping")
