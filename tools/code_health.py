"""Code-health check for the source trees: file length and function length.

    python tools/code_health.py            # checks packages/*/src; exit 1 on a violation

The rules (issue #22):

- no source file over ``MAX_FILE_LINES`` lines;
- no function or method over ``MAX_FUNCTION_LINES`` lines, counted from its ``def`` line to
  its last line (docstring included), unless a comment line ``# long: <reason>`` stands
  directly above the ``def`` (above its decorators, if it has any).

Only the standard library is used, so the check runs anywhere (CI's lint and tests sessions).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (``path:line``), what (the file or function) and the length."""

    path: str
    line: int
    what: str
    length: int
    limit: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} is {self.length} lines (limit {self.limit})"


Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Yield ``(qualified name, node)`` for every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, Function):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from _functions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _has_long_reason(lines: list[str], node: Function) -> bool:
    """Whether the line directly above the ``def`` (or its first decorator) is ``# long: why``."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    if first < 2:
        return False
    above = lines[first - 2].strip()
    return above.startswith(LONG_MARK) and bool(above[len(LONG_MARK) :].strip())


def check_source(
    text: str,
    path: str,
    max_file_lines: int = MAX_FILE_LINES,
    max_function_lines: int = MAX_FUNCTION_LINES,
) -> list[Violation]:
    """Check one file's source text; ``path`` only names it in the messages."""
    lines = text.splitlines()
    found: list[Violation] = []
    if len(lines) > max_file_lines:
        found.append(Violation(path, 1, "file", len(lines), max_file_lines))
    for name, node in _functions(ast.parse(text, filename=path)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > max_function_lines and not _has_long_reason(lines, node):
            found.append(
                Violation(path, node.lineno, f"function {name}", length, max_function_lines)
            )
    return found


def source_files(root: Path = ROOT) -> list[Path]:
    """Every Python file under ``packages/*/src`` below ``root``, sorted."""
    return sorted(root.glob("packages/*/src/**/*.py"))


def check_files(paths: Iterable[Path], root: Path = ROOT) -> list[Violation]:
    """Check each file; paths in the messages are relative to ``root``."""
    found: list[Violation] = []
    for path in paths:
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        found.extend(check_source(path.read_text(encoding="utf-8"), shown))
    return found


def main(argv: list[str] | None = None) -> int:
    """Print every violation under ``packages/*/src`` (or the files given); 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a).resolve() for a in args] or source_files()
    found = check_files(paths)
    for violation in found:
        print(violation)
    if found:
        print(
            f"{len(found)} violation(s): split the file/function, or write "
            f"'{LONG_MARK} <reason>' directly above a def that reads best long"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
