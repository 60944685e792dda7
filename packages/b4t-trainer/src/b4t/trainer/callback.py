"""The ``Callback`` base class: keras hook names plus an ``on_after_backward`` seam.

A trainer calls a hook only on callbacks that define it (override it), so an
empty hook costs nothing. Before ``on_train_begin`` the trainer calls
``set_trainer(trainer)``; a callback then reaches the run through
``self.trainer``. The attributes a callback may rely on:

- ``trainer.module``: the user's ``nn.Module`` (never a DDP/DP wrapper).
- ``trainer.current_batch``: the ``(X, y)`` micro-batch being trained on,
  already on the training device.
- ``trainer.compute_loss(X, y) -> (loss, logs)``: forward pass (under the
  configured autocast) and the compiled loss; ``loss`` is a scalar tensor,
  not yet divided by the accumulation steps.
- ``trainer.backward(loss)``: backward through the AMP grad scaler with the
  same ``1 / grad_accumulation_steps`` scaling as the main loss.

A callback may also set ``trainer.stop_training = True`` (the run stops after
the current batch), read ``trainer.epoch`` / ``trainer.global_step``, and call
``trainer.save_checkpoint(path)`` (inside a hook the write waits until every
callback of that hook has run).

``on_after_backward`` runs after each micro-batch's backward and before the
optimizer step (and before gradient clipping), so a callback can add gradients
(adversarial training) or change them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import MutableMapping

Logs = dict[str, Any]

HOOK_NAMES: tuple[str, ...] = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_batch_begin",
    "on_batch_end",
    "on_train_step_end",
    "on_after_backward",
    "on_dataloader_end",
)
"""The hook names a callback may define, in the order a run calls them."""


class Callback:
    """Base class of every callback; override only the hooks you need.

    Hook signatures (bert4torch's, plus ``on_after_backward``):

    - ``on_train_begin(logs)`` / ``on_train_end(logs)``
    - ``on_epoch_begin(global_step, epoch, logs)``: ``global_step`` is the next batch's index
    - ``on_epoch_end(global_step, epoch, logs)``: ``global_step`` is the index of the epoch's
      last batch (as torch4keras passes it), ``logs`` the epoch means
    - ``on_batch_begin(global_step, local_step, logs)``
    - ``on_batch_end(global_step, local_step, logs)``
    - ``on_train_step_end(logs)``: the seed's hook, right after each micro-batch's
      backward (``logs`` is an empty dict, as in torch4keras 0.0.4)
    - ``on_after_backward(global_step, local_step, logs)``: after ``on_train_step_end``,
      with the batch logs (loss, metrics)
    - ``on_dataloader_end(logs)``: the train loader ran out inside an epoch.
    """

    trainer: Any = None
    model: Any = None
    params: dict[str, Any] | None = None

    def set_params(self, params: dict[str, Any]) -> None:
        """torch4keras's run parameters (``epochs``, ``steps``, ``verbose``, ``metrics``);
        ``fit`` sets them before ``on_train_begin``."""
        self.params = params

    def set_model(self, model: Any) -> None:
        """torch4keras's way to attach the model: ``self.model`` becomes ``model`` and, for a
        ``BaseModel``, ``self.trainer`` its trainer (``fit`` calls :meth:`set_trainer`,
        which sets both)."""
        self.model = model
        trainer = getattr(type(model), "trainer", None)
        if isinstance(trainer, property):
            self.trainer = model.trainer

    def set_trainer(self, trainer: Any) -> None:
        """Attach the trainer running this callback (called before ``on_train_begin``).

        ``self.model`` is then the model being trained (the ``BaseModel``, wrapper
        included), as torch4keras's ``set_model`` gives it: ``self.model.optimizer``,
        ``self.model.stop_training = True`` work as in 0.2.5.
        """
        self.trainer = trainer
        self.model = getattr(trainer, "owner", trainer.module)

    def defines(self, hook: str) -> bool:
        """Whether this callback overrides ``hook`` (the trainer calls only those)."""
        if hook not in HOOK_NAMES:
            raise ValueError(f"unknown hook {hook!r}; hooks are {HOOK_NAMES}")
        return getattr(type(self), hook, None) is not getattr(Callback, hook)

    def state_dict(self) -> dict[str, Any]:
        """State to save in a checkpoint so a resumed run continues exactly."""
        return {}

    def load_state_dict(self, state: MutableMapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    # Hooks: no-ops here; the trainer skips them unless a subclass overrides them.
    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Called once before the first epoch."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Called once after the last epoch, after a stop, and also when ``fit`` fails.

        On a failure (an exception or KeyboardInterrupt inside ``fit``)
        ``trainer.train_error`` holds the exception while this runs, so a callback
        can release what it holds (files, writers, forward hooks) either way.
        """

    def on_epoch_begin(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        """Called at the start of each epoch."""

    def on_epoch_end(self, global_step: int, epoch: int, logs: Logs | None = None) -> None:
        """Called at the end of each epoch."""

    def on_batch_begin(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        """Called before each training batch."""

    def on_batch_end(self, global_step: int, local_step: int, logs: Logs | None = None) -> None:
        """Called after each training batch (after the optimizer step)."""

    def on_train_step_end(self, logs: Logs | None = None) -> None:
        """Called right after each micro-batch's backward (torch4keras's hook)."""

    def on_after_backward(
        self, global_step: int, local_step: int, logs: Logs | None = None
    ) -> None:
        """Called after each micro-batch's backward, before clipping and the optimizer step."""

    def on_dataloader_end(self, logs: Logs | None = None) -> None:
        """Called when the training dataloader is exhausted inside an epoch."""


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
