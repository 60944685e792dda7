"""bert4torch's small pure-Python snippets: ``is_string``, ``insert_arguments``,
``delete_arguments``, ``get_kw`` and ``DottableDict``."""

from __future__ import annotations

import functools

TYPE_CHECKING = False  # typing is not imported at run time (import cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def is_string(s: Any) -> bool:
    """Whether ``s`` is a ``str``."""
    return isinstance(s, str)


def insert_arguments(**arguments: Any) -> Callable[[Callable], Callable]:
    """Decorator for a method (usually ``__init__``) that adds keyword arguments.

    Each ``name=default`` becomes an attribute of ``self`` before the method runs:
    the caller's value when given (it is then removed from the keywords the method
    sees), else the default.

    >>> class A:
    ...     @insert_arguments(scale=2)
    ...     def __init__(self, x):
    ...         self.y = x * self.scale
    >>> A(3, scale=5).y
    15
    """

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            for name, default in arguments.items():
                setattr(self, name, kwargs.pop(name, default))
            return method(self, *args, **kwargs)

        return wrapper

    return decorate


def delete_arguments(*arguments: str) -> Callable[[Callable], Callable]:
    """Decorator for a method that rejects the named keyword arguments.

    Passing one of them raises ``TypeError("<Class> got an unexpected keyword
    argument '<name>'")``, the message Python gives for an unknown keyword.
    """

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            for name in arguments:
                if name in kwargs:
                    raise TypeError(
                        f"{type(self).__name__} got an unexpected keyword argument '{name}'"
                    )
            return method(self, *args, **kwargs)

        return wrapper

    return decorate


def get_kw(cls: Callable, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The items of ``kwargs`` whose keys are not named positional-or-keyword parameters
    of ``cls`` (its ``__init__`` for a class), in their order: what is left to pass on."""
    import inspect

    own = set(inspect.getfullargspec(cls).args)
    return {key: value for key, value in kwargs.items() if key not in own}


class DottableDict(dict):
    """A ``dict`` whose items are also attributes: ``d["a"]`` and ``d.a`` are one value.

    ``allowDotting(False)`` turns the attribute view off (attributes then live
    apart from the items); ``allowDotting()`` turns it back on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self

    def allowDotting(self, state: bool = True) -> None:
        """Share (``True``) or separate (``False``) the attributes and the items."""
        self.__dict__ = self if state else {}
