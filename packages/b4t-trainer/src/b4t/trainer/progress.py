"""What ``fit`` adds itself: the tqdm :class:`ProgressBar` (unless ``verbose=0``) and the
:class:`History` it returns."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from b4t.trainer.callback import Callback, Logs


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
