"""The code-health rules of issue #22 (tools/code_health.py), and the source trees against them."""

from __future__ import annotations

import code_health
import pytest
from code_health import MAX_FILE_LINES, MAX_FUNCTION_LINES, check_source


def _function(name: str, lines: int, indent: str = "") -> str:
    """Source of a function exactly ``lines`` lines long, ``def`` line and docstring included."""
    body = [f'{indent}    """Docstring."""'] + [f"{indent}    x = {i}" for i in range(lines - 3)]
    return "\n".join([f"{indent}def {name}():", *body, f"{indent}    return x"]) + "\n"


def test_function_at_the_limit_passes_and_one_more_line_fails() -> None:
    assert check_source(_function("ok", MAX_FUNCTION_LINES), "m.py") == []
    source = "import os\n\n\n" + _function("too_long", MAX_FUNCTION_LINES + 1)
    (violation,) = check_source(source, "pkg/m.py")
    assert (violation.path, violation.line, violation.length) == ("pkg/m.py", 4, 61)
    expected = f"pkg/m.py:4: function too_long is 61 lines (limit {MAX_FUNCTION_LINES})"
    assert str(violation) == expected


def test_methods_and_nested_functions_are_named_by_their_owner() -> None:
    source = "class Model:\n" + _function("forward", 70, indent="    ")
    source += "\n\ndef outer():\n" + _function("inner", 65, indent="    ") + "    return inner\n"
    names = [v.what for v in check_source(source, "m.py")]
    assert names == ["function Model.forward", "function outer", "function outer.inner"]


def test_async_functions_are_checked() -> None:
    source = _function("stream", 62).replace("def stream", "async def stream")
    assert [v.what for v in check_source(source, "m.py")] == ["function stream"]


def test_a_long_reason_directly_above_the_def_or_its_decorators_allows_the_length() -> None:
    long = _function("table", 80)
    assert check_source("# long: one row per token kind\n" + long, "m.py") == []
    decorated = "import functools\n\n\n# long: a table\n@functools.cache\n" + long
    assert check_source(decorated, "m.py") == []
    method = "class A:\n    # long: a state machine\n    @property\n" + _function("p", 70, "    ")
    assert check_source(method, "m.py") == []


@pytest.mark.parametrize(
    "prefix",
    [
        "# long:\n",  # no reason written
        "# long: a reason\n\n",  # not directly above: a blank line between
        "# longer than it should be\n",  # not the marker
        "import functools\n\n\n@functools.cache\n# long: between decorator and def\n",
        "x = 1  # long: a trailing comment is not a reason line\n",
    ],
)
def test_a_missing_or_misplaced_long_reason_does_not_count(prefix: str) -> None:
    source = prefix + _function("table", 80)
    assert [v.what for v in check_source(source, "m.py")] == ["function table"]


def test_a_file_over_the_limit_fails() -> None:
    assert check_source("x = 1\n" * MAX_FILE_LINES, "m.py") == []
    (violation,) = check_source("x = 1\n" * (MAX_FILE_LINES + 1), "big.py")
    assert (violation.what, violation.line, violation.length) == ("file", 1, MAX_FILE_LINES + 1)


def test_source_files_finds_every_package_src_tree() -> None:
    files = code_health.source_files()
    packages = {path.relative_to(code_health.ROOT).parts[1] for path in files}
    assert packages >= {"b4t-tokenizers", "b4t-layers", "b4t-models", "b4t-trainer"}
    assert all("/src/" in path.as_posix() for path in files)


def test_no_source_file_or_function_is_too_long() -> None:
    """Every packages/*/src file: <= 600 lines; functions <= 60 lines or a '# long:' reason."""
    violations = code_health.check_files(code_health.source_files())
    assert not violations, "\n".join(map(str, violations))
