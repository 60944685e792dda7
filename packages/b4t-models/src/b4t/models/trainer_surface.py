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
- ``save_weights(save_path, prefix=None)`` / ``load_weights(load_path, strict=True,
  prefix=None)`` take bert4torch's positional order (``prefix=''`` is the checkpoint
  layout of ``variable_mapping()``, i.e. ``mapping=None``); b4t's ``mapping=`` is keyword
  only, in the models and the trainer alike.
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
        strict: bool = True,
        prefix: str | None = None,
        *,
        mapping: Any = _UNSET,
        path: Any = None,
        **kwargs: Any,
    ) -> Any:
        """bert4torch's ``load_weights(load_path, strict=True, prefix=None)``, plus b4t's forms.

        A state-dict file (what 0.2.5's or b4t's ``save_weights`` writes, in 0.2.5's or
        b4t's module names) loads as a state dict; a checkpoint (folder, safetensors,
        index, a file in checkpoint names) through the weight map. ``prefix=''`` reads
        checkpoint names; another prefix names a submodule. b4t's ``mapping=`` and the
        other options of :func:`~b4t.models.loading.load_into` are keyword only;
        ``path=`` is b4t's keyword for ``load_path``.
        """
        path = _the_path("load_weights", "load_path", load_path, path)
        if not isinstance(strict, bool):
            raise TypeError(
                f"load_weights(load_path, strict, prefix): strict must be a bool, got "
                f"{type(strict).__name__} (bert4torch's order); pass b4t's mapping by keyword: "
                "load_weights(path, mapping=...)"
            )
        base = trainer_base()
        assert base is not None
        if prefix:
            return base.load_weights(self, path, strict, prefix=prefix)  # type: ignore[arg-type]
        kwargs["strict"] = strict
        if mapping is not _UNSET:
            kwargs["mapping"] = mapping
        elif prefix == "":
            kwargs["mapping"] = None
        if "mapping" in kwargs or not _is_state_file(path):
            return super().load_weights(path, **kwargs)  # type: ignore[misc]
        from b4t.trainer.state import load_file

        state = load_file(path)
        if _in_module_names(self, state):  # type: ignore[arg-type]
            return base.load_weights(self, state, strict)  # type: ignore[arg-type]
        return super().load_weights(state, **kwargs)  # type: ignore[misc]

    def save_weights(
        self,
        save_path: Any = None,
        prefix: str | None = None,
        *,
        mapping: Any = _UNSET,
        path: Any = None,
        seed_names: bool = False,
    ) -> Any:
        """bert4torch's ``save_weights(save_path, prefix=None)``: one state-dict file.

        ``prefix=None``: the model's own state dict (``seed_names=True``: in 0.2.5's module
        names, a file 0.2.5 loads); ``prefix=''``: the checkpoint names of
        ``variable_mapping()``; another prefix: a submodule's checkpoint names.
        ``path=`` is b4t's keyword for ``save_path``. b4t's ``mapping=`` (keyword only)
        writes a checkpoint layout (see :meth:`save_pretrained`), as does a
        ``.safetensors`` path.
        """
        path = _the_path("save_weights", "save_path", save_path, path)
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(
                f"save_weights(save_path, prefix): prefix must be a str, got "
                f"{type(prefix).__name__} (bert4torch's order); pass b4t's mapping by "
                "keyword: save_weights(path, mapping=...)"
            )
        is_safetensors = Path(os.fspath(path)).suffix == ".safetensors"
        if mapping is not _UNSET or (prefix is None and is_safetensors):
            if prefix is not None or seed_names:
                what = "prefix=" if prefix is not None else "seed_names=True"
                raise ValueError(
                    f"save_weights({os.fspath(path)!r}): {what} names a state-dict file; "
                    "mapping= and a .safetensors path write the checkpoint layout"
                )
            layout = None if mapping is _UNSET else mapping
            return super().save_weights(path, mapping=layout)  # type: ignore[misc]
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


def _the_path(method: str, seed_name: str, positional: Any, keyword: Any) -> Any:
    """The path given positionally (bert4torch's ``seed_name``) or as ``path=``, once."""
    if positional is not None and keyword is not None:
        raise TypeError(f"{method}() got the path twice: as {seed_name} and as path=")
    path = keyword if positional is None else positional
    if path is None:
        raise TypeError(f"{method}() needs a path ({seed_name})")
    return path


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
