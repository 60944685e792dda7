"""bert4torch 0.2.5 / torch4keras 0.0.4's public surface against b4t's, and MIGRATION.md's rows.

``surface_differences`` walks every public class and function the seed modules define
(names not starting with ``_``), every public method of those classes and every parameter
(name, position, default), looks each up in the b4t packages MIGRATION.md's module table
maps the module to, and names each difference by a *surface id*:

- ``bert4torch.models.BERT``: the name (or a method, ``torch4keras.model.BaseModel.fit``)
  is missing in b4t;
- ``bert4torch.snippets.WebServing(host)``: a parameter of that callable (a class's
  ``__init__``) is missing, at another position, or has another default; ``(*args)`` /
  ``(**kwargs)`` when b4t does not take extra arguments the seed takes; ``(+name)`` when
  b4t requires an argument the seed does not have.

A name re-exported by another seed module (``bert4torch.models.BaseModel``) is checked
under the module that defines it (``torch4keras.model.BaseModel``), found through either
module's b4t packages.

MIGRATION.md names what it covers with backticked surface ids in its table rows;
``Qual(a, b=1)`` covers ``Qual(a)`` and ``Qual(b)``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SEED_ROOTS = ("bert4torch", "torch4keras")
_EMPTY = inspect.Parameter.empty
_VAR = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class Difference:
    """One surface difference: its id (what a MIGRATION.md row names) and what differs."""

    id: str
    what: str

    def __str__(self) -> str:
        return f"{self.id}: {self.what}"


# ------------------------------------------------------------------------- MIGRATION.md
def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row of a markdown text (header and rule lines excluded)."""
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[\s|:-]*", line):
            continue
        cells = [c.strip() for c in _split_cells(line.strip().strip("|"))]
        rows.append(cells)
    return rows


def _split_cells(line: str) -> list[str]:
    """Split a table line on ``|`` outside backticks (a cell may show ``a | b`` in code)."""
    cells, current, in_code = [], [], False
    for ch in line:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(current))
            current = []
        else:
            current.append(ch)
    cells.append("".join(current))
    return cells


def module_map(markdown: str) -> dict[str, list[str]]:
    """MIGRATION.md's module table: seed module -> the b4t packages that hold its names."""
    mapping: dict[str, list[str]] = {}
    for cells in table_rows(markdown):
        if len(cells) != 2:
            continue
        seed = re.fullmatch(r"`((?:bert4torch|torch4keras)\.\w+)`", cells[0])
        if seed:
            mapping[seed.group(1)] = re.findall(r"`(b4t\.\w+)`", cells[1])
    return mapping


def covered_ids(markdown: str) -> set[str]:
    """Every surface id a table row names (``Qual(a, b)`` gives ``Qual(a)`` and ``Qual(b)``)."""
    ids: set[str] = set()
    for cells in table_rows(markdown):
        if len(cells) == 2:  # the module table
            continue
        for code in re.findall(r"`([^`]+)`", " | ".join(cells)):
            ids.update(_ids_in(code))
    return ids


def _ids_in(code: str) -> set[str]:
    match = re.fullmatch(r"((?:bert4torch|torch4keras)(?:\.\w+)+)(?:\((.*)\))?", code.strip())
    if not match:
        return set()
    qual, params = match.groups()
    if params is None:
        return {qual}
    names = re.findall(r"(?:^|,)\s*(\+?\*{0,2}\w+)", _drop_nested(params))
    return {f"{qual}({name})" for name in names}


def _drop_nested(text: str) -> str:
    """``text`` without quoted strings and bracketed values (defaults may hold commas)."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}", "()", text)
    return text


# ------------------------------------------------------------------------- the walk
def _defined_in_seed(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None) or ""
    return module if module.split(".")[0] in SEED_ROOTS else None


def _public_methods(cls: type) -> dict[str, Any]:
    """Public methods a seed class defines or inherits from another seed class."""
    methods: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not _defined_in_seed(klass):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value):
                methods[name] = value
    return methods


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _params(sig: inspect.Signature) -> list[inspect.Parameter]:
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return params


def _same_default(a: Any, b: Any) -> bool:
    """Equal values of the same kind (``2`` and ``2.0`` are the same number, ``1`` and
    ``True`` are not)."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    numbers = (int, float)
    if not (isinstance(a, numbers) and isinstance(b, numbers)) and type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # arrays, tensors: compare their text
        return repr(a) == repr(b)


def _forwards_everything(params: list[inspect.Parameter]) -> bool:
    return len(params) == 2 and {p.kind for p in params} == set(_VAR)


def compare_signatures(qual: str, seed: Any, ours: Any) -> list[Difference]:
    """Parameter differences of two callables (bound ``self`` / ``cls`` ignored)."""
    seed_sig, our_sig = _signature(seed), _signature(ours)
    if seed_sig is None or our_sig is None:
        return []
    seed_params, our_params = _params(seed_sig), _params(our_sig)
    named = [p for p in seed_params if p.kind not in _VAR]
    if _forwards_everything(our_params) and named:
        shown = ", ".join(p.name for p in named)
        what = f"b4t's signature is (*args, **kwargs): 0.2.5's ({shown}) cannot be checked"
        return [Difference(f"{qual}(*)", what)]
    if _forwards_everything(our_params):
        return []
    ours_by_name = {p.name: p for p in our_params}
    our_kinds = {p.kind for p in our_params}
    out: list[Difference] = []
    for index, p in enumerate(seed_params):
        if p.kind in _VAR:
            if p.kind not in our_kinds:
                star = "*" if p.kind == inspect.Parameter.VAR_POSITIONAL else "**"
                out.append(Difference(f"{qual}({star}{p.name})", "b4t takes no such arguments"))
            continue
        mine = ours_by_name.get(p.name)
        if mine is None:
            how = "goes to **kwargs" if inspect.Parameter.VAR_KEYWORD in our_kinds else "missing"
            out.append(Difference(f"{qual}({p.name})", f"not a b4t parameter ({how})"))
            continue
        if p.kind in _POSITIONAL:
            at = our_params[index].name if index < len(our_params) else None
            if at != p.name or mine.kind not in _POSITIONAL:
                where = "keyword-only" if mine.kind not in _POSITIONAL else f"{at!r} there"
                what = f"positional ({index}) in 0.2.5, b4t: {where}"
                out.append(Difference(f"{qual}({p.name})", what))
                continue
        if p.default is not _EMPTY and not _same_default(p.default, mine.default):
            shown = "none" if mine.default is _EMPTY else repr(mine.default)
            out.append(Difference(f"{qual}({p.name})", f"default {p.default!r}, b4t {shown}"))
    seed_names = {p.name for p in seed_params}
    for p in our_params:
        if p.name not in seed_names and p.kind not in _VAR and p.default is _EMPTY:
            out.append(Difference(f"{qual}(+{p.name})", "b4t requires it, 0.2.5 has none"))
    return out


def _as_built(cls: type) -> type:
    """A b4t model class as ``build_transformer_model`` returns it: with the trainer's
    ``compile`` / ``fit`` / ``predict`` mixed in (0.2.5's model classes subclass
    ``BaseModel``)."""
    from b4t.models import Transformer
    from b4t.models.trainer_surface import with_trainer

    return with_trainer(cls) if issubclass(cls, Transformer) else cls


def _compare_class(qual: str, seed: type, ours: Any) -> list[Difference]:
    if not inspect.isclass(ours):
        return compare_signatures(qual, seed, ours)
    ours = _as_built(ours)
    out = compare_signatures(qual, seed.__init__, ours.__init__)
    for name, method in sorted(_public_methods(seed).items()):
        mine = inspect.getattr_static(ours, name, None)
        if mine is None or not hasattr(ours, name):
            out.append(Difference(f"{qual}.{name}", "method missing in b4t"))
            continue
        if isinstance(mine, (staticmethod, classmethod)):
            mine = mine.__func__
        if callable(mine) and not isinstance(mine, property):
            out.extend(compare_signatures(f"{qual}.{name}", method, mine))
    return out


def seed_surface(mapping: dict[str, list[str]]) -> dict[str, tuple[Any, list[str]]]:
    """``{qualified name: (seed object, b4t packages to look in)}`` for every public class
    and function of the mapped seed modules (re-exports under their defining module)."""
    surface: dict[str, tuple[Any, list[str]]] = {}
    for module_name, packages in mapping.items():
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            home = _defined_in_seed(obj)
            if home is None:
                continue
            home = home if home in mapping else module_name
            qual = f"{home}.{name}"
            found = surface.get(qual, (obj, []))[1]
            extra = mapping.get(home, []) + packages
            surface[qual] = (obj, list(dict.fromkeys(found + extra)))
    return surface


def surface_differences(mapping: dict[str, list[str]]) -> list[Difference]:
    """Every difference between the seed's surface and b4t's, sorted by id."""
    b4t: dict[str, ModuleType] = {}
    out: list[Difference] = []
    for qual, (obj, packages) in sorted(seed_surface(mapping).items()):
        name = qual.rsplit(".", 1)[1]
        for package in packages:
            b4t.setdefault(package, importlib.import_module(package))
        holders = [p for p in packages if hasattr(b4t[p], name)]
        if not holders:
            out.append(Difference(qual, f"missing in b4t (looked in {', '.join(packages)})"))
            continue
        ours = getattr(b4t[holders[0]], name)
        if inspect.isclass(obj):
            out.extend(_compare_class(qual, obj, ours))
        else:
            out.extend(compare_signatures(qual, obj, ours))
    return sorted(out, key=lambda d: d.id)


def resolve_seed(qual: str) -> Any:
    """The seed object a qualified name names (``None`` if it names nothing)."""
    parts = qual.split(".")
    try:
        obj: Any = importlib.import_module(".".join(parts[:2]))
    except ImportError:
        return None
    for part in parts[2:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def read_migration(root: Path) -> str:
    """The text of ``root/MIGRATION.md``."""
    return (root / "MIGRATION.md").read_text(encoding="utf-8")
