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

Where the rest lives: saving and loading (weights, steps params, checkpoints,
resume) in :mod:`b4t.trainer.persistence`, which ``trainer.persistence`` runs;
reading a batch and the loss's output in :mod:`b4t.trainer.batches`; the
running epoch's log totals in :mod:`b4t.trainer.epoch_logs`; argument checks
in :mod:`b4t.trainer.arguments`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from b4t.trainer import arguments
from b4t.trainer.batches import (
    batch_size,
    log_value,
    loss_parts,
    split_batch,
    to_device,
    unpacks_lists,
)
from b4t.trainer.callback import HOOK_NAMES, Callback, Logs
from b4t.trainer.cursor import LoaderCursor
from b4t.trainer.epoch_logs import EpochTotals
from b4t.trainer.metrics import MetricFn, add_metrics, resolve_metrics
from b4t.trainer.persistence import CHECKPOINT_FORMAT, Persistence
from b4t.trainer.precision import Precision
from b4t.trainer.progress import History, ProgressBar

__all__ = ["CHECKPOINT_FORMAT", "Trainer"]


def _is_master(master_rank: int) -> bool:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == master_rank
    return True


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
        self._in_hooks = False
        self._cursor: LoaderCursor | None = None
        self.epoch_totals = EpochTotals()  # the running epoch's batch logs
        self._batch_done = False  # between a batch's train_step and its counter increment
        self._epoch_begin_on_resume = False
        self._unpack: bool | None = None
        self.train_error: BaseException | None = None
        self._device = torch.device("cpu")
        self._hooks: dict[str, list[Callable[..., None]]] = {name: [] for name in HOOK_NAMES}
        self.persistence = Persistence(self)  # weights, steps params, checkpoints, resume

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
        schedulers = arguments.schedulers(scheduler)
        grad_accumulation_steps = arguments.accumulation_steps(grad_accumulation_steps)
        clip_grad_norm = arguments.clip_norm(clip_grad_norm)
        mixed_precision = arguments.amp_precision(use_amp, mixed_precision, self.device)
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
                unpack = self._unpack = unpacks_lists(self.module)
            return self.forward_module(*X) if unpack else self.forward_module(X)
        if isinstance(X, Mapping):
            return self.forward_module(**X)
        return self.forward_module(X)

    def _compute(self, X: Any, y: Any) -> tuple[torch.Tensor, Logs, Any]:
        assert self.loss_fn is not None
        with self.autocast():
            y_pred = self.forward(X)
            raw = self.loss_fn(y_pred, y)
        loss, extras = loss_parts(raw)
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
        X, y = split_batch(batch, "train_dataloader", self._device)
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
        logs: Logs = {"size": batch_size(X, y), "loss": loss.item()}
        for key, value in extras.items():
            logs[key] = log_value(key, value)
        if self.metrics:
            with torch.no_grad():
                add_metrics(self.metrics, logs, y_pred, y)
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
        epochs = arguments.count("epochs", epochs)
        steps_per_epoch = arguments.steps_per_epoch(train_dataloader, steps_per_epoch)
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self._start_run(train_dataloader, steps_per_epoch, epochs, list(callbacks or []), verbose)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        assert self._cursor is not None
        self.persistence.resume_fit(self._cursor)
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
        self.persistence.flush_saves()
        return self.history

    def _start_run(
        self,
        train_dataloader: Iterable[Any],
        steps_per_epoch: int,
        epochs: int,
        callbacks: list[Callback],
        verbose: int,
    ) -> None:
        """A fresh run's state: counters at 0, new History and callbacks, a loader cursor."""
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self._device = self.device
        self.history = History()
        self.train_error = None
        self._set_callbacks(callbacks, verbose)
        self.stop_training = False
        self._cursor = LoaderCursor(
            train_dataloader, on_wrap=lambda: self._call("on_dataloader_end", {})
        )
        self.epoch_totals = EpochTotals()
        self.epoch = self.local_step = self.global_step = 0
        self._batch_done = self._epoch_begin_on_resume = False
        self.persistence.pending_saves = []

    def _teardown(self) -> None:
        """After a failure: run every ``on_train_end`` so callbacks release what they hold.

        A hook that fails here is reported as a warning; the original error is the one
        ``fit`` raises. Saves requested during the failed step are dropped.
        """
        self.current_batch = None
        self._in_hooks = False
        self.persistence.pending_saves = []
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

    def _fit_loop(self, cursor: LoaderCursor) -> None:
        """Train epoch by epoch, with the epoch hooks around :meth:`_fit_epoch`."""
        while self.epoch < self.epochs and not self.stop_training:
            if self.local_step == 0 or self._epoch_begin_on_resume:
                self._epoch_begin_on_resume = False
                self._call("on_epoch_begin", self.global_step, self.epoch, {})
            if not self._fit_epoch(cursor):
                return
            logs = self.epoch_totals.epoch_logs(self.forward_module, self._device)
            # global_step: the last batch's index, as torch4keras passes it
            self._call("on_epoch_end", self.global_step - 1, self.epoch, logs)
            self.epoch += 1
            self.local_step = 0
            self.epoch_totals = EpochTotals()
            self.persistence.flush_saves()

    def _fit_epoch(self, cursor: LoaderCursor) -> bool:
        """The rest of the running epoch's batches; ``False`` when a callback stopped the run."""
        hooks = self._hooks
        stateful = self.stateful_metrics
        module = self.forward_module
        totals = self.epoch_totals
        while self.local_step < self.steps_per_epoch:
            batch = self._next_batch(cursor)
            if not module.training:  # a callback evaluated in eval mode: back to train,
                module.train()  # as torch4keras calls train() before every step
            if hooks["on_batch_begin"]:
                self._call("on_batch_begin", self.global_step, self.local_step, {})
            logs = self.train_step(batch)
            self._batch_done = True
            totals.add(logs, stateful)
            self._call("on_batch_end", self.global_step, self.local_step, logs)
            self.global_step += 1
            self.local_step += 1
            self._batch_done = False
            if self.persistence.pending_saves:
                self.persistence.flush_saves()
            if self.stop_training:
                return False
        return True

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
                output = self.forward(to_device(X, self.device))
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
                X, y = split_batch(batch, "the evaluation dataloader", self._device)
                loss, extras, y_pred = self._compute(X, y)
                n = batch_size(X, y)
                values: Logs = {"loss": loss.item()}
                values.update({k: log_value(k, v) for k, v in extras.items()})
                add_metrics(self.metrics, values, y_pred, y)
                for key, value in values.items():
                    if isinstance(value, (int, float)):
                        totals[key] = totals.get(key, 0.0) + float(value) * n
                seen += n
        finally:
            self.forward_module.train(was_training)
        if not seen:
            raise ValueError("the evaluation dataloader yielded no batches")
        return {k: v / seen for k, v in totals.items()}

    # ------------------------------------------- weights & resume (persistence.py)
    def save_weights(
        self,
        path: str | os.PathLike[str],
        prefix: str | None = None,
        *,
        mapping: Mapping[str, Any] | None = None,
        seed_names: bool = False,
    ) -> None:
        """Save ``module.state_dict()`` to the file ``path`` (master rank only), atomically.

        As 0.2.5's ``save_weights(save_path, prefix=None)``, the file is the module's own
        state dict, so ``module.load_state_dict(torch.load(path))`` reads it back.
        ``seed_names=True`` writes bert4torch 0.2.5's module names instead where a
        submodule knows them (b4t's built models: see :mod:`b4t.trainer.weights`), a file
        0.2.5 loads; ``prefix`` (0.2.5's) or ``mapping`` (b4t's, keyword only) write
        checkpoint names.
        """
        self.persistence.save_weights(path, prefix, mapping, seed_names)

    def load_weights(
        self,
        path: str | os.PathLike[str] | Mapping[str, Any],
        strict: bool = True,
        prefix: str | None = None,
        *,
        mapping: Mapping[str, Any] | None = None,
    ) -> None:
        """Load a state dict, or a file (``weights_only``) :meth:`save_weights` or bert4torch
        0.2.5 wrote, in 0.2.5's module names or the module's own; with ``prefix`` (0.2.5's
        order: ``(path, strict, prefix)``) or ``mapping`` (keyword only) the file's
        checkpoint names are mapped back first."""
        self.persistence.load_weights(path, strict, prefix, mapping)

    def save_steps_params(self, path: str | os.PathLike[str]) -> None:
        """bert4torch's resume recipe: save where the next batch starts (pair it with
        ``save_weights`` and the optimizer's state).

        Call it anywhere, also inside ``on_batch_end`` / ``on_epoch_end``: the file
        names the next batch to train (``resume_epoch``, ``resume_step``, the keys
        torch4keras writes), plus b4t's ``global_step`` and scheduler states.
        """
        self.persistence.save_steps_params(path)

    def load_steps_params(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load what :meth:`save_steps_params` wrote (or torch4keras 0.0.4 wrote); the next
        ``fit`` starts at that position: no batch is trained twice, none is left out."""
        return self.persistence.load_steps_params(path)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer, schedulers, scaler,
        callback states, counters, the loader position and the RNG states."""
        return self.persistence.state_dict()

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (master rank only).

        Called from inside a hook, the write waits until every callback of
        that hook has run, so the saved callback states are complete.
        """
        self.persistence.save_checkpoint(path)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint; the next ``fit`` (same loader and callbacks) resumes it.

        Model, optimizer, schedulers and scaler are restored now; counters,
        loader position, callback states and RNG states when ``fit`` starts.
        """
        self.persistence.load_checkpoint(path)
