"""Build arguments spelled in ``config.json``, as bert4torch 0.2.5 reads them.

0.2.5 merges every key of the config file into the model's arguments (an explicit
keyword argument wins), so a converted checkpoint's config can switch options on,
e.g. CDial-GPT's ``"shared_segment_embeddings": true``. b4t does the same for every
argument :func:`b4t.models.build_transformer_model` or the model class accepts; keys
that are neither stay accepted and are kept in ``ModelConfig.extra``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from b4t.models.config import ALIASES, ModelConfig

__all__ = ["NOT_FROM_CONFIG", "accepted_arguments", "config_arguments"]

# arguments a config file never sets: where to read from and what to build (not in the
# file in 0.2.5 either), b4t's own loading options, the classes' internal wiring, and
# transformers' keys of another meaning (T5 configs hold "is_decoder": false)
NOT_FROM_CONFIG = frozenset(
    {
        "config_path",
        "checkpoint_path",
        "model",
        "application",
        "return_model_config",
        "dtype",
        "device",
        "strict",
        "config",
        "variant",
        "settings",
        "word_embeddings",
        "is_decoder",
    }
)
# read by the config itself (ModelConfig fields and their spellings)
_CONFIG_KEYS = {f.name for f in dataclasses.fields(ModelConfig)} | set(ALIASES)


def _parameter_names(fn: Callable[..., Any]) -> set[str]:
    """Named parameters of ``fn`` (not ``*args`` / ``**kwargs``)."""
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind not in kinds and name != "self"
    }


def accepted_arguments(cls: type, build: Callable[..., Any]) -> set[str]:
    """The keyword arguments ``build`` and every ``__init__`` in ``cls``'s MRO (up to
    ``nn.Module``) name, less :data:`NOT_FROM_CONFIG` and the config's own keys."""
    names = _parameter_names(build)
    for klass in cls.__mro__:
        if klass is nn.Module:
            break
        if "__init__" in vars(klass):
            names |= _parameter_names(klass.__init__)
    return names - NOT_FROM_CONFIG - _CONFIG_KEYS


def config_arguments(
    raw: dict[str, Any] | None, accepted: set[str], explicit: Iterable[str]
) -> dict[str, Any]:
    """The config keys that are accepted arguments and were not passed explicitly."""
    if not raw:
        return {}
    given = set(explicit)
    return {k: v for k, v in raw.items() if k in accepted and k not in given}
