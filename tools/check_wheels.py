"""Check built wheels: each installs alone into a fresh venv and declares its dependencies.

    python tools/check_wheels.py dist/ --torch 2.13.0

For every ``b4t_*.whl`` in the folder: the Requires-Dist lines of the wheel's
METADATA must equal the ``dependencies`` and ``optional-dependencies`` of the
package's pyproject.toml; a new venv gets the wheel (siblings resolved from the
same folder) and imports it; b4t-tokenizers' venv must hold no torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
import venv
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def declared(package_dir: Path) -> set[str]:
    """Requirements from pyproject.toml, normalised like wheel metadata."""
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    reqs = {str(Requirement(r)) for r in project.get("dependencies", [])}
    extras = project.get("optional-dependencies", {})
    for extra, items in extras.items():
        for item in items:
            req = Requirement(item)
            # A self-reference (pkg[other] inside pkg's extras) is expanded by the build.
            expanded = (
                [Requirement(x) for e in req.extras for x in extras[e]]
                if req.name == project["name"]
                else [req]
            )
            for one in expanded:
                one.marker = None
                reqs.add(f'{one}; extra == "{extra}"')
    return reqs


def in_metadata(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    prefix = "Requires-Dist:"
    return {str(Requirement(ln[len(prefix) :].strip())) for ln in lines if ln.startswith(prefix)}


def make_torch_layer(root: Path, torch: str) -> Path:
    """A venv holding torch alone; its site-packages is shared read-only by the checks."""
    venv.create(root, with_pip=True)
    py = str(root / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", f"torch=={torch}"], check=True)
    out = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def check(wheel: Path, dist: Path, torch_site: Path) -> None:
    name = wheel.name.split("-")[0].replace("_", "-")
    short = name.removeprefix("b4t-")
    want, got = declared(ROOT / "packages" / name), in_metadata(wheel)
    if want != got:
        raise SystemExit(f"{wheel.name}: metadata {sorted(got)} != pyproject {sorted(want)}")
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        py = str(Path(tmp) / "bin" / "python")
        if short != "tokenizers":
            # torch comes from the shared layer (a .pth line), so pip sees it installed
            # and resolves everything else for this wheel alone.
            site = subprocess.run(
                [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            (Path(site) / "_torch_layer.pth").write_text(f"{torch_site}\n")
        pip = [py, "-m", "pip", "install", "--quiet", "--find-links", str(dist)]
        subprocess.run([*pip, str(wheel)], check=True)
        probe = (
            f"import importlib.util, b4t.{short} as m; print(m.__name__, m.__version__); "
            f"assert {short!r} != 'tokenizers' or importlib.util.find_spec('torch') is None, "
            "'torch was installed with b4t-tokenizers'"
        )
        subprocess.run([py, "-c", probe], check=True)
    print(f"ok {wheel.name}: installs alone, requires {sorted(got)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--torch", required=True, help="torch version to pin in the venvs")
    args = parser.parse_args()
    wheels = sorted(args.dist.glob("b4t_*.whl"))
    sdists = sorted(args.dist.glob("b4t_*.tar.gz"))
    if len(wheels) != 6 or len(sdists) != 6:
        raise SystemExit(f"expected 6 wheels and 6 sdists in {args.dist}, got {wheels + sdists}")
    with tempfile.TemporaryDirectory() as layer:
        torch_site = make_torch_layer(Path(layer), args.torch)
        for wheel in wheels:
            check(wheel, args.dist, torch_site)


if __name__ == "__main__":
    sys.exit(main())
