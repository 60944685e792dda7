"""b4t.trainer.cpu: the passive OpenMP wait policy and the thread-count default.

Fresh processes check what OpenMP itself reads (libgomp prints its settings with
``OMP_DISPLAY_ENV=VERBOSE``: ``GOMP_SPINCOUNT = '0'`` when waiting passively, 300000
with the spinning default); in-process tests check the rules on a private environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from b4t.trainer import cpu

KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
REPORT = (
    "import json, os, torch; from b4t.trainer import cpu; "
    "threads = cpu.configure_threads({threads}); "
    "print(json.dumps([cpu.passive_openmp(), os.environ.get('OMP_WAIT_POLICY'), threads]))"
)


def fresh(prelude: str, threads: str = "None", **env: str) -> tuple[list, str]:
    """Run ``prelude`` then REPORT in a new interpreter: (the report, libgomp's stderr)."""
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    clean.update(env, OMP_DISPLAY_ENV="VERBOSE")
    done = subprocess.run(
        [sys.executable, "-c", prelude + "; " + REPORT.format(threads=threads)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def torch_default_threads() -> int:
    """torch's intra-op thread count in a new interpreter without thread variables."""
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    code = "import torch; print(torch.get_num_threads())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean, check=True
    )
    return int(done.stdout)


def spin_count(stderr: str) -> str | None:
    """libgomp's spin count as it printed it, or None for another OpenMP runtime."""
    for line in stderr.splitlines():
        if line.strip().startswith("GOMP_SPINCOUNT"):
            return line.split("=")[1].strip().strip("'")
    return None


def test_importing_b4t_trainer_before_torch_makes_openmp_wait_passively() -> None:
    (policy, env_value, threads), stderr = fresh("import b4t.trainer")
    assert (policy, env_value) == ("PASSIVE", "PASSIVE")
    assert threads == torch_default_threads()  # torch's own default kept
    count = spin_count(stderr)
    if count is None:
        pytest.skip("not libgomp: its settings are not printed")
    assert count == "0", stderr


def test_too_late_after_torch_falls_back_to_one_thread() -> None:
    (policy, env_value, threads), stderr = fresh("import torch; import b4t.trainer")
    assert (policy, env_value, threads) == ("", None, 1)
    assert spin_count(stderr) in (None, "300000")  # the runtime kept spinning


def test_explicit_threads_and_omp_num_threads_win_over_the_fallback() -> None:
    (policy, _, threads), _ = fresh("import torch; import b4t.trainer", threads="2")
    assert (policy, threads) == ("", 2)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        (_, _, threads), _ = fresh("import torch; import b4t.trainer", **{variable: "2"})
        assert threads == 2, variable


@pytest.mark.parametrize(
    ("knob", "value"), [("OMP_WAIT_POLICY", "active"), ("GOMP_SPINCOUNT", "5")]
)
def test_a_users_wait_setting_is_left_alone(knob: str, value: str) -> None:
    (policy, env_value, threads), stderr = fresh("import b4t.trainer", **{knob: value})
    expected = "ACTIVE" if knob == "OMP_WAIT_POLICY" else "USER"
    assert policy == expected
    assert env_value == (value if knob == "OMP_WAIT_POLICY" else None)
    assert threads >= 1
    if knob == "GOMP_SPINCOUNT" and spin_count(stderr) is not None:
        assert spin_count(stderr) == "5"


@pytest.fixture
def first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget this process's answer so passive_openmp runs its rules again."""
    monkeypatch.setattr(cpu, "_policy_seen", None)


def test_sets_passive_once_and_only_before_openmp_loads(
    first_call: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu, "openmp_loaded", lambda: False)
    env: dict[str, str] = {}
    assert cpu.passive_openmp(env) == "PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    other: dict[str, str] = {}
    assert cpu.passive_openmp(other) == "PASSIVE"  # applied once: the first answer
    assert other == {}


def test_changes_nothing_once_openmp_is_loaded(
    first_call: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu, "openmp_loaded", lambda: True)
    env: dict[str, str] = {}
    assert cpu.passive_openmp(env) == ""
    assert env == {}


def test_respects_a_users_knob_in_process(first_call: None) -> None:
    env = {"KMP_BLOCKTIME": "0"}
    assert cpu.passive_openmp(env) == "USER"
    assert env == {"KMP_BLOCKTIME": "0"}


def test_openmp_is_loaded_in_this_torch_process() -> None:
    assert cpu.openmp_loaded()


def test_configure_threads_sets_the_count_and_rejects_zero() -> None:
    before = torch.get_num_threads()
    try:
        assert cpu.configure_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
            cpu.configure_threads(0)
    finally:
        torch.set_num_threads(before)
