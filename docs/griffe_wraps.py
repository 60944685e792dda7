"""A griffe extension for the API site: a function made with ``functools.wraps(target)``
shows ``target``'s parameters.

griffe reads the sources without running them, so a public wrapper written as
``def build_transformer_model(*args, **kwargs)`` under ``@functools.wraps(_build, ...)``
would be documented with ``(*args, **kwargs)`` and its docstring's ``Args`` entries would
name parameters "not in the signature". At run time ``inspect.signature`` follows
``__wrapped__`` to the target; this extension gives the site the same view: the wrapper
takes the parameters (and return annotation) of the function it names, found in its own
module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

_WRAPS = re.compile(r"^(?:functools\.)?wraps\(\s*([A-Za-z_][A-Za-z0-9_]*)")


def _functions(obj: griffe.Object) -> Iterator[griffe.Function]:
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Function):
            yield member
        elif isinstance(member, (griffe.Module, griffe.Class)):
            yield from _functions(member)


class WrappedSignatures(griffe.Extension):
    """Copy the target's signature onto every ``functools.wraps`` wrapper of a package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Once the package is loaded (every target known)."""
        for func in _functions(pkg):
            for decorator in func.decorators:
                match = _WRAPS.match(str(decorator.value))
                target = match and func.parent.members.get(match.group(1))
                if isinstance(target, griffe.Function):
                    func.parameters = target.parameters
                    func.returns = target.returns
