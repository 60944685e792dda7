"""A griffe extension for the API site: Sphinx-style references in docstrings become links.

The docstrings name other objects the Sphinx way (``:class:`MultiHeadAttention```,
``:meth:`~b4t.generation.SeqGeneration.predict```). Markdown has no such roles, so each
becomes a code span linked through mkdocs-autorefs to the object it names (resolved as
``check_docstrings.resolve_role`` does), or a plain code span where the object is not on
the site. ``check_docstrings`` fails the build on a reference that names nothing. A reST
``.. code-block::`` line is dropped: the indented block under it is code in Markdown too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_docstrings  # found through the path above: docs/ is not a package

_DIRECTIVE = re.compile(r"^[ \t]*\.\. (?:code-block|code|sourcecode)::.*\n", re.MULTILINE)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def link_roles(obj: griffe.Object) -> None:
    """Rewrite the Sphinx-style references of ``obj``'s docstring as Markdown."""
    if obj.docstring is None:
        return

    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        text = target.rsplit(".", 1)[-1] if short else target
        path = check_docstrings.resolve_role(obj, target)
        if path is None and target.startswith("b4t."):
            path = target  # another package's object, not loaded here: autorefs finds it
        if path is None:
            return f"`{text}`"
        return f'<autoref identifier="{path}" optional><code>{text}</code></autoref>'

    text = check_docstrings.ROLE.sub(replace, obj.docstring.value)
    # a reST ``.. code-block:: python`` line: the indented block under it is code in Markdown too
    obj.docstring.value = _DIRECTIVE.sub("", text)


class SphinxRoles(griffe.Extension):
    """Link the Sphinx-style references once a package is loaded (all its names known)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite every docstring of the package."""
        for obj in _objects(pkg):
            link_roles(obj)
