"""The prepared benchmark scripts still run: ``gpu_check.py --dry-run`` (the GPU check,
tiny and on the CPU) and the generation benchmark on tiny models, with their own checks
(parity within tolerance, outputs equal to transformers') read from what they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_gpu_check_dry_run() -> None:
    out = run(str(BENCHMARKS / "gpu_check.py"), "--dry-run")
    parity = [line for line in out.splitlines() if line.startswith("parity")]
    assert len(parity) == 2 and all(line.endswith(" ok") for line in parity), out
    assert "gradients finite: True" in out, out
    generation = [line for line in out.splitlines() if line.startswith("generation greedy")]
    assert len(generation) == 2 and all("same output: True" in g for g in generation), out


def test_generation_benchmark_on_tiny_models() -> None:
    out = run(
        str(BENCHMARKS / "bench_generation.py"),
        "--b4t-model", "--gpt2-config", "tiny", "--repeats", "1", "--new-tokens", "8",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.split()[:1] in (["greedy"], ["beam4"])]
    rows += [line for line in out.splitlines() if line.startswith("t5 greedy")]
    assert len(rows) == 5, out
    assert all(line.endswith("yes") for line in rows), out  # same tokens as generate()
    assert "batch-1 limit" in out, out


def test_contention_benchmark_tiny() -> None:
    """Fresh worker processes see b4t's defaults (passive OpenMP, torch's thread count)
    and the late-import fallback (one thread), quiet and beside a competing process."""
    out = run(
        str(BENCHMARKS / "bench_contention.py"),
        "--quick", "--tiny", "--jobs", "serve", "--settings", "after", "late",
    )  # fmt: skip
    runs = [line.split() for line in out.splitlines() if line.startswith("  repeat")]
    assert len(runs) == 4, out  # 2 settings x quiet/busy
    for fields in runs:
        setting = fields[4]
        if setting == "after":
            assert fields[-1] == "PASSIVE)", fields
        else:
            assert fields[-4:] == ["thread(s),", "wait", "default", "(spinning))"], fields
            assert fields[-5] == "1", fields
    rows = [line for line in out.splitlines() if line.startswith("serve")]
    for setting in ("after ", "late  "):
        assert any(f" {setting} quiet " in r and "slowdown x" in r for r in rows), out
    assert "batching ratio busy x" in out, out


def test_quantized_benchmark_runs_every_kernel() -> None:
    out = run(
        str(BENCHMARKS / "bench_quantized.py"),
        *("--shapes", "576x192", "--rows", "1", "--repeats", "1", "--calls", "1", "--no-decode"),
    )
    for name in ["fp32 F.linear", "int8/row int8pack", "int4/32 asym int4pack", "dequant"]:
        assert name in out, out
