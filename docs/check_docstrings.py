"""Every public name of the six b4t packages has a docstring: list the ones that do not.

Public names are what each package exports (the ``__all__`` of ``b4t.<name>/__init__.py``,
the public names by the design: users import from the package) and the public methods
and properties (no leading underscore) that an exported class defines itself; torch's
``extra_repr`` hook is not API. A method that
overrides a documented method of a b4t base class inherits that docstring, as
``inspect.getdoc`` and the API site do. Module attributes (a table such as ``ACT2FN``)
are documented by a string literal right below the assignment.

The sources are read statically with griffe (nothing is imported, so neither torch nor
the packages need to be installed), the way mkdocstrings reads them for the API site.
``docs/hooks.py`` runs this check before ``mkdocs build``; alone:

    python docs/check_docstrings.py          # exit status 1 and the list when names lack one

It also checks the Sphinx-style references (``:class:`Name```) in those docstrings: each
must name an object (``docs/griffe_roles.py`` turns them into links on the site).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["tokenizers", "layers", "models", "trainer", "generation", "adversarial"]
SEARCH_PATHS = [str(ROOT / "packages" / f"b4t-{name}" / "src") for name in PACKAGES]
# Names that are documented where they are described, not by a docstring of their own.
EXEMPT = {"__version__", "extra_repr"}
# A Sphinx-style reference in a docstring: :class:`Name`, :meth:`~b4t.x.Y.z`, ...
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`(~?)([^`]+)`")


def load(search_paths: list[str] | None = None) -> dict[str, griffe.Module]:
    """The six packages as griffe modules, aliases resolved, inherited docstrings applied."""
    loader = griffe.GriffeLoader(
        search_paths=search_paths or SEARCH_PATHS,
        extensions=griffe.load_extensions("griffe_inherited_docstrings"),
    )
    modules = {name: loader.load(f"b4t.{name}") for name in PACKAGES}
    loader.resolve_aliases(implicit=False, external=None)
    return modules


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    try:
        return obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None  # an export that names something outside b4t (not ours to document)


def missing_docstrings(modules: dict[str, griffe.Module]) -> list[tuple[str, str]]:
    """``(file, dotted name)`` of every public name without a docstring, sorted."""
    missing: set[tuple[str, str]] = set()
    unresolved: list[str] = []
    seen: set[str] = set()
    for module in modules.values():
        for name in module.exports or ():
            if name in EXEMPT:
                continue
            if name not in module.members:
                unresolved.append(f"{module.path}.__all__ names {name!r}, which it lacks")
                continue
            obj = _target(module.members[name])
            if obj is None or obj.path in seen:
                continue
            seen.add(obj.path)
            missing.update(_check(obj))
    if unresolved:
        raise SystemExit("\n".join(unresolved))
    return sorted(missing)


def resolve_role(obj: griffe.Object, target: str) -> str | None:
    """The full path a reference written in ``obj``'s docstring names, or None.

    As Sphinx reads it: a dotted ``b4t.`` path as it is, any other name looked up from the
    object outwards (its members, inherited ones included, the names its module
    imports, then the enclosing scopes).
    """
    target = target.strip().removesuffix("()")
    collection = obj.modules_collection
    if target.startswith("b4t."):
        return target if _lookup(collection, target) else None
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        members = scope.all_members if scope.is_class else scope.members
        if head in members:
            path = f"{members[head].path}{'.' + rest if rest else ''}"
            return path if _lookup(collection, path) else None
        try:
            path = f"{scope.resolve(head)}{'.' + rest if rest else ''}"
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        return path if _lookup(collection, path) else None
    return None


def _lookup(collection: griffe.ModulesCollection, path: str) -> bool:
    try:
        collection[path]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def broken_references(modules: dict[str, griffe.Module]) -> list[tuple[str, str]]:
    """``(dotted name, reference)`` for each reference in a public docstring that names
    nothing (a renamed or removed object), sorted."""
    broken: set[tuple[str, str]] = set()
    for obj in _public_objects(modules):
        for match in ROLE.finditer(obj.docstring.value if obj.docstring else ""):
            if resolve_role(obj, match.group(2)) is None:
                broken.add((obj.path, match.group(0)))
    return sorted(broken)


def _public_objects(modules: dict[str, griffe.Module]) -> Iterator[griffe.Object]:
    seen: set[str] = set()
    for module in modules.values():
        yield module
        for name in module.exports or ():
            obj = _target(module.members[name]) if name in module.members else None
            if obj is not None and obj.path not in seen:
                seen.add(obj.path)
                yield obj
                if obj.is_class:
                    for member_name, member in obj.members.items():
                        if not member_name.startswith("_") and not member.is_alias:
                            yield member


def _file(obj: griffe.Object) -> str:
    path = Path(obj.filepath) if not isinstance(obj.filepath, list) else Path(obj.filepath[0])
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _check(obj: griffe.Object) -> Iterator[tuple[str, str]]:
    if not obj.docstring or not obj.docstring.value.strip():
        yield _file(obj), obj.path
    if not obj.is_class:
        return
    for name, member in obj.members.items():
        if name.startswith("_") or name in EXEMPT or member.is_alias or member.is_attribute:
            continue
        if member.is_function and "property" not in member.labels and member.docstring is None:
            yield _file(member), member.path
        elif member.is_class or "property" in member.labels:
            yield from _check(member)


def report(missing: list[tuple[str, str]], broken: list[tuple[str, str]]) -> str:
    """The missing names grouped by file, then the broken references; empty if none."""
    lines = [f"public names without a docstring: {len(missing)}"] if missing else []
    current = None
    for file, name in missing:
        if file != current:
            lines.append(f"  {file}")
            current = file
        lines.append(f"    {name}")
    if broken:
        lines.append(f"references in public docstrings that name nothing: {len(broken)}")
        lines.extend(f"  {name}: {reference}" for name, reference in broken)
    return "\n".join(lines)


def check() -> str:
    """The report of the six packages' sources (empty when all is well)."""
    modules = load()
    return report(missing_docstrings(modules), broken_references(modules))


def main() -> int:
    """Print the missing names and broken references; exit status 1 when there are any."""
    problems = check()
    if problems:
        print(problems, file=sys.stderr)
        return 1
    print("every public name has a docstring and every reference in them resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
