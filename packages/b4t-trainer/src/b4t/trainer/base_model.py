"""``BaseModel``: an ``nn.Module`` mixin with bert4torch's trainer surface.

``BaseModel`` adds ``compile / fit / evaluate / predict / save_weights /
load_weights / save_steps_params / load_steps_params``; each delegates to the
:class:`~b4t.trainer.trainer.Trainer` the model owns (``model.trainer``).
Note that ``compile`` here is the trainer's (bert4torch's), not
``nn.Module.compile``; use ``torch.compile(model)`` for the latter.

``BaseModelDP`` and ``BaseModelDDP`` wrap an existing module in
``DataParallel`` / ``DistributedDataParallel`` and give it the same surface;
``model.module`` is the wrapped user module, weights are saved without any
``module.`` prefix, and under DDP only ``master_rank`` prints and saves.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from b4t.trainer.batches import unpacks_lists
from b4t.trainer.trainer import Trainer

_MISSING: Any = object()


def _either(
    seed_value: Any, b4t_value: Any, seed_name: str, b4t_name: str, missing: Any = _MISSING
) -> Any:
    """The one of torch4keras's and b4t's spellings of an argument that was given."""
    if seed_value is not missing and b4t_value is not missing:
        raise TypeError(f"pass {seed_name}= or {b4t_name}=, not both")
    if seed_value is missing and b4t_value is missing:
        raise TypeError(f"missing the argument {seed_name} ({b4t_name}=)")
    return b4t_value if seed_value is missing else seed_value


def _trainer_call(name: str) -> Callable[..., Any]:
    """A ``BaseModel`` method that runs ``model.trainer.<name>``, with :class:`Trainer`'s
    signature and docstring (``inspect.signature`` reads them through ``__wrapped__``)."""
    method = getattr(Trainer, name)

    @functools.wraps(method)
    def call(self: BaseModel, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.trainer, name)(*args, **kwargs)

    call.__qualname__ = f"BaseModel.{name}"
    return call


class BaseModel(nn.Module):
    """Subclass this instead of ``nn.Module`` to get ``model.compile(...)`` / ``model.fit(...)``.

    As in torch4keras, ``BaseModel(module)`` also wraps an existing module: the
    wrapper's ``forward`` is the module's, and its weights live under ``module.``.
    """

    def __init__(self, module: nn.Module | None = None) -> None:
        super().__init__()
        if module is not None:
            if not isinstance(module, nn.Module):
                raise TypeError(f"BaseModel(module) needs an nn.Module, got {type(module)}")
            self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped module's forward (``BaseModel(module)``); subclasses override it."""
        module = self._modules.get("module")
        if module is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no forward(): define one, or wrap a module "
                "with BaseModel(module)"
            )
        return module(*args, **kwargs)

    def _make_trainer(self) -> Trainer:
        trainer = Trainer(self)
        trainer.owner = self
        inner = self._modules.get("module")
        if inner is not None and type(self).forward is BaseModel.forward:
            trainer._unpack = unpacks_lists(inner)  # list inputs as the wrapped module takes them
        return trainer

    # torch4keras's BaseModel keeps the run's state on the model (``model.optimizer``,
    # ``model.global_step``, ...); here it lives on the trainer and is read through.
    _TRAINER_ATTRS = frozenset(
        {
            "optimizer",
            "scheduler",
            "criterion",
            "clip_grad_norm",
            "grad_accumulation_steps",
            "use_amp",
            "scaler",
            "metrics",
            "stateful_metrics",
            "global_step",
            "local_step",
            "epoch",
            "epochs",
            "steps_per_epoch",
            "total_steps",
            "callbacks",
            "stop_training",
            "train_dataloader",
        }
    )

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name not in BaseModel._TRAINER_ATTRS:
                raise
        trainer = self.trainer
        if name == "scheduler":
            scheds = trainer.schedulers
            return None if not scheds else scheds[0] if len(scheds) == 1 else list(scheds)
        if name == "criterion":
            return trainer.loss_fn
        if name == "total_steps":
            return trainer.steps_per_epoch * trainer.epochs
        if name == "train_dataloader":
            cursor = trainer._cursor
            return cursor.loader if cursor is not None else None
        return getattr(trainer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "stop_training":  # torch4keras callbacks stop a run through the model
            self.trainer.stop_training = bool(value)
            return
        super().__setattr__(name, value)

    @property
    def trainer(self) -> Trainer:
        """The :class:`Trainer` this model delegates to (created on first use)."""
        trainer = self.__dict__.get("_b4t_trainer")
        if trainer is None:
            trainer = self._make_trainer()
            self.__dict__["_b4t_trainer"] = trainer
        return trainer

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and deepcopy without the trainer: a copy gets its own on first use."""
        state = self.__dict__.copy()
        state.pop("_b4t_trainer", None)
        return state

    # The trainer's own signature and docstring (one source of truth: Trainer's); note
    # that this is bert4torch's compile, not nn.Module.compile.
    compile = _trainer_call("compile")  # type: ignore[assignment]

    def args_segmentate(self, train_X: Any) -> bool:
        """Whether ``train_X`` is spread over ``forward``'s arguments (``forward(*train_X)``):
        torch4keras's rule, never for a tensor, else when the forward (the wrapped
        module's, for ``BaseModel(module)``) takes two or more positional arguments."""
        if isinstance(train_X, torch.Tensor):
            return False
        inner = self._modules.get("module")
        if inner is not None and type(self).forward is BaseModel.forward:
            return unpacks_lists(inner)
        return unpacks_lists(self)

    def train_step(self, train_X: Any, train_y: Any) -> tuple[Any, torch.Tensor, dict[str, Any]]:
        """torch4keras's one forward + backward, without the optimizer step.

        Runs the forward (under the compiled autocast) and the loss on ``train_X`` /
        ``train_y`` (already on the device), divides the loss by
        ``grad_accumulation_steps`` and back-propagates it (through the AMP scaler).
        Returns ``(output, loss, loss_detail)``: the model's output, the divided scalar
        loss, and the loss's other parts (``{'loss1': ...}`` for a tuple loss, the other
        keys for a dict loss). A subclass that overrides it changes what ``fit`` runs for
        each batch, as in torch4keras (the optimizer step, metrics and callbacks stay
        ``fit``'s).
        """
        trainer = self.trainer
        trainer._require_compiled("train_step")
        loss, extras, output = trainer._compute(train_X, train_y)
        if trainer.grad_accumulation_steps > 1:
            loss = loss / trainer.grad_accumulation_steps
        trainer.precision.backward(loss)
        return output, loss, extras

    train_step._b4t_builtin = True  # type: ignore[attr-defined]  # fit runs it inline

    fit = _trainer_call("fit")
    evaluate = _trainer_call("evaluate")

    def predict(
        self, train_X: Any = _MISSING, return_all: int | None = None, *, X: Any = _MISSING
    ) -> Any:
        """:meth:`Trainer.predict`: eval mode, no gradients (``train_X`` is torch4keras's
        name; ``X=`` b4t's)."""
        inputs = _either(train_X, X, "train_X", "X")
        return self.trainer.predict(inputs, return_all)

    def save_weights(
        self,
        save_path: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        *,
        mapping: Mapping[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        seed_names: bool = False,
    ) -> None:
        """:meth:`Trainer.save_weights`: the state dict in one file at ``save_path``
        (bert4torch's ``(save_path, prefix)`` order; ``mapping=`` is keyword only;
        ``seed_names=True``: in bert4torch 0.2.5's module names, a file 0.2.5 loads;
        ``path=`` b4t's name)."""
        target = _either(save_path, path, "save_path", "path", missing=None)
        self.trainer.save_weights(target, prefix=prefix, mapping=mapping, seed_names=seed_names)

    def load_weights(
        self,
        load_path: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        strict: bool = True,
        prefix: str | None = None,
        *,
        mapping: Mapping[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        """:meth:`Trainer.load_weights` (bert4torch's ``(load_path, strict, prefix)`` order;
        ``mapping=`` is keyword only; ``path=`` b4t's name)."""
        source = _either(load_path, path, "load_path", "path", missing=None)
        self.trainer.load_weights(source, strict=strict, prefix=prefix, mapping=mapping)

    def save_steps_params(
        self,
        save_path: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        """:meth:`Trainer.save_steps_params` (``path=`` is b4t's name for ``save_path``)."""
        self.trainer.save_steps_params(_either(save_path, path, "save_path", "path", None))

    def load_steps_params(
        self,
        save_path: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """:meth:`Trainer.load_steps_params` (``path=`` is b4t's name for ``save_path``)."""
        return self.trainer.load_steps_params(_either(save_path, path, "save_path", "path", None))

    save_checkpoint = _trainer_call("save_checkpoint")
    load_checkpoint = _trainer_call("load_checkpoint")


class _WrapperModel(BaseModel):
    """A BaseModel whose forward runs a parallel wrapper around the user's module.

    Attributes it does not have itself are looked up on the user's module, so
    ``model.crf.decode(...)`` works on the wrapped model as on the bare one.
    """

    wrapper: nn.Module

    @property
    def module(self) -> nn.Module:  # the user's module, as DDP/DP expose it
        return self.wrapper.module

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapper = self.__dict__.get("_modules", {}).get("wrapper")
            if wrapper is None or name.startswith("__"):
                raise
            inner = wrapper.module
            try:
                return getattr(inner, name)
            except AttributeError:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}, and neither "
                    f"has the wrapped {type(inner).__name__!r}"
                ) from None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The user module's state dict (no ``wrapper.module.`` prefix)."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


class BaseModelDP(_WrapperModel):
    """``nn.DataParallel(module, device_ids=None, output_device=None, dim=0)`` with the trainer
    surface: the arguments are ``nn.DataParallel``'s (as in torch4keras)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.wrapper = nn.DataParallel(*args, **kwargs)

    def _make_trainer(self) -> Trainer:
        trainer = Trainer(self.module, forward_module=self.wrapper)
        trainer.owner = self
        return trainer


class BaseModelDDP(_WrapperModel):
    """``DistributedDataParallel`` with the trainer surface; only ``master_rank`` prints/saves.

    Call ``torch.distributed.init_process_group`` first (torchrun sets the
    environment). The arguments are ``DistributedDataParallel``'s (``module``,
    ``device_ids=``, ``output_device=``, ``find_unused_parameters=``, ...) plus
    ``master_rank``, as in torch4keras.
    """

    def __init__(self, *args: Any, master_rank: int = 0, **kwargs: Any) -> None:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise RuntimeError(
                "BaseModelDDP needs torch.distributed.init_process_group(...) to be called first"
            )
        super().__init__()
        self.master_rank = master_rank
        self.wrapper = nn.parallel.DistributedDataParallel(*args, **kwargs)

    def _make_trainer(self) -> Trainer:
        trainer = Trainer(self.module, forward_module=self.wrapper, master_rank=self.master_rank)
        trainer.owner = self
        return trainer


BM = BaseModel
"""torch4keras's short name for :class:`BaseModel`."""
