"""Run a seed-port script as b4t code, or as the bert4torch 0.2.5 original.

Each script in ``scripts/`` is bert4torch 0.2.5 code whose imports were changed to b4t's,
and nothing else. Its b4t import block sits between the marker lines
``# [b4t imports]`` and ``# [end b4t imports]``; the original imports are kept above it
as comment lines starting ``# seed:``. ``seed_source`` swaps the block back (plus the
shims 0.2.5 needs on Python 3.11 and NumPy 2), so the same code runs on both libraries.

A script reads its assets from ``$B4T_PORT_DIR``, asserts what it trains itself, and
writes a JSON dict of figures to ``$B4T_PORT_OUT`` for the test to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent / "scripts"
BEGIN, END, SEED = "# [b4t imports]", "# [end b4t imports]", "# seed: "
SEED_TESTS = Path(__file__).resolve().parent.parent / "seed"
# the shims 0.2.5 needs on Python 3.11 / NumPy 2 (tests/seed/_shims.py), run first
SHIM = f"import sys\nsys.path.insert(0, {str(SEED_TESTS)!r})\nimport _shims\n_shims.install()\n"


def script_names() -> list[str]:
    """Every port script's stem, sorted."""
    return sorted(p.stem for p in SCRIPTS.glob("*.py"))


def seed_source(text: str) -> str:
    """The bert4torch 0.2.5 original of a port script: its ``# seed:`` imports restored."""
    lines = text.splitlines()
    try:
        begin, end = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise ValueError(f"script lacks the {BEGIN!r} / {END!r} markers") from None
    seed_imports = [ln[len(SEED) :] for ln in lines if ln.startswith(SEED)]
    if not seed_imports:
        raise ValueError("script lists no '# seed: ' import lines")
    body = [*lines[:begin], SHIM.rstrip("\n"), *seed_imports, *lines[end + 1 :]]
    return "\n".join(body) + "\n"


def b4t_import_lines(text: str) -> list[str]:
    """The lines between the markers (what the port changed)."""
    lines = text.splitlines()
    return lines[lines.index(BEGIN) + 1 : lines.index(END)]


def run_script(name: str, workdir: Path, assets: Path, flavour: str = "b4t") -> dict[str, Any]:
    """Run ``scripts/<name>.py`` (``flavour`` 'b4t' or 'seed') in ``workdir``; its JSON."""
    source = (SCRIPTS / f"{name}.py").read_text(encoding="utf-8")
    if flavour == "seed":
        source = seed_source(source)
    elif flavour != "b4t":
        raise ValueError(f"flavour must be 'b4t' or 'seed', got {flavour!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}_{flavour}.py"
    path.write_text(source, encoding="utf-8")
    out = workdir / f"{name}_{flavour}.json"
    env = {
        **os.environ,
        "B4T_PORT_DIR": str(assets),
        "B4T_PORT_OUT": str(out),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{name} ({flavour}) exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return json.loads(out.read_text(encoding="utf-8"))
