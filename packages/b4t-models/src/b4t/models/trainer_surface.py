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
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["TRAINER_MISSING", "trainer_base", "with_trainer"]

TRAINER_MISSING = (
    "model.compile(loss=..., optimizer=...) is the trainer's compile, which needs the "
    "b4t-trainer package: pip install b4t-trainer (for torch.compile use torch.compile(model))"
)

_MIXED: dict[type, type] = {}
_UNSET: Any = object()


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
    """``save_weights`` / ``load_weights`` as bert4torch 0.2.5's, plus b4t's layouts.

    ``save_weights(path)`` writes one state-dict file at ``path`` in 0.2.5's module names
    (see :mod:`b4t.models.seed_names`); ``prefix=''`` / ``prefix='bert'`` write 0.2.5's
    checkpoint-name forms, also one file; ``mapping=`` (b4t's keyword) and
    :meth:`save_pretrained` write b4t's checkpoint layouts (a Hugging Face folder, a
    ``.safetensors`` / ``.bin`` file); so does a ``.safetensors`` path (a torch pickle
    cannot be one).
    """

    _b4t_model_cls: type

    def seed_state_names(self) -> dict[str, Any] | None:
        """``{state-dict key: bert4torch 0.2.5 key(s)}``, or ``None`` where 0.2.5's names
        for this variant are not known (the trainer's weights-file protocol)."""
        from b4t.models.seed_names import seed_weight_names

        return seed_weight_names(self)  # type: ignore[arg-type]

    def seed_state_extras(self) -> dict[str, Any]:
        """Fixed tables 0.2.5's state dict holds beside the weights (NEZHA's and RoFormer's
        position tables): written with them, dropped on load."""
        from b4t.models.seed_names import seed_constant_tables

        return seed_constant_tables(self)  # type: ignore[arg-type]

    def load_weights(
        self,
        load_path: Any = None,
        strict: Any = True,
        prefix: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """bert4torch's ``load_weights(load_path, strict=True, prefix=None)``, plus b4t's forms.

        A state-dict file (what 0.2.5's or b4t's ``save_weights`` writes, in 0.2.5's or
        b4t's module names) loads as a state dict; a checkpoint (folder, safetensors,
        index, a file in checkpoint names) through the weight map. A second positional
        argument that is not a bool is b4t's ``mapping`` (b4t's order ``(path, mapping,
        strict)``); ``path=`` is b4t's keyword for ``load_path``. ``prefix=''`` reads
        checkpoint names; another prefix names a submodule.
        """
        path = load_path
        if "path" in kwargs:
            path = _one_path(path, kwargs.pop("path"), "path")
        if path is None:
            raise TypeError("load_weights() needs a path (load_path)")
        if not isinstance(strict, bool):  # b4t's positional order: (path, mapping, strict)
            kwargs["mapping"] = strict
            strict = True
            if isinstance(prefix, bool):
                strict, prefix, args = prefix, (args[0] if args else None), args[1:]
        if args:
            raise TypeError(f"load_weights() got {len(args)} positional arguments too many")
        kwargs["strict"] = strict
        base = trainer_base()
        assert base is not None
        if prefix:
            return base.load_weights(self, path, strict, prefix=prefix)  # type: ignore[arg-type]
        if prefix == "":
            kwargs.setdefault("mapping", None)
        if "mapping" in kwargs or not _is_state_file(path):
            return super().load_weights(path, **kwargs)  # type: ignore[misc]
        from b4t.trainer.state import load_file

        state = load_file(path)
        if _in_module_names(self, state):  # type: ignore[arg-type]
            return base.load_weights(self, state, strict)  # type: ignore[arg-type]
        return super().load_weights(state, **kwargs)  # type: ignore[misc]

    def save_weights(
        self, save_path: Any = None, prefix: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        """bert4torch's ``save_weights(save_path, prefix=None)``: one state-dict file.

        ``prefix=None``: the model's own state dict (``seed_names=True``: in 0.2.5's module
        names, a file 0.2.5 loads); ``prefix=''``: the checkpoint names of
        ``variable_mapping()``; another prefix: a submodule's checkpoint names.
        ``path=`` is b4t's keyword for ``save_path``. b4t's ``mapping=`` (also as the
        second positional argument, b4t's order) writes a checkpoint layout (see
        :meth:`save_pretrained`).
        """
        path = save_path
        if "path" in kwargs:
            path = _one_path(path, kwargs.pop("path"), "path")
        if path is None:
            raise TypeError("save_weights() needs a path (save_path)")
        if prefix is not None and not isinstance(prefix, str):  # b4t's (path, mapping)
            kwargs["mapping"] = prefix
            prefix, args = (args[0] if args else None), args[1:]
        if args:
            raise TypeError(f"save_weights() got {len(args)} positional arguments too many")
        is_safetensors = Path(os.fspath(path)).suffix == ".safetensors"
        if "mapping" in kwargs or (prefix is None and is_safetensors):
            if prefix is not None:
                raise ValueError("save_weights: pass prefix= or mapping=, not both")
            return super().save_weights(path, **kwargs)  # type: ignore[misc]
        seed_names = bool(kwargs.pop("seed_names", False))
        if kwargs:
            raise TypeError(f"save_weights() got unexpected keyword(s): {sorted(kwargs)}")
        base = trainer_base()
        assert base is not None
        return base.save_weights(  # type: ignore[arg-type]
            self, path, prefix=prefix, seed_names=seed_names
        )

    def predict(
        self,
        inputs: Any = _UNSET,
        return_all: int | None = None,
        *,
        train_X: Any = _UNSET,
        X: Any = _UNSET,
    ) -> Any:
        """bert4torch's ``Transformer.predict(inputs)``: ``forward(inputs)`` in eval mode
        without gradients (``train_X=`` / ``X=`` and ``return_all`` as the trainer's
        ``predict``; a model class's own ``predict`` runs when it has one)."""
        given = [v for v in (inputs, train_X, X) if v is not _UNSET]
        if len(given) != 1:
            raise TypeError("predict() takes the inputs once (inputs, train_X= or X=)")
        own = getattr(self._b4t_model_cls, "predict", None)
        if own is not None and return_all is None:
            return own(self, given[0])
        base = trainer_base()
        assert base is not None
        return base.predict(self, given[0], return_all)  # type: ignore[arg-type]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickle by the model class (importable by name); unpickling re-mixes it.
        state = self.__getstate__()  # type: ignore[attr-defined]
        return (_restore, (self._b4t_model_cls,), state)


def _one_path(positional: Any, keyword: Any, name: str) -> Any:
    if positional is not None:
        raise TypeError(f"got the path twice: positionally and as {name}=")
    return keyword


def _is_state_file(path: Any) -> bool:
    """A single torch-pickled file (not a folder, safetensors, index or GGUF file)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    return p.is_file() and p.suffix not in (".safetensors", ".json", ".gguf")


def _in_module_names(model: nn.Module, state: Any) -> bool:
    """Whether most keys of ``state`` are the model's own or 0.2.5's module names (a
    ``save_weights`` file), not checkpoint names."""
    if not isinstance(state, Mapping) or not state:
        return False
    names = set(model.state_dict())
    for target in (getattr(model, "seed_state_names", lambda: None)() or {}).values():
        names.update([target] if isinstance(target, str) else target.keys)
    names.update(getattr(model, "seed_state_extras", dict)())
    return 2 * sum(key in names for key in state) >= len(state)


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
