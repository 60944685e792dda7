"""The base of validation callbacks: :class:`Evaluator` (torch4keras 0.0.4's), which adds
its results to the logs and saves when the watched value is at least as good as before."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from b4t.trainer.callback import Logs
from b4t.trainer.checkpointing import save_to_templates
from b4t.trainer.monitor import Monitor, MonitorCallback


class Evaluator(MonitorCallback):
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
        self._monitor = Monitor(monitor, mode)
        self.verbose = verbose
        self.checkpoint_path, self.optimizer_path = checkpoint_path, optimizer_path
        self.steps_params_path = steps_params_path
        self.save_path = save_path
        if interval is None and method == "step":
            interval = step_interval
        self.interval = interval
        self.results: dict[str, float] = {}

    @property
    def best_perf(self) -> float:
        """torch4keras's name for :attr:`best`."""
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
        save_to_templates(self, {key: suffix}, logs)
        if self.save_path is not None:
            self.trainer.save_weights(self.save_path)

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
