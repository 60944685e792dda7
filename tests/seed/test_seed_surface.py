"""MIGRATION.md is complete: every surface difference from bert4torch 0.2.5 / torch4keras 0.0.4
is a row of it, and every row that names surface items names real ones.

``_surface.surface_differences`` walks every public class, function, method and parameter
(position and default) of the seed modules in MIGRATION.md's module table and looks each up
in the b4t packages of its row. A difference is allowed only when a table row names its
surface id in backticks (``bert4torch.snippets.WebServing(host='0.0.0.0')``); b4t gaps
(missing names, parameters, other defaults) are not rows: they fail here until fixed.
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pytest
from _shims import seed_module
from _surface import (
    covered_ids,
    module_map,
    read_migration,
    resolve_seed,
    surface_differences,
    table_rows,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def migration() -> str:
    return read_migration(ROOT)


@pytest.fixture(scope="module")
def differences(migration: str):
    for name in ("bert4torch", "torch4keras"):
        seed_module(name)  # skip outside the seed session
    return surface_differences(module_map(migration))


def test_module_table_lists_every_seed_module(migration: str) -> None:
    mapping = module_map(migration)
    for root in ("bert4torch", "torch4keras"):
        package = seed_module(root)
        modules = {f"{root}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}
        unlisted = modules - set(mapping)
        assert not unlisted, f"not in MIGRATION.md's module table: {unlisted}"
    for seed, packages in mapping.items():
        assert packages, f"{seed}: the module table names no b4t package"


def test_every_surface_difference_is_a_migration_row(migration: str, differences) -> None:
    covered = covered_ids(migration)
    missing = [d for d in differences if d.id not in covered]
    listing = "\n".join(f"  {d}" for d in missing)
    assert not missing, (
        f"{len(missing)} differences from 0.2.5's surface are neither fixed nor a "
        f"MIGRATION.md row:\n{listing}"
    )


def test_surface_ids_in_rows_name_real_items(migration: str, differences) -> None:
    """A backticked ``bert4torch.*`` / ``torch4keras.*`` name in a row exists in the seed;
    a parameter id (``Qual(p)``) is a difference that still exists (no stale rows)."""
    current = {d.id for d in differences}
    for surface_id in sorted(covered_ids(migration)):
        qual = surface_id.split("(", 1)[0]
        assert resolve_seed(qual) is not None, f"MIGRATION.md names {qual}, which 0.2.5 lacks"
        if "(" in surface_id:
            assert surface_id in current, f"MIGRATION.md row on {surface_id}: no such difference"


def test_removing_a_row_or_a_name_uncovers_its_differences(migration: str, differences) -> None:
    """The check reads the rows: drop the WebServing row, or one name from it, and its
    differences are no longer covered."""
    ids = {d.id for d in differences}
    web = {"bert4torch.snippets.WebServing(host)", "bert4torch.snippets.WebServing(server)"}
    assert web <= ids and web <= covered_ids(migration)
    lines = migration.splitlines()
    row = next(ln for ln in lines if ln.startswith("|") and "WebServing(host=" in ln)
    assert not web & covered_ids(migration.replace(row + "\n", ""))
    one_name = row.replace("server='paste'", "port=8000", 1)
    assert covered_ids(migration.replace(row, one_name)) & web == {
        "bert4torch.snippets.WebServing(host)"
    }


def test_covered_ids_parse_the_documented_forms() -> None:
    text = (
        "| a | b | c |\n|---|---|---|\n"
        "| x | y | `bert4torch.snippets.F(a, b={'k': (1, 2)}, *args)` and "
        "`torch4keras.model.BaseModel.fit` and `Tokenizer(x)` |\n"
    )
    assert covered_ids(text) == {
        "bert4torch.snippets.F(a)",
        "bert4torch.snippets.F(b)",
        "bert4torch.snippets.F(*args)",
        "torch4keras.model.BaseModel.fit",
    }


def test_pinned_tests_of_every_row_exist(migration: str) -> None:
    """Each row's "pinned by" cell names test files (and test functions) that exist."""
    rows = [cells for cells in table_rows(migration) if len(cells) == 5][1:]
    assert len(rows) > 50
    for cells in rows:
        path = None
        for ref in re.findall(r"`([^`]+)`", cells[4]):
            file_part, _, test = ref.partition("::")
            if not ("/" in file_part or (not file_part and test)):
                continue  # a name in prose, not a reference
            if file_part:
                path = ROOT / file_part
                assert path.exists(), f"row {cells[0]!r}: {file_part} does not exist"
            if test:
                assert path is not None and path.suffix == ".py", ref
                name = test.split("[", 1)[0]
                assert re.search(rf"def {re.escape(name)}\b", path.read_text("utf-8")), (
                    f"row {cells[0]!r}: {path.relative_to(ROOT)} has no {name}"
                )
