"""The model-is-a-trainer seam: built models gain b4t-trainer's ``compile`` / ``fit`` / ``predict``.

In bert4torch 0.2.5 every model class subclasses the trainer's ``BaseModel``, so
``build_transformer_model(...)`` returns something with ``compile``, ``fit`` and
``predict``. b4t keeps the packages apart (b4t-models never imports b4t-trainer at
install time; the dependency graph stays acyclic) and joins them at build time:

- :func:`with_trainer` looks for ``b4t.trainer.BaseModel``. When b4t-trainer is
  installed it returns a subclass of the model class and ``BaseModel``, created once
  per class and cached; without it, the model class unchanged.
- The mixed class's MRO is ``[Mixed, ModelClass, ..., BaseModel, nn.Module]``: the
  model's own methods (``forward``, ``variable_mapping``, ``save_weights`` /
  ``load_weights`` with checkpoint layouts and ``mapping=``) come first, then the
  trainer surface (``fit``, ``evaluate``, ``predict``, ``save_steps_params``, ...).
  ``compile`` is taken from ``BaseModel`` explicitly (the model class's own
  ``compile`` is only the "install b4t-trainer" guard).
- ``save_weights`` / ``load_weights`` also take bert4torch's arguments:
  ``load_weights(path, strict)`` positionally and ``prefix=`` (``prefix=''`` is the
  checkpoint layout of ``variable_mapping()``, i.e. ``mapping=None``).
- Instances pickle and deep-copy (by the model class, re-mixed on load), so
  ``torch.save(model)`` / ``copy.deepcopy(model)`` work; the copy gets its own trainer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["TRAINER_MISSING", "trainer_base", "with_trainer"]

TRAINER_MISSING = (
    "model.compile(loss=..., optimizer=...) is the trainer's compile, which needs the "
    "b4t-trainer package: pip install b4t-trainer (for torch.compile use torch.compile(model))"
)

_MIXED: dict[type, type] = {}


def trainer_base() -> type | None:
    """``b4t.trainer.BaseModel`` when b4t-trainer is importable, else ``None``."""
    try:
        from b4t.trainer import BaseModel
    except ImportError:
        return None
    return BaseModel


def _restore(model_cls: type) -> Any:
    """Unpickling helper: a bare instance of the (re-)mixed class, state set afterwards."""
    return object.__new__(with_trainer(model_cls))


class _SeedWeights:
    """``save_weights`` / ``load_weights`` accepting both b4t's and bert4torch's arguments."""

    _b4t_model_cls: type

    def load_weights(
        self,
        path: Any,
        *args: Any,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The model's ``load_weights``; also bert4torch's ``(path, strict, prefix)``.

        A bool second argument is ``strict`` (0.2.5's order), anything else b4t's
        ``mapping``. ``prefix=''`` reads the checkpoint layout (``mapping=None``); another
        prefix names a submodule, handled by the trainer's ``load_weights``.
        """
        if args and isinstance(args[0], bool):
            kwargs.setdefault("strict", args[0])
            args = args[1:]
        if prefix:
            base = trainer_base()
            assert base is not None
            return base.load_weights(self, path, kwargs.get("strict", True), prefix=prefix)  # type: ignore[arg-type]
        if prefix == "":
            kwargs.setdefault("mapping", None)
        return super().load_weights(path, *args, **kwargs)  # type: ignore[misc]

    def save_weights(
        self, path: str | os.PathLike[str], *args: Any, prefix: str | None = None, **kwargs: Any
    ) -> Any:
        """The model's ``save_weights``; also bert4torch's ``(path, prefix)``.

        A str second argument is 0.2.5's ``prefix``; ``prefix=''`` writes the checkpoint
        layout (``mapping=None``), another prefix names a submodule (the trainer's
        ``save_weights`` renames its keys).
        """
        if args and isinstance(args[0], str):
            prefix, args = args[0], args[1:]
        if prefix:
            base = trainer_base()
            assert base is not None
            return base.save_weights(self, path, prefix=prefix)  # type: ignore[arg-type]
        if prefix == "":
            mapping = kwargs.pop("mapping", None)
            if isinstance(mapping, Mapping) and mapping:
                raise ValueError("save_weights: pass prefix='' or mapping=, not both")
            kwargs["mapping"] = None
        return super().save_weights(path, *args, **kwargs)  # type: ignore[misc]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickle by the model class (importable by name); unpickling re-mixes it.
        state = self.__getstate__()  # type: ignore[attr-defined]
        return (_restore, (self._b4t_model_cls,), state)


def with_trainer(model_cls: type[nn.Module]) -> type[nn.Module]:
    """``model_cls`` with b4t-trainer's ``BaseModel`` mixed in, when b4t-trainer is installed.

    Returns ``model_cls`` itself when b4t-trainer is not importable or the class is a
    ``BaseModel`` already. The mixed class keeps the model's name and module, is
    created once per class, and is a subclass of both.
    """
    base = trainer_base()
    if base is None or issubclass(model_cls, base):
        return model_cls
    mixed = _MIXED.get(model_cls)
    if mixed is None:
        namespace = {
            "__module__": model_cls.__module__,
            "__qualname__": model_cls.__qualname__,
            "__doc__": model_cls.__doc__,
            "_b4t_model_cls": model_cls,
            "compile": base.compile,  # the trainer's, not the model's install-guard
        }
        mixed = type(model_cls.__name__, (_SeedWeights, model_cls, base), namespace)
        _MIXED[model_cls] = mixed
    return mixed
