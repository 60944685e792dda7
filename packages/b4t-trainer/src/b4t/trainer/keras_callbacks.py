"""torch4keras 0.0.4's keras-style callback names: ``Progbar``, ``ProgbarLogger``,
``BaseLogger``, ``CallbackList``, ``ReduceLROnPlateau``, ``RemoteMonitor``.

b4t's trainer averages the epoch logs itself and shows a tqdm ``ProgressBar``; these are
for code written against torch4keras that builds or passes them by name. Each follows
0.0.4's arguments and numbers; ``RemoteMonitor`` posts the logged values (0.0.4 posts
each key's name in place of its value: MIGRATION.md) with the standard library.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from b4t.trainer.callback import Callback, Logs
from b4t.trainer.monitor import Monitor, PeriodicCheck

__all__ = [
    "BaseLogger",
    "CallbackList",
    "Progbar",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "RemoteMonitor",
]


class Progbar:
    """A keras text progress bar: ``update(current, [(name, value), ...])`` / ``add(n, ...)``.

    Values are averaged over the steps they cover (weighted by ``current - seen``);
    ``stateful_metrics`` are shown as given. ``verbose=1`` redraws at most every
    ``interval`` seconds, ``verbose=2`` prints one line when ``target`` is reached.
    """

    def __init__(
        self,
        target: int | None,
        width: int = 30,
        verbose: int = 1,
        interval: float = 0.05,
        stateful_metrics: Iterable[str] | None = None,
        file: Any = None,
    ) -> None:
        self.target, self.width, self.verbose, self.interval = target, width, verbose, interval
        self.stateful_metrics = set(stateful_metrics or ())
        self.file = file
        self._sums: dict[str, list[float]] = {}  # name -> [weighted sum, weight]
        self._seen = 0
        self._start = time.time()
        self._last_update = 0.0
        self._width_drawn = 0

    def averages(self) -> dict[str, float]:
        """The value shown for each name: the step-weighted mean (or the stateful value)."""
        return {k: s / max(1.0, n) for k, (s, n) in self._sums.items()}

    def update(self, current: int, values: Sequence[tuple[str, Any]] | None = None) -> None:
        """Move to step ``current`` and fold in ``values`` for the steps since the last call."""
        steps = current - self._seen
        for name, value in values or ():
            value = float(value)
            if name in self.stateful_metrics:
                self._sums[name] = [value, 1.0]
            else:
                total = self._sums.setdefault(name, [0.0, 0.0])
                total[0] += value * steps
                total[1] += steps
        self._seen = current
        now = time.time()
        done = self.target is not None and current >= self.target
        if self.verbose == 1 and (done or now - self._last_update >= self.interval):
            self._draw(current, now, done)
        elif self.verbose == 2 and (self.target is None or done):
            self._write(f" - {now - self._start:.0f}s{self._metrics()}\n")
        self._last_update = now

    def add(self, n: int, values: Sequence[tuple[str, Any]] | None = None) -> None:
        """``update(seen + n, values)``."""
        self.update(self._seen + n, values)

    def _metrics(self) -> str:
        parts = []
        for name, avg in self.averages().items():
            parts.append(f" - {name}: {avg:.4f}" if abs(avg) > 1e-3 else f" - {name}: {avg:.4e}")
        return "".join(parts)

    def _draw(self, current: int, now: float, done: bool) -> None:
        if self.target is not None:
            digits = len(str(self.target))
            filled = int(self.width * current / self.target) if self.target else self.width
            arrow = ("=" * (filled - 1) + ("=" if done else ">")) if filled > 0 else ""
            bar = f"{current:{digits}d}/{self.target} [{arrow}{'.' * (self.width - filled)}]"
        else:
            bar = f"{current:7d}/Unknown"
        per_step = (now - self._start) / current if current else 0.0
        if self.target is not None and not done:
            info = f" - ETA: {per_step * (self.target - current):.0f}s"
        else:
            info = f" - {now - self._start:.0f}s {per_step * 1e3:.0f}ms/step"
        line = bar + info + self._metrics()
        pad = " " * max(0, self._width_drawn - len(line))
        self._width_drawn = len(line)
        self._write("\r" + line + pad + ("\n" if done else ""))

    def _write(self, text: str) -> None:
        out = self.file if self.file is not None else sys.stdout
        out.write(text)
        out.flush()


class ProgbarLogger(Callback):
    """torch4keras's progress display: a :class:`Progbar` per epoch over the batch logs.

    Pass it in ``callbacks`` with ``fit(..., verbose=0)`` in place of b4t's tqdm bar.
    ``add_metrics(names)`` is accepted for torch4keras code (every logged value is shown).
    """

    def __init__(self, stateful_metrics: Iterable[str] | None = None, file: Any = None) -> None:
        self.stateful_metrics = set(stateful_metrics or ())
        self.file = file
        self.progbar: Progbar | None = None
        self.seen = 0

    def add_metrics(
        self,
        metrics: str | Sequence[str],
        stateful_metrics: str | Sequence[str] | None = None,
        add_position: int | None = None,
    ) -> None:
        """torch4keras's hook for extra metric columns: ``stateful_metrics`` are shown as
        they are, not averaged; ``metrics`` / ``add_position`` are accepted and unused (the
        bar shows every logged name)."""
        if stateful_metrics:
            names = [stateful_metrics] if isinstance(stateful_metrics, str) else stateful_metrics
            self.stateful_metrics.update(names)

    def on_epoch_begin(
        self, global_step: int | None = None, epoch: int | None = None, logs: Logs | None = None
    ) -> None:
        trainer = self.trainer
        epoch = trainer.epoch if epoch is None else epoch
        if trainer.is_master:
            print(f"Epoch {epoch + 1}/{trainer.epochs}", file=self.file or sys.stdout)
        self.progbar = Progbar(
            trainer.steps_per_epoch,
            verbose=1 if trainer.is_master else 0,
            stateful_metrics=self.stateful_metrics,
            file=self.file,
        )
        self.seen = 0

    def on_batch_begin(
        self,
        global_step: int | None = None,
        local_step: int | None = None,
        logs: Logs | None = None,
    ) -> None:
        """Nothing to do before a batch (torch4keras's hook, its optional arguments)."""

    def on_batch_end(
        self,
        global_step: int | None = None,
        local_step: int | None = None,
        logs: Logs | None = None,
    ) -> None:
        self.seen += 1
        if self.progbar is not None:
            values = [(k, v) for k, v in (logs or {}).items() if k != "size" and _number(v)]
            self.progbar.update(self.seen, values)

    def on_epoch_end(
        self, global_step: int | None = None, epoch: int | None = None, logs: Logs | None = None
    ) -> None:
        """The bar is complete after the epoch's last batch (torch4keras's optional arguments)."""


class BaseLogger(Callback):
    """Epoch means of the batch logs weighted by ``logs['size']`` (torch4keras's BaseLogger),
    written into the epoch logs; ``stateful_metrics`` keep their last value. b4t's trainer
    computes the same means itself; this is for code that adds it by name."""

    def __init__(self, stateful_metrics: Iterable[str] | None = None) -> None:
        self.stateful_metrics = set(stateful_metrics or ())
        self.seen = 0
        self.totals: dict[str, float] = {}

    def on_epoch_begin(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self.seen, self.totals = 0, {}

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        size = logs.get("size", 0)
        self.seen += size
        for key, value in logs.items():
            if key == "size" or not _number(value):
                continue
            if key in self.stateful_metrics:
                self.totals[key] = value
            else:
                self.totals[key] = self.totals.get(key, 0.0) + value * size

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if logs is None:
            return
        for key, total in self.totals.items():
            logs[key] = total if key in self.stateful_metrics else total / max(1, self.seen)


class CallbackList(Callback):
    """Several callbacks as one (torch4keras's ``CallbackList``): each hook runs on every
    callback in order. ``append``, iteration and ``len`` work; ``fit(callbacks=...)``
    takes it like a list."""

    def __init__(
        self,
        callbacks: Iterable[Callback] | None = None,
        queue_length: int = 10,
        master_rank: int | None = None,
    ) -> None:
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"CallbackList holds Callback instances, got {type(cb).__name__}")
        self.queue_length, self.master_rank = queue_length, master_rank

    def append(self, callback: Callback) -> None:
        """Add ``callback`` at the end (a :class:`Callback`, else ``TypeError``)."""
        if not isinstance(callback, Callback):
            raise TypeError(f"CallbackList holds Callback instances, got {type(callback)}")
        self.callbacks.append(callback)

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def set_trainer(self, trainer: Any) -> None:
        super().set_trainer(trainer)
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def defines(self, hook: str) -> bool:
        return any(cb.defines(hook) for cb in self.callbacks)

    def _run(self, hook: str, *args: Any) -> None:
        """``hook`` on every callback that defines it, in order."""
        for cb in self.callbacks:
            if cb.defines(hook):
                getattr(cb, hook)(*args)

    # torch4keras's hooks, with its parameter names; each runs on every callback in order
    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._run("on_train_begin", logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._run("on_train_end", logs)

    def on_epoch_begin(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self._run("on_epoch_begin", global_step, epoch, logs)

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        self._run("on_epoch_end", global_step, epoch, logs)

    def on_batch_begin(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        self._run("on_batch_begin", global_step, local_step, logs)

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        self._run("on_batch_end", global_step, local_step, logs)

    def on_train_step_end(self, logs: Logs | None = None) -> None:
        self._run("on_train_step_end", logs)

    def on_after_backward(
        self, global_step: int, local_step: int, logs: Logs | None = None
    ) -> None:
        self._run("on_after_backward", global_step, local_step, logs)

    def on_dataloader_end(self, logs: Logs | None = None) -> None:
        self._run("on_dataloader_end", logs)

    def state_dict(self) -> dict[str, Any]:
        return {"callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, state: Any) -> None:
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", ())):
            cb.load_state_dict(cb_state)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ReduceLROnPlateau(PeriodicCheck):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    torch4keras 0.0.4's arguments: after ``patience`` checks without an improvement by
    ``min_delta`` (checks at epoch ends, or after each batch with ``method='step'``) every
    param group's lr becomes ``max(lr * factor, min_lr)``, then ``cooldown`` checks pass
    before counting again. The current lr is added to the logs (``lr``,
    ``lr_param_group{i}``). ``mode='auto'`` maximises names holding acc, f1, auc or perf
    (as b4t's EarlyStopping); a monitor missing from the logs is a ``KeyError``.
    """

    def __init__(
        self,
        monitor: str = "loss",
        factor: float = 0.1,
        patience: int = 10,
        method: str = "epoch",
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0,
        **kwargs: Any,
    ) -> None:
        if method not in ("step", "epoch"):
            raise ValueError(f"method must be 'step' or 'epoch', got {method!r}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau needs factor < 1.0, got {factor}")
        if "epsilon" in kwargs:  # keras's old name
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unknown arguments {sorted(kwargs)}")
        self.factor, self.patience, self.method = factor, patience, method
        self.verbose, self.mode, self.min_delta = verbose, mode, min_delta
        self.cooldown, self.min_lr = cooldown, min_lr
        self._monitor = Monitor(monitor, mode, min_delta)
        self._reset()

    def _reset(self) -> None:
        self._monitor.reset()
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        """Whether the cooldown after a reduction is still running."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def process(self, iteration: int, logs: Logs | None = None) -> None:
        """One check at ``iteration``: log each group's lr, then reduce it after ``patience``
        checks without an improvement (outside the cooldown)."""
        groups = self.trainer.optimizer.param_groups
        if logs is not None:
            for i, group in enumerate(groups):
                logs["lr" if i == 0 else f"lr_param_group{i}"] = group["lr"]
        current = self._monitor.value(logs, "ReduceLROnPlateau")
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(current):
            self._monitor.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        for group in groups:
            old = float(group["lr"])
            if old > self.min_lr:
                group["lr"] = max(old * self.factor, self.min_lr)
                if self.verbose > 0 and self.trainer.is_master:
                    print(f"\nEpoch {iteration + 1:05d}: ReduceLROnPlateau reducing learning "
                          f"rate to {group['lr']}.")  # fmt: skip
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._monitor.best, "wait": self.wait, "cooldown": self.cooldown_counter}

    def load_state_dict(self, state: Any) -> None:
        self._monitor.best = state["best"]
        self.wait, self.cooldown_counter = state["wait"], state["cooldown"]


class RemoteMonitor(Callback):
    """POST the epoch logs to ``root + path`` at each epoch end (master rank only).

    torch4keras 0.0.4's arguments: the body is form-encoded ``{field: json}`` or, with
    ``send_as_json=True``, the JSON itself; it holds ``epoch`` and each logged value. An
    unreachable server is a warning, not an error.
    """

    def __init__(
        self,
        root: str = "http://localhost:9000",
        path: str = "/publish/epoch/end/",
        field: str = "data",
        headers: Mapping[str, str] | None = None,
        send_as_json: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.root, self.path, self.field = root, path, field
        self.headers = dict(headers or {})
        self.send_as_json, self.timeout = send_as_json, timeout

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        if not self.trainer.is_master:
            return
        send: dict[str, Any] = {"epoch": epoch}
        for key, value in (logs or {}).items():
            send[key] = value.item() if hasattr(value, "item") else value
        if self.send_as_json:
            body = json.dumps(send).encode()
            headers = {"Content-Type": "application/json", **self.headers}
        else:
            body = urllib.parse.urlencode({self.field: json.dumps(send)}).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", **self.headers}
        request = urllib.request.Request(self.root + self.path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout):
                pass
        except OSError as exc:
            warnings.warn(
                f"RemoteMonitor could not reach {self.root}: {exc}", RuntimeWarning, stacklevel=2
            )
