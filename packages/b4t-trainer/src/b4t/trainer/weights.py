"""Weights files as bert4torch 0.2.5 / torch4keras 0.0.4 write them: one state-dict file.

``save_weights(path)`` writes ``module.state_dict()`` to the file ``path`` (never a
folder), in bert4torch 0.2.5's module names: a submodule that knows its 0.2.5 names
(a b4t model built by ``build_transformer_model``, also inside the user's own module
as ``self.bert``) says so through ``seed_state_names()`` -> ``{own key: file key |
split/copy target}``, and its keys are renamed under its place in the module tree.
``load_weights(path)`` reads such a file, 0.2.5's own or b4t's, and files in the
module's own names too. ``prefix=`` / ``mapping=`` are 0.2.5's checkpoint-name forms.

A target is a str, ``None`` (the key keeps its name), or an object with ``keys``:
split on save with its ``save(tensor)`` and joined on load with ``load(tensors)``
(``Concat``, ``Copies``), or, without those, saved under ``keys[0]`` (``FirstOf``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["from_file", "seed_extras", "seed_targets", "targets", "to_file"]


def seed_targets(module: nn.Module, unnamed: list[str] | None = None) -> dict[str, Any]:
    """``{state-dict key of module: 0.2.5 file key(s)}`` from every submodule (``module``
    included) with a ``seed_state_names()`` that returns a mapping; others keep their keys.
    Submodules whose ``seed_state_names()`` returns ``None`` are appended to ``unnamed``.
    """
    out: dict[str, Any] = {}
    covered: list[str] = []
    for name, sub in module.named_modules():
        if any(c == "" or name == c or name.startswith(c + ".") for c in covered):
            continue  # inside a module whose names are already given
        names_fn = getattr(sub, "seed_state_names", None)
        if not callable(names_fn):
            continue
        names = names_fn()
        if names is None:
            if unnamed is not None:
                unnamed.append(name)
            continue
        lead = f"{name}." if name else ""
        for key, target in names.items():
            out[lead + key] = _prefixed(target, lead)
        covered.append(name)
    return out


def seed_extras(module: nn.Module) -> dict[str, Any]:
    """``{file key: tensor}`` of fixed tables 0.2.5 keeps in its state dict beside the
    weights, from submodules with ``seed_state_extras()`` (written on save, dropped on
    load: the module computes them)."""
    out: dict[str, Any] = {}
    for name, sub in module.named_modules():
        extras_fn = getattr(sub, "seed_state_extras", None)
        if callable(extras_fn):
            lead = f"{name}." if name else ""
            out.update({lead + key: value for key, value in extras_fn().items()})
    return out


def _prefixed(target: Any, lead: str) -> Any:
    if not lead or target is None:
        return target
    if isinstance(target, str):
        return lead + target
    return _Renamed(target, tuple(lead + k for k in target.keys))


class _Renamed:
    """A split/copy target whose file keys sit under a submodule's name."""

    def __init__(self, inner: Any, keys: tuple[str, ...]) -> None:
        self.inner, self.keys = inner, keys
        if hasattr(inner, "save"):
            self.save = inner.save
        if hasattr(inner, "load"):
            self.load = inner.load


def targets(module: nn.Module, prefix: str | None, mapping: Mapping[str, Any] | None) -> dict:
    """``{module key: file key(s)}`` for 0.2.5's ``prefix=`` or b4t's ``mapping=``.

    ``mapping`` maps module keys to file keys. ``prefix`` takes the mapping from
    ``variable_mapping()`` of the whole module (``prefix=''``) or of the submodule of
    that name (``prefix='bert'``: ``bert.<key>`` is written under the checkpoint name
    the ``bert`` submodule maps ``<key>`` to).
    """
    if mapping is None:
        assert prefix is not None
        try:
            owner = module if prefix == "" else module.get_submodule(prefix)
        except AttributeError:
            raise ValueError(
                f"prefix={prefix!r}: {type(module).__name__} has no submodule {prefix!r}"
            ) from None
        if not hasattr(owner, "variable_mapping"):
            raise TypeError(
                f"prefix={prefix!r}: {type(owner).__name__} has no variable_mapping(); "
                "pass mapping={module key: file key} instead"
            )
        mapping = owner.variable_mapping()
    lead = f"{prefix}." if prefix else ""
    out: dict[str, Any] = {}
    for key, target in mapping.items():
        if target is not None and not isinstance(target, str) and not hasattr(target, "keys"):
            raise TypeError(f"mapping[{key!r}] must be a file key, got {target!r}")
        out[f"{lead}{key}"] = target
    return out


def to_file(state: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` under its file keys (module keys without a target keep their names)."""
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        target = targets.get(key)
        if target is None:
            out[key] = tensor
        elif isinstance(target, str):
            out[target] = tensor
        elif hasattr(target, "save"):
            out.update(zip(target.keys, target.save(tensor), strict=True))
        else:
            out[target.keys[0]] = tensor
    return out


def from_file(state: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_file`: file keys found in ``state`` back to module keys."""
    out = dict(state)
    for key, target in targets.items():
        if target is None:
            continue
        if isinstance(target, str):
            if target in out and target != key:
                out[key] = out.pop(target)
        elif hasattr(target, "load"):
            if all(k in out for k in target.keys):
                out[key] = target.load([out.pop(k) for k in target.keys])
        else:
            found = [k for k in target.keys if k in out]
            if found:
                out[key] = out[found[0]]
                for k in found:
                    del out[k]
    return out
