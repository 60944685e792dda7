"""A run's files: weights, steps params, full checkpoints, and where a resumed ``fit`` starts.

The :class:`~b4t.trainer.trainer.Trainer` owns one :class:`Persistence`
(``trainer.persistence``); its ``save_weights`` / ``load_weights`` /
``save_steps_params`` / ``load_steps_params`` / ``state_dict`` / ``save_checkpoint`` /
``load_checkpoint`` are one-line calls of the methods here. Three kinds of file:

- weights (``save_weights``): the module's state dict, in its own names, bert4torch
  0.2.5's (``seed_names=True``) or checkpoint names (``prefix`` / ``mapping``);
- steps params (``save_steps_params``): bert4torch's resume recipe, the position of the
  next batch to train (``resume_epoch`` / ``resume_step``), paired by the user with the
  weights and the optimizer state;
- checkpoints (``save_checkpoint``): everything a resumed run needs (:data:`CHECKPOINT_FORMAT`).

A load that the next ``fit`` continues from leaves a :class:`ResumePoint` (typed: a
field that does not exist is an error, not a key nobody reads), which ``fit`` applies
through :meth:`Persistence.resume_fit` once its loader and callbacks are in place.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b4t.trainer import weights as weight_files
from b4t.trainer.epoch_logs import EpochTotals
from b4t.trainer.state import atomic_save, get_rng_state, load_file, set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    from b4t.trainer.cursor import LoaderCursor
    from b4t.trainer.trainer import Trainer

PathLike = str | os.PathLike[str]

CHECKPOINT_FORMAT = 1
"""The ``format`` value of a :meth:`Persistence.state_dict` checkpoint."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where the next ``fit`` starts and what it restores there.

    Made by :meth:`Persistence.load_checkpoint` (``from_checkpoint``) or
    :meth:`Persistence.load_steps_params` (``from_steps_params``).

    Attributes:
        epoch: the epoch of the next batch to train (from 0).
        local_step: the next batch's index in that epoch.
        global_step: micro-batches trained so far; ``None`` for a torch4keras steps file,
            whose position is counted from ``epoch`` and ``local_step``.
        schedulers: scheduler states to load when ``fit`` starts (steps params; a
            checkpoint's are restored by the load itself).
        skip_trained: the steps-params recipe: skip the batches already trained on,
            since no loader position was saved.
        loader: the :class:`~b4t.trainer.cursor.LoaderCursor` state, if saved.
        callbacks: ``[{'name': class name, 'state': ...}]`` of the saved callbacks.
        rng: the RNG states (:func:`~b4t.trainer.state.get_rng_state`).
        epoch_totals: the running epoch's batch logs so far (``None``: none saved).
    """

    epoch: int
    local_step: int
    global_step: int | None = None
    schedulers: list[Any] = field(default_factory=list)
    skip_trained: bool = False
    loader: Mapping[str, Any] | None = None
    callbacks: list[Mapping[str, Any]] | None = None
    rng: Mapping[str, Any] | None = None
    epoch_totals: EpochTotals | None = None

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any]) -> ResumePoint:
        """The position and run state a :meth:`Persistence.state_dict` checkpoint holds."""
        return cls(
            epoch=state["epoch"],
            local_step=state["local_step"],
            global_step=state.get("global_step"),
            loader=state.get("loader"),
            callbacks=state.get("callbacks"),
            rng=state.get("rng"),
            epoch_totals=_epoch_totals(state),
        )

    @classmethod
    def from_steps_params(cls, state: Mapping[str, Any], path: Any) -> ResumePoint:
        """The position a steps-params file holds (b4t's, torch4keras 0.0.4's or b4t 0.1's)."""
        if "resume_epoch" in state and "resume_step" in state:
            epoch, local = int(state["resume_epoch"]), int(state["resume_step"])
        elif all(k in state for k in ("epoch", "local_step")):  # b4t 0.1 files
            epoch, local = int(state["epoch"]), int(state["local_step"])
        else:
            raise KeyError(
                f"{path} has no 'resume_epoch' / 'resume_step': not written by save_steps_params"
            )
        return cls(
            epoch=epoch,
            local_step=local,
            global_step=state.get("global_step"),
            schedulers=list(state.get("schedulers", [])),
            skip_trained=True,
        )


def _epoch_totals(state: Mapping[str, Any]) -> EpochTotals | None:
    """The running epoch's totals a checkpoint holds (``None`` where it holds none)."""
    if "epoch_sums" not in state:
        return None
    return EpochTotals(
        sums=dict(state["epoch_sums"]),
        last=dict(state.get("epoch_last", {})),
        count=state["epoch_count"],
    )


class Persistence:
    """The trainer's files (see the module docstring); ``trainer.persistence``.

    Args:
        trainer: the trainer whose module, optimizer, schedulers, callbacks and counters
            are saved and restored.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.pending_saves: list[str] = []  # checkpoints asked for inside a hook
        self.resume: ResumePoint | None = None  # what the next fit continues from

    # ---------------------------------------------------------------- weights
    def save_weights(
        self,
        path: PathLike,
        prefix: str | None,
        mapping: Mapping[str, Any] | None,
        seed_names: bool,
    ) -> None:
        """See :meth:`Trainer.save_weights <b4t.trainer.trainer.Trainer.save_weights>`."""
        trainer = self.trainer
        if not trainer.is_master:
            return
        module = trainer.module
        state = module.state_dict()
        if prefix is not None or mapping is not None:
            state = weight_files.to_file(state, weight_files.targets(module, prefix, mapping))
        elif seed_names:
            unnamed: list[str] = []
            state = weight_files.to_file(state, weight_files.seed_targets(module, unnamed))
            state.update(weight_files.seed_extras(module))
            if unnamed:
                where = ", ".join(repr(n) if n else "the model" for n in unnamed)
                warnings.warn(
                    f"save_weights({os.fspath(path)!r}): bert4torch 0.2.5's parameter names "
                    f"of {where} are not known to b4t; its keys keep b4t's own names (the "
                    "file loads in b4t, not in 0.2.5; save_pretrained writes the checkpoint "
                    "layout)",
                    stacklevel=4,
                )
        atomic_save(state, path)

    def load_weights(
        self,
        path: PathLike | Mapping[str, Any],
        strict: bool,
        prefix: str | None,
        mapping: Mapping[str, Any] | None,
    ) -> None:
        """See :meth:`Trainer.load_weights <b4t.trainer.trainer.Trainer.load_weights>`."""
        module = self.trainer.module
        state = path if isinstance(path, Mapping) else load_file(path)
        if not isinstance(state, Mapping):
            raise TypeError(f"{path} does not hold a state dict")
        if prefix is not None or mapping is not None:
            state = weight_files.from_file(state, weight_files.targets(module, prefix, mapping))
        else:
            state = weight_files.from_file(state, weight_files.seed_targets(module))
            for key in weight_files.seed_extras(module):
                state.pop(key, None)
        module.load_state_dict(state, strict=strict)

    # ----------------------------------------------------------- steps params
    def next_position(self) -> tuple[int, int, int]:
        """``(epoch, local_step, global_step)`` of the next batch to train.

        Inside ``on_batch_end`` the current batch counts as trained; inside
        ``on_epoch_end`` the epoch counts as finished (torch4keras's rule).
        """
        trainer = self.trainer
        epoch, local, step = trainer.epoch, trainer.local_step, trainer.global_step
        if trainer._batch_done:
            local, step = local + 1, step + 1
        if trainer.steps_per_epoch and local >= trainer.steps_per_epoch:
            epoch, local = epoch + 1, 0
        return epoch, local, step

    def save_steps_params(self, path: str | os.PathLike[str]) -> None:
        """See :meth:`Trainer.save_steps_params
        <b4t.trainer.trainer.Trainer.save_steps_params>`."""
        if not self.trainer.is_master:
            return
        epoch, local, step = self.next_position()
        atomic_save(
            {
                "resume_step": local,
                "resume_epoch": epoch,
                "global_step": step,
                "schedulers": [s.state_dict() for s in self.trainer.schedulers],
            },
            path,
        )

    def load_steps_params(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """See :meth:`Trainer.load_steps_params
        <b4t.trainer.trainer.Trainer.load_steps_params>`."""
        state = load_file(path)
        if not isinstance(state, Mapping):
            raise TypeError(f"{path} does not hold steps params")
        self.resume = ResumePoint.from_steps_params(state, path)
        return dict(state)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """See :meth:`Trainer.state_dict <b4t.trainer.trainer.Trainer.state_dict>`."""
        trainer = self.trainer
        trainer._require_compiled("state_dict")
        assert trainer.optimizer is not None
        grads = None
        if trainer.global_step % trainer.grad_accumulation_steps:  # mid-accumulation
            grads = {
                n: p.grad.detach().clone()
                for n, p in trainer.module.named_parameters()
                if p.grad is not None
            }
        cursor = trainer._cursor
        return {
            "format": CHECKPOINT_FORMAT,
            "model": trainer.module.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "schedulers": [s.state_dict() for s in trainer.schedulers],
            "scaler": trainer.precision.state_dict(),
            "callbacks": [
                {"name": type(cb).__name__, "state": cb.state_dict()} for cb in trainer.callbacks
            ],
            "epoch": trainer.epoch,
            "local_step": trainer.local_step,
            "global_step": trainer.global_step,
            "epoch_sums": dict(trainer.epoch_totals.sums),
            "epoch_last": dict(trainer.epoch_totals.last),
            "epoch_count": trainer.epoch_totals.count,
            "grads": grads,
            "loader": cursor.state_dict() if cursor is not None else None,
            "rng": get_rng_state(),
        }

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """See :meth:`Trainer.save_checkpoint <b4t.trainer.trainer.Trainer.save_checkpoint>`."""
        if self.trainer._in_hooks:
            self.pending_saves.append(os.fspath(path))
        elif self.trainer.is_master:
            atomic_save(self.state_dict(), path)

    def flush_saves(self) -> None:
        """Write the checkpoints asked for inside the hook that just ended (one state)."""
        pending, self.pending_saves = self.pending_saves, []
        if pending and self.trainer.is_master:
            state = self.state_dict()
            for path in dict.fromkeys(pending):
                atomic_save(state, path)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """See :meth:`Trainer.load_checkpoint <b4t.trainer.trainer.Trainer.load_checkpoint>`."""
        trainer = self.trainer
        trainer._require_compiled("load_checkpoint")
        assert trainer.optimizer is not None
        state = load_file(path)
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a b4t trainer checkpoint (see save_checkpoint)")
        trainer.module.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        if len(state["schedulers"]) != len(trainer.schedulers):
            raise ValueError(
                f"{path} holds {len(state['schedulers'])} scheduler states but "
                f"{len(trainer.schedulers)} schedulers are compiled"
            )
        for sched, sched_state in zip(trainer.schedulers, state["schedulers"]):
            sched.load_state_dict(sched_state)
        trainer.precision.load_state_dict(state["scaler"])
        if state["grads"]:
            params = dict(trainer.module.named_parameters())
            for name, grad in state["grads"].items():
                params[name].grad = grad.to(params[name].device)
        self.resume = ResumePoint.from_checkpoint(state)

    # ----------------------------------------------------------------- resume
    def resume_fit(self, cursor: LoaderCursor) -> None:
        """At the start of ``fit``: apply the pending :class:`ResumePoint`, if any (counters,
        schedulers, loader position, callback states, then the run's RNG states)."""
        point, self.resume = self.resume, None
        if point is None:
            return
        trainer = self.trainer
        trainer.epoch, trainer.local_step = point.epoch, point.local_step
        global_step = point.global_step
        if global_step is None:  # a torch4keras file: counters are positions in the epochs
            global_step = point.epoch * trainer.steps_per_epoch + point.local_step
        trainer.global_step = global_step
        for sched, sched_state in zip(trainer.schedulers, point.schedulers):
            sched.load_state_dict(sched_state)
        if point.loader is not None:
            cursor.load_state_dict(point.loader)
        elif point.skip_trained:  # the steps-params recipe: skip the batches trained on
            trainer._epoch_begin_on_resume = True
            try:
                per_pass = len(cursor.loader)  # type: ignore[arg-type]
            except TypeError:
                per_pass = 0
            cursor.skip(global_step % per_pass if per_pass else point.local_step)
        if point.callbacks is not None:
            self._load_callback_states(point.callbacks)
        if point.rng is not None:  # last: the cursor changed the RNG states while restoring
            set_rng_state(dict(point.rng))
        if point.epoch_totals is not None:
            trainer.epoch_totals = point.epoch_totals

    def _load_callback_states(self, saved: list[Mapping[str, Any]]) -> None:
        """Give each callback the saved state of the same class and occurrence index."""
        by_name: dict[str, list[Any]] = {}
        for entry in saved:
            by_name.setdefault(entry["name"], []).append(entry["state"])
        for cb in self.trainer.callbacks:
            states = by_name.get(type(cb).__name__)
            if states:
                cb.load_state_dict(states.pop(0))
        left = [name for name, states in by_name.items() for state in states if state]
        if left:
            warnings.warn(
                f"checkpoint states of callbacks {left} were not used: this run has no such "
                "callbacks",
                stacklevel=4,
            )
