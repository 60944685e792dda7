"""``Trainer``: compile / fit / evaluate / predict around any ``nn.Module``.

The trainer holds the module; it does not inherit from it nor proxy its
methods. ``forward_module`` (the module itself, or a DDP/DP wrapper around
it) runs the forward pass; ``module`` is always the user's own module.

Counters: ``global_step`` counts micro-batches trained (as bert4torch does),
the optimizer steps every ``grad_accumulation_steps`` of them. A checkpoint
records the loader position (the RNG states in force when the current
iterator was created plus how many batches it yielded), so a resumed run
recreates the same iterator, skips the batches already seen and goes on
bit-identically.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from b4t.trainer import weights as weight_files
from b4t.trainer.callback import HOOK_NAMES, Callback, Logs
from b4t.trainer.callbacks import History, ProgressBar
from b4t.trainer.cursor import LoaderCursor
from b4t.trainer.metrics import METRICS, LossKey, MetricFn, resolve_metrics
from b4t.trainer.precision import Precision
from b4t.trainer.state import atomic_save, get_rng_state, load_file, set_rng_state

CHECKPOINT_FORMAT = 1


def _is_master(master_rank: int) -> bool:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == master_rank
    return True


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _log_value(name: str, value: Any) -> Any:
    """A logged value as a Python number (one-element tensors are unwrapped)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"logged value {name!r} must be a number or a one-element tensor, got a tensor "
                f"of shape {tuple(value.shape)}"
            )
        return value.item()
    return value


def _first_dim(obj: Any) -> int | None:
    """Dim 0 of the first tensor in ``obj`` (nested lists/tuples/dicts), or None."""
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() > 0 else None
    if isinstance(obj, (list, tuple)) and obj:
        return _first_dim(obj[0])
    if isinstance(obj, Mapping) and obj:
        return _first_dim(next(iter(obj.values())))
    return None


def _batch_size(X: Any, y: Any = None) -> int:
    """The number of samples in a batch: dim 0 of the first input tensor (as torch4keras
    0.0.4 takes it), else of the first target tensor, else 1."""
    size = _first_dim(X)
    if size is None:
        size = _first_dim(y)
    return 1 if size is None else size


def _count(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError/TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return int(value)


def _unpacks_lists(module: nn.Module) -> bool:
    """Whether a list/tuple input is spread over ``module.forward``'s arguments.

    torch4keras 0.0.4's rule: spread it when ``forward`` has two or more positional
    parameters (besides ``self``); pass it whole to a one-argument ``forward(self, inputs)``
    and to ``forward(self, *inputs)``.
    """
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: spread, the common case
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in params) >= 2


class Trainer:
    """Train ``module`` keras-style.

    >>> trainer = Trainer(model)
    >>> trainer.compile(loss=nn.CrossEntropyLoss(), optimizer=opt, metrics=["accuracy"])
    >>> history = trainer.fit(loader, epochs=3)

    Args:
        module: the ``nn.Module`` to train.
        forward_module: what runs the forward pass, e.g. a DDP wrapper around
            ``module``; defaults to ``module``.
        master_rank: under ``torch.distributed``, the rank that prints and saves.
    """

    def __init__(
        self, module: nn.Module, forward_module: nn.Module | None = None, master_rank: int = 0
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"Trainer needs an nn.Module, got {type(module).__name__}")
        self.module = module
        self.forward_module = forward_module if forward_module is not None else module
        self.owner: nn.Module = module  # the BaseModel whose trainer this is (callback.model)
        self.master_rank = master_rank
        self.compiled = False
        self.loss_fn: Callable[..., Any] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedulers: list[Any] = []
        self.clip_grad_norm: float | None = None
        self.grad_accumulation_steps = 1
        self.metrics: dict[str, MetricFn] = {}
        self.mixed_precision: str | None = None
        self.use_amp = False
        self.stateful_metrics: frozenset[str] = frozenset()
        self.precision = Precision(None, torch.device("cpu"))
        self.callbacks: list[Callback] = []
        self.history = History()
        self.current_batch: tuple[Any, Any] | None = None
        self.stop_training = False
        self.epoch = 0
        self.local_step = 0
        self.global_step = 0
        self.epochs = 0
        self.steps_per_epoch = 0
        self._resume: dict[str, Any] | None = None
        self._pending_saves: list[str] = []
        self._in_hooks = False
        self._cursor: LoaderCursor | None = None
        self._epoch_sums: dict[str, float] = {}
        self._epoch_last: dict[str, float] = {}
        self._epoch_count = 0
        self._batch_done = False  # between a batch's train_step and its counter increment
        self._epoch_begin_on_resume = False
        self._unpack: bool | None = None
        self.train_error: BaseException | None = None
        self._device = torch.device("cpu")
        self._hooks: dict[str, list[Callable[..., None]]] = {name: [] for name in HOOK_NAMES}

    # ------------------------------------------------------------------ setup
    @property
    def is_master(self) -> bool:
        """True on the rank that prints and saves (always true without distribution)."""
        return _is_master(self.master_rank)

    @property
    def device(self) -> torch.device:
        """The device of the module's first parameter or buffer (CPU if it has none)."""
        for tensor in self.module.parameters():
            return tensor.device
        for tensor in self.module.buffers():
            return tensor.device
        return torch.device("cpu")

    def compile(
        self,
        loss: Callable[..., Any],
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        clip_grad_norm: float | None = None,
        use_amp: bool = False,
        metrics: Any = None,
        stateful_metrics: str | Sequence[str] | None = None,
        grad_accumulation_steps: int = 1,
        mixed_precision: str | None = None,
    ) -> None:
        """Set the loss, optimizer, schedulers (one or a list), metrics and AMP.

        The positional order is torch4keras 0.0.4's; ``mixed_precision`` is b4t's.

        ``loss(y_pred, y_true)`` returns a scalar tensor, a dict with a
        ``'loss'`` key, or a tuple whose first item is the loss; the other
        parts are logged (``loss1``, ``loss2``, ... for a tuple). ``metrics``
        take names, ``{'name': fn}`` and bare functions; a function may return
        a dict, whose items are logged each under its own key.
        ``stateful_metrics`` names logs whose epoch value is the last batch's
        instead of the mean. ``use_amp=True`` is fp16 autocast with a
        ``GradScaler`` on CUDA (on CPU it does nothing, as in 0.2.5, with a
        warning); ``mixed_precision`` is ``'bf16'`` (CPU or CUDA autocast) or
        ``'fp16'`` (CUDA only).
        """
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
        if scheduler is None:
            schedulers = []
        elif isinstance(scheduler, (list, tuple)):
            schedulers = list(scheduler)
        else:
            schedulers = [scheduler]
        for sched in schedulers:
            if not hasattr(sched, "step") or not hasattr(sched, "state_dict"):
                raise TypeError(f"scheduler {sched!r} has no step()/state_dict()")
        if not isinstance(grad_accumulation_steps, int) or grad_accumulation_steps < 1:
            raise ValueError(
                f"grad_accumulation_steps must be an int >= 1, got {grad_accumulation_steps!r}"
            )
        if clip_grad_norm is not None:
            if isinstance(clip_grad_norm, bool) or not isinstance(clip_grad_norm, numbers.Real):
                raise TypeError(f"clip_grad_norm must be a number > 0, got {clip_grad_norm!r}")
            if not math.isfinite(clip_grad_norm) or clip_grad_norm <= 0:
                raise ValueError(
                    f"clip_grad_norm must be a finite number > 0, got {clip_grad_norm}"
                )
        if use_amp:
            if mixed_precision not in (None, "fp16"):
                raise ValueError(
                    f"use_amp=True is fp16 autocast; it cannot be combined with "
                    f"mixed_precision={mixed_precision!r}"
                )
            if self.device.type == "cuda":
                mixed_precision = "fp16"
            else:
                warnings.warn(
                    f"use_amp=True does nothing on {self.device} (0.2.5's torch.cuda.amp "
                    "disables itself off CUDA): training runs in full precision; pass "
                    "mixed_precision='bf16' for CPU autocast",
                    stacklevel=3,
                )
        if isinstance(stateful_metrics, str):
            stateful_metrics = [stateful_metrics]
        precision = Precision(mixed_precision, self.device)
        resolved_metrics = resolve_metrics(metrics)
        self.loss_fn = loss
        self.optimizer = optimizer
        self.schedulers = schedulers
        self.clip_grad_norm = clip_grad_norm
        self.grad_accumulation_steps = grad_accumulation_steps
        self.metrics = resolved_metrics
        self.mixed_precision = mixed_precision
        self.use_amp = bool(use_amp)
        self.stateful_metrics = frozenset(stateful_metrics or ())
        self.precision = precision
        self.compiled = True

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"call compile(loss=..., optimizer=...) before {what}()")

    @property
    def scaler(self) -> Any:
        """The fp16 ``GradScaler``, or ``None``."""
        return self.precision.scaler

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context of the configured ``mixed_precision`` (a no-op without)."""
        return self.precision.autocast()

    # ------------------------------------------------------------- one batch
    def forward(self, X: Any) -> Any:
        """Run ``forward_module`` on ``X``.

        A tensor goes in as it is, a dict as ``**X``; a list/tuple is spread as
        ``*X`` when the module's ``forward`` takes two or more positional
        arguments and passed whole otherwise (torch4keras 0.0.4's rule, so a
        one-argument ``forward(self, inputs)`` gets the list).
        """
        if isinstance(X, torch.Tensor):
            return self.forward_module(X)
        if isinstance(X, (list, tuple)):
            unpack = self._unpack
            if unpack is None:
                unpack = self._unpack = _unpacks_lists(self.module)
            return self.forward_module(*X) if unpack else self.forward_module(X)
        if isinstance(X, Mapping):
            return self.forward_module(**X)
        return self.forward_module(X)

    def _loss_parts(self, raw: Any) -> tuple[torch.Tensor, Logs]:
        extras: Logs = {}
        if isinstance(raw, torch.Tensor):
            loss = raw
        elif isinstance(raw, Mapping):
            if "loss" not in raw:
                raise ValueError(f"the loss returned a dict without a 'loss' key: {sorted(raw)}")
            loss = raw["loss"]
            extras = {k: v for k, v in raw.items() if k != "loss"}
        elif isinstance(raw, (list, tuple)):
            if not raw:
                raise ValueError("the loss returned an empty tuple")
            loss = raw[0]
            extras = {f"loss{i}": v for i, v in enumerate(raw[1:], start=1)}
        else:
            loss = raw
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"the loss must be a tensor, got {type(loss).__name__}")
        if loss.dim() != 0:
            raise ValueError(
                f"the loss must be a scalar tensor, got shape {tuple(loss.shape)}; "
                "reduce it (e.g. reduction='mean')"
            )
        return loss, extras

    def _compute(self, X: Any, y: Any) -> tuple[torch.Tensor, Logs, Any]:
        assert self.loss_fn is not None
        with self.autocast():
            y_pred = self.forward(X)
            raw = self.loss_fn(y_pred, y)
        loss, extras = self._loss_parts(raw)
        return loss, extras, y_pred

    def compute_loss(self, X: Any, y: Any) -> tuple[torch.Tensor, Logs]:
        """Forward (under autocast) plus the compiled loss: ``(scalar loss, extra logs)``."""
        self._require_compiled("compute_loss")
        loss, extras, _ = self._compute(X, y)
        return loss, extras

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss / grad_accumulation_steps`` through the AMP scaler, if any."""
        if self.grad_accumulation_steps > 1:
            loss = loss / self.grad_accumulation_steps
        self.precision.backward(loss)

    def _split_batch(self, batch: Any, where: str) -> tuple[Any, Any]:
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            got = (
                f"a {type(batch).__name__} of length {len(batch)}"
                if isinstance(batch, (list, tuple))
                else f"a {type(batch).__name__}"
            )
            raise TypeError(f"{where} must yield (X, y) pairs, got {got}")
        device = self._device
        return _to_device(batch[0], device), _to_device(batch[1], device)

    def _optimizer_step(self) -> None:
        assert self.optimizer is not None
        self.precision.step(self.optimizer, self.module.parameters(), self.clip_grad_norm)
        for sched in self.schedulers:
            sched.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, batch: Any) -> Logs:
        """Train on one micro-batch; step the optimizer at accumulation boundaries.

        ``fit`` calls this once per batch; it runs the ``on_after_backward``
        hooks but no other. Returns the batch logs (loss, loss parts, metrics).
        """
        self._require_compiled("train_step")
        X, y = self._split_batch(batch, "train_dataloader")
        self.current_batch = (X, y)
        boundary = (self.global_step + 1) % self.grad_accumulation_steps == 0
        sync = contextlib.nullcontext()
        if not boundary and hasattr(self.forward_module, "no_sync"):
            sync = self.forward_module.no_sync()
        with sync:
            custom = self._custom_train_step()
            if custom is not None:  # a BaseModel subclass's own train_step, as torch4keras
                y_pred, loss, extras = custom(X, y)
            else:
                loss, extras, y_pred = self._compute(X, y)
                if self.grad_accumulation_steps > 1:
                    loss = loss / self.grad_accumulation_steps
                self.precision.backward(loss)
        if self._hooks["on_train_step_end"]:
            self._call("on_train_step_end", {})
        # the logged loss is the one back-propagated (divided by the accumulation steps),
        # as torch4keras 0.0.4 logs it
        logs: Logs = {"size": _batch_size(X, y), "loss": loss.item()}
        for key, value in extras.items():
            logs[key] = _log_value(key, value)
        if self.metrics:
            with torch.no_grad():
                self._add_metrics(logs, y_pred, y)
        for hook in self._hooks["on_after_backward"]:
            hook(self.global_step, self.local_step, logs)
        if boundary:
            self._optimizer_step()
        return logs

    def _custom_train_step(self) -> Callable[[Any, Any], tuple[Any, Any, Logs]] | None:
        """The owning model's ``train_step(X, y)`` when a subclass overrides torch4keras's
        (it then does the forward, loss and backward and returns ``(output, loss,
        loss_detail)``), else ``None``."""
        owner = getattr(self, "owner", None)
        mro = type(owner).__mro__
        step = getattr(type(owner), "train_step", None)
        if step is None or getattr(step, "_b4t_builtin", False):
            return None
        if not any(getattr(vars(k).get("train_step"), "_b4t_builtin", False) for k in mro):
            return None  # not a BaseModel: a train_step of its own is not torch4keras's
        return owner.train_step  # type: ignore[union-attr]

    def _add_metrics(self, logs: Logs, y_pred: Any, y: Any) -> None:
        """Each metric's value under its name; a metric returning a dict adds its items.

        A :class:`LossKey` metric names a part the loss returned (already in ``logs``)."""
        for name, fn in self.metrics.items():
            if isinstance(fn, LossKey) and name not in logs:
                raise ValueError(
                    f"unknown metric name {name!r}: neither a built-in metric "
                    f"({sorted(METRICS)}) nor a key the loss returned (it returned "
                    f"{sorted(k for k in logs if k != 'size')})"
                )
        for name, fn in self.metrics.items():
            if isinstance(fn, LossKey):
                continue
            value = fn(y_pred, y)
            if isinstance(value, Mapping):
                for key, item in value.items():
                    logs[str(key)] = _log_value(str(key), item)
            else:
                logs[name] = _log_value(name, value)

    # ------------------------------------------------------------- callbacks
    def _set_callbacks(self, callbacks: Sequence[Callback], verbose: int) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        # A ProgressBar passed in (e.g. with its own file/interval) replaces the default one.
        has_bar = any(isinstance(cb, ProgressBar) for cb in callbacks)
        builtins: list[Callback] = [ProgressBar()] if verbose and not has_bar else []
        self.callbacks = [*builtins, *callbacks, self.history]
        params = {
            "epochs": self.epochs,
            "steps": self.steps_per_epoch,
            "verbose": verbose,
            "metrics": ["loss", *(k for k in (self.metrics or {}) if isinstance(k, str))],
        }
        for cb in self.callbacks:
            cb.set_trainer(self)
            cb.set_params(params)
        self._hooks = {
            name: [getattr(cb, name) for cb in self.callbacks if cb.defines(name)]
            for name in HOOK_NAMES
        }

    def _call(self, name: str, *args: Any) -> None:
        hooks = self._hooks[name]
        if not hooks:
            return
        self._in_hooks = True
        try:
            for hook in hooks:
                hook(*args)
        finally:
            self._in_hooks = False

    # ------------------------------------------------------------------- fit
    def fit(
        self,
        train_dataloader: Iterable[Any],
        steps_per_epoch: int | None = None,
        epochs: int = 1,
        callbacks: Sequence[Callback] | Callback | None = None,
        verbose: int = 1,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for ``epochs`` epochs of ``steps_per_epoch`` batches; returns the History.

        The positional order is torch4keras 0.0.4's ``fit(train_dataloader,
        steps_per_epoch, epochs, callbacks, verbose)``; ``resume_from`` is b4t's.
        ``steps_per_epoch=None`` is one pass over the loader; a larger value
        cycles it (``on_dataloader_end`` fires at each wrap). ``resume_from``
        loads a checkpoint written by :meth:`save_checkpoint` (or a
        ``Checkpoint`` callback) and continues exactly where it stopped; after
        :meth:`load_steps_params` the run continues at the saved position.

        Whatever happens, the callbacks' ``on_train_end`` runs: after the last
        epoch, after a stop, and when an exception or KeyboardInterrupt leaves
        ``fit`` (then ``self.train_error`` holds it and the error is re-raised).
        """
        self._require_compiled("fit")
        epochs = _count("epochs", epochs)
        if steps_per_epoch is None:
            try:
                steps_per_epoch = len(train_dataloader)  # type: ignore[arg-type]
            except TypeError:
                raise TypeError("train_dataloader has no len(); pass steps_per_epoch") from None
            if steps_per_epoch < 1:
                raise ValueError("train_dataloader is empty (len() == 0)")
        steps_per_epoch = _count("steps_per_epoch", steps_per_epoch)
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self._device = self.device
        self.history = History()
        self.train_error = None
        self._set_callbacks(list(callbacks or []), verbose)
        self.stop_training = False
        self._cursor = LoaderCursor(
            train_dataloader, on_wrap=lambda: self._call("on_dataloader_end", {})
        )
        self._epoch_sums, self._epoch_last, self._epoch_count = {}, {}, 0
        self.epoch = self.local_step = self.global_step = 0
        self._batch_done = self._epoch_begin_on_resume = False
        self._pending_saves = []
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        resume, self._resume = self._resume, None
        if resume is not None:
            self._apply_resume(resume)
        try:
            self.forward_module.train()
            self._call("on_train_begin", {})
            self._fit_loop(self._cursor)
        except BaseException as exc:
            self.train_error = exc
            self._teardown()
            raise
        self.current_batch = None
        self._call("on_train_end", {})
        self._flush_saves()
        return self.history

    def _teardown(self) -> None:
        """After a failure: run every ``on_train_end`` so callbacks release what they hold.

        A hook that fails here is reported as a warning; the original error is the one
        ``fit`` raises. Saves requested during the failed step are dropped.
        """
        self.current_batch = None
        self._in_hooks = False
        self._pending_saves = []
        self._batch_done = False
        for hook in self._hooks["on_train_end"]:
            try:
                hook({})
            except Exception as exc:  # keep releasing the others
                warnings.warn(
                    f"{hook.__qualname__} raised {exc!r} while cleaning up after "
                    f"{self.train_error!r}",
                    stacklevel=3,
                )

    def _apply_resume(self, resume: Mapping[str, Any]) -> None:
        """Counters, loader position, callback states, then the run's RNG states."""
        assert self._cursor is not None
        self.epoch, self.local_step = resume["epoch"], resume["local_step"]
        global_step = resume.get("global_step")
        if global_step is None:  # a torch4keras file: counters are positions in the epochs
            global_step = self.epoch * self.steps_per_epoch + self.local_step
        self.global_step = global_step
        for sched, sched_state in zip(self.schedulers, resume.get("steps_schedulers", ())):
            sched.load_state_dict(sched_state)
        loader_state = resume.get("loader")
        if loader_state is not None:
            self._cursor.load_state_dict(loader_state)
        elif resume.get("manual"):  # the steps-params recipe: skip the batches trained on
            self._epoch_begin_on_resume = True
            try:
                per_pass = len(self._cursor.loader)  # type: ignore[arg-type]
            except TypeError:
                per_pass = 0
            self._cursor.skip(self.global_step % per_pass if per_pass else self.local_step)
        if "callbacks" in resume:
            self._load_callback_states(resume["callbacks"])
        if "rng" in resume:  # last: the cursor changed the RNG states while restoring
            set_rng_state(resume["rng"])
        if "epoch_sums" in resume:
            self._epoch_sums = dict(resume["epoch_sums"])
            self._epoch_last = dict(resume.get("epoch_last", {}))
            self._epoch_count = resume["epoch_count"]

    def _fit_loop(self, cursor: LoaderCursor) -> None:
        hooks = self._hooks
        stateful = self.stateful_metrics
        module = self.forward_module
        while self.epoch < self.epochs and not self.stop_training:
            if self.local_step == 0 or self._epoch_begin_on_resume:
                self._epoch_begin_on_resume = False
                self._call("on_epoch_begin", self.global_step, self.epoch, {})
            sums, last = self._epoch_sums, self._epoch_last
            while self.local_step < self.steps_per_epoch:
                batch = self._next_batch(cursor)
                if not module.training:  # a callback evaluated in eval mode: back to train,
                    module.train()  # as torch4keras calls train() before every step
                if hooks["on_batch_begin"]:
                    self._call("on_batch_begin", self.global_step, self.local_step, {})
                logs = self.train_step(batch)
                self._batch_done = True
                size = logs["size"]
                for key, value in logs.items():
                    if isinstance(value, (int, float)) and key != "size":
                        if stateful and key in stateful:
                            last[key] = value
                        else:
                            sums[key] = sums.get(key, 0.0) + value * size
                self._epoch_count += size
                self._call("on_batch_end", self.global_step, self.local_step, logs)
                self.global_step += 1
                self.local_step += 1
                self._batch_done = False
                if self._pending_saves:
                    self._flush_saves()
                if self.stop_training:
                    return
            epoch_logs = self._epoch_logs(sums, last, self._epoch_count)
            # global_step: the last batch's index, as torch4keras passes it
            self._call("on_epoch_end", self.global_step - 1, self.epoch, epoch_logs)
            self.epoch += 1
            self.local_step = 0
            self._epoch_sums, self._epoch_last, self._epoch_count = {}, {}, 0
            self._flush_saves()

    def _next_batch(self, cursor: LoaderCursor) -> Any:
        try:
            return cursor.next()
        except ValueError as exc:
            if "yielded no batches" not in str(exc):
                raise
            loader = cursor.loader
            one_shot = iter(loader) is loader  # type: ignore[call-overload]
            what = (
                "a one-shot iterator/generator, which cannot be iterated again"
                if one_shot
                else "iterating it again gave no batches"
            )
            raise ValueError(
                f"train_dataloader ran out at epoch {self.epoch + 1}, step "
                f"{self.local_step + 1} of steps_per_epoch={self.steps_per_epoch}: it is "
                f"{what}. Pass a re-iterable loader (a DataLoader or a list) or a "
                "steps_per_epoch no larger than the number of batches it yields"
            ) from None

    def _epoch_logs(self, sums: Mapping[str, float], last: Mapping[str, float], count: int) -> Logs:
        """Epoch means of the batch logs weighted by batch size (``logs['size']``), as
        torch4keras's BaseLogger computes them; stateful metrics keep their last value.
        Under DDP the sums are reduced over all ranks, so every rank's EarlyStopping /
        Checkpoint sees the same values."""
        dist = torch.distributed
        if (
            isinstance(self.forward_module, nn.parallel.DistributedDataParallel)
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            keys = sorted(sums)
            packed = torch.tensor(
                [sums[k] for k in keys] + [float(count)], dtype=torch.float64, device=self._device
            )
            dist.all_reduce(packed)
            sums = dict(zip(keys, packed[:-1].tolist()))
            count = int(packed[-1].item())
        logs = {k: v / max(1, count) for k, v in sums.items()}
        logs.update(last)
        return logs

    # ---------------------------------------------------------- eval/predict
    @torch.no_grad()
    def predict(self, X: Any, return_all: int | None = None) -> Any:
        """The module's output for ``X`` in eval mode, without gradients.

        ``return_all=i`` returns item ``i`` of a list/tuple output (torch4keras's
        argument); ``None`` returns the output as it is.
        """
        was_training = self.forward_module.training
        self.forward_module.eval()
        try:
            with self.autocast():
                output = self.forward(_to_device(X, self.device))
        finally:
            self.forward_module.train(was_training)
        if return_all is None:
            return output
        if (
            isinstance(output, (list, tuple))
            and isinstance(return_all, int)
            and -len(output) <= return_all < len(output)
        ):
            return output[return_all]
        got = f"a {type(output).__name__}"
        if isinstance(output, (list, tuple)):
            got += f" of {len(output)} items"
        raise ValueError(f"predict(return_all={return_all!r}): the model output is {got}")

    @torch.no_grad()
    def evaluate(self, dataloader: Iterable[Any]) -> dict[str, float]:
        """Mean loss and metrics over ``dataloader`` (weighted by batch size), in eval mode."""
        self._require_compiled("evaluate")
        self._device = self.device
        was_training = self.forward_module.training
        self.forward_module.eval()
        totals: dict[str, float] = {}
        seen = 0
        try:
            for batch in dataloader:
                X, y = self._split_batch(batch, "the evaluation dataloader")
                loss, extras, y_pred = self._compute(X, y)
                n = _batch_size(X, y)
                values: Logs = {"loss": loss.item()}
                values.update({k: _log_value(k, v) for k, v in extras.items()})
                self._add_metrics(values, y_pred, y)
                for key, value in values.items():
                    if isinstance(value, (int, float)):
                        totals[key] = totals.get(key, 0.0) + float(value) * n
                seen += n
        finally:
            self.forward_module.train(was_training)
        if not seen:
            raise ValueError("the evaluation dataloader yielded no batches")
        return {k: v / seen for k, v in totals.items()}

    # ------------------------------------------------------ weights & resume
    def save_weights(
        self,
        path: str | os.PathLike[str],
        prefix: str | None = None,
        mapping: Mapping[str, Any] | None = None,
        *,
        seed_names: bool = False,
    ) -> None:
        """Save ``module.state_dict()`` to the file ``path`` (master rank only), atomically.

        As 0.2.5's ``save_weights(save_path)``, the file is the module's own state dict, so
        ``module.load_state_dict(torch.load(path))`` reads it back. ``seed_names=True``
        writes bert4torch 0.2.5's module names instead where a submodule knows them (b4t's
        built models: see :mod:`b4t.trainer.weights`), a file 0.2.5 loads;
        ``prefix`` / ``mapping`` write checkpoint names.
        """
        if not self.is_master:
            return
        state = self.module.state_dict()
        if prefix is not None or mapping is not None:
            state = weight_files.to_file(state, weight_files.targets(self.module, prefix, mapping))
        elif seed_names:
            unnamed: list[str] = []
            state = weight_files.to_file(state, weight_files.seed_targets(self.module, unnamed))
            state.update(weight_files.seed_extras(self.module))
            if unnamed:
                where = ", ".join(repr(n) if n else "the model" for n in unnamed)
                warnings.warn(
                    f"save_weights({os.fspath(path)!r}): bert4torch 0.2.5's parameter names "
                    f"of {where} are not known to b4t; its keys keep b4t's own names (the "
                    "file loads in b4t, not in 0.2.5; save_pretrained writes the checkpoint "
                    "layout)",
                    stacklevel=3,
                )
        atomic_save(state, path)

    def load_weights(
        self,
        path: str | os.PathLike[str] | Mapping[str, Any],
        strict: bool = True,
        prefix: str | None = None,
        mapping: Mapping[str, Any] | None = None,
    ) -> None:
        """Load a state dict, or a file (``weights_only``) :meth:`save_weights` or bert4torch
        0.2.5 wrote, in 0.2.5's module names or the module's own; with ``prefix`` /
        ``mapping`` the file's checkpoint names are mapped back first."""
        state = path if isinstance(path, Mapping) else load_file(path)
        if not isinstance(state, Mapping):
            raise TypeError(f"{path} does not hold a state dict")
        if prefix is not None or mapping is not None:
            state = weight_files.from_file(
                state, weight_files.targets(self.module, prefix, mapping)
            )
        else:
            state = weight_files.from_file(state, weight_files.seed_targets(self.module))
            for key in weight_files.seed_extras(self.module):
                state.pop(key, None)
        self.module.load_state_dict(state, strict=strict)

    def _next_position(self) -> tuple[int, int, int]:
        """``(epoch, local_step, global_step)`` of the next batch to train.

        Inside ``on_batch_end`` the current batch counts as trained; inside
        ``on_epoch_end`` the epoch counts as finished (torch4keras's rule).
        """
        epoch, local, step = self.epoch, self.local_step, self.global_step
        if self._batch_done:
            local, step = local + 1, step + 1
        if self.steps_per_epoch and local >= self.steps_per_epoch:
            epoch, local = epoch + 1, 0
        return epoch, local, step

    def save_steps_params(self, path: str | os.PathLike[str]) -> None:
        """bert4torch's resume recipe: save where the next batch starts (pair it with
        ``save_weights`` and the optimizer's state).

        Call it anywhere, also inside ``on_batch_end`` / ``on_epoch_end``: the file
        names the next batch to train (``resume_epoch``, ``resume_step``, the keys
        torch4keras writes), plus b4t's ``global_step`` and scheduler states.
        """
        if not self.is_master:
            return
        epoch, local, step = self._next_position()
        atomic_save(
            {
                "resume_step": local,
                "resume_epoch": epoch,
                "global_step": step,
                "schedulers": [s.state_dict() for s in self.schedulers],
            },
            path,
        )

    def load_steps_params(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load what :meth:`save_steps_params` wrote (or torch4keras 0.0.4 wrote); the next
        ``fit`` starts at that position: no batch is trained twice, none is left out."""
        state = load_file(path)
        if not isinstance(state, Mapping):
            raise TypeError(f"{path} does not hold steps params")
        if "resume_epoch" in state and "resume_step" in state:
            epoch, local = int(state["resume_epoch"]), int(state["resume_step"])
        elif all(k in state for k in ("epoch", "local_step")):  # b4t 0.1 files
            epoch, local = int(state["epoch"]), int(state["local_step"])
        else:
            raise KeyError(
                f"{path} has no 'resume_epoch' / 'resume_step': not written by save_steps_params"
            )
        self._resume = {
            "epoch": epoch,
            "local_step": local,
            "global_step": state.get("global_step"),
            "steps_schedulers": list(state.get("schedulers", [])),
            "manual": True,
        }
        return dict(state)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer, schedulers, scaler,
        callback states, counters, the loader position and the RNG states."""
        self._require_compiled("state_dict")
        assert self.optimizer is not None
        grads = None
        if self.global_step % self.grad_accumulation_steps:  # mid-accumulation
            grads = {
                n: p.grad.detach().clone()
                for n, p in self.module.named_parameters()
                if p.grad is not None
            }
        loader = self._cursor.state_dict() if self._cursor is not None else None
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.precision.state_dict(),
            "callbacks": [
                {"name": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks
            ],
            "epoch": self.epoch,
            "local_step": self.local_step,
            "global_step": self.global_step,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_last": dict(self._epoch_last),
            "epoch_count": self._epoch_count,
            "grads": grads,
            "loader": loader,
            "rng": get_rng_state(),
        }

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (master rank only).

        Called from inside a hook, the write waits until every callback of
        that hook has run, so the saved callback states are complete.
        """
        if self._in_hooks:
            self._pending_saves.append(os.fspath(path))
        elif self.is_master:
            atomic_save(self.state_dict(), path)

    def _flush_saves(self) -> None:
        pending, self._pending_saves = self._pending_saves, []
        if pending and self.is_master:
            state = self.state_dict()
            for path in dict.fromkeys(pending):
                atomic_save(state, path)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint; the next ``fit`` (same loader and callbacks) resumes it.

        Model, optimizer, schedulers and scaler are restored now; counters,
        loader position, callback states and RNG states when ``fit`` starts.
        """
        self._require_compiled("load_checkpoint")
        assert self.optimizer is not None
        state = load_file(path)
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a b4t trainer checkpoint (see save_checkpoint)")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if len(state["schedulers"]) != len(self.schedulers):
            raise ValueError(
                f"{path} holds {len(state['schedulers'])} scheduler states but "
                f"{len(self.schedulers)} schedulers are compiled"
            )
        for sched, sched_state in zip(self.schedulers, state["schedulers"]):
            sched.load_state_dict(sched_state)
        self.precision.load_state_dict(state["scaler"])
        if state["grads"]:
            params = dict(self.module.named_parameters())
            for name, grad in state["grads"].items():
                params[name].grad = grad.to(params[name].device)
        self._resume = dict(state)

    def _load_callback_states(self, saved: list[Mapping[str, Any]]) -> None:
        """Give each callback the saved state of the same class and occurrence index."""
        by_name: dict[str, list[Any]] = {}
        for entry in saved:
            by_name.setdefault(entry["name"], []).append(entry["state"])
        for cb in self.callbacks:
            states = by_name.get(type(cb).__name__)
            if states:
                cb.load_state_dict(states.pop(0))
        left = [name for name, states in by_name.items() for state in states if state]
        if left:
            warnings.warn(
                f"checkpoint states of callbacks {left} were not used: this run has no such "
                "callbacks",
                stacklevel=3,
            )
