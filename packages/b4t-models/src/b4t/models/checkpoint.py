"""Reading and writing checkpoint files: safetensors, ``pytorch_model.bin``, sharded indexes.

``.bin`` files are read with ``torch.load(weights_only=True)``: never a full unpickle.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors.torch import save_file

__all__ = ["CheckpointError", "read_checkpoint", "resolve_checkpoint_files", "write_checkpoint"]

# looked for, in order, inside a checkpoint folder
CHECKPOINT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointError(ValueError):
    """A checkpoint does not fit the model (missing, unexpected or mis-shaped tensors) or
    cannot be read (truncated, corrupt); the message names the file."""


def _index_files(index: Path) -> list[Path]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index} is not a sharded checkpoint index ({exc})") from exc
    files = []
    for name in dict.fromkeys(weight_map.values()):
        shard = index.parent / name
        if not shard.is_file():
            raise FileNotFoundError(f"shard {shard} listed in {index} does not exist")
        files.append(shard)
    return files


def resolve_checkpoint_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The weight files behind ``path``: a file, an index, a folder, or a list of files."""
    if isinstance(path, (list, tuple)):
        files: list[Path] = []
        for p in path:
            files.extend(resolve_checkpoint_files(p))
        return files
    p = Path(path)  # type: ignore[arg-type]
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise FileNotFoundError(
                f"no checkpoint in {p}: looked for {', '.join(CHECKPOINT_NAMES)}"
            )
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    if p.name.endswith(".index.json"):
        return _index_files(p)
    return [p]


_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


# name -> (memory map, byte offset, byte length): where a mapped tensor's bytes live
Spans = dict[str, tuple[mmap.mmap, int, int]]


def release_pages(span: tuple[mmap.mmap, int, int]) -> None:
    """Drop the resident pages wholly inside ``span`` (after their tensor was copied).

    The mapping is private and never written during a load, so dropped pages are simply
    read from the file again if anything touches them later.
    """
    buf, offset, length = span
    page = mmap.PAGESIZE
    start = -(-offset // page) * page
    stop = (offset + length) // page * page
    if stop > start and hasattr(buf, "madvise"):
        buf.madvise(mmap.MADV_DONTNEED, start, stop - start)


def read_safetensors(path: str | Path, spans: Spans | None = None) -> dict[str, torch.Tensor]:
    """Map a ``.safetensors`` file: tensors are zero-copy views of a private memory map.

    Nothing is read until a tensor is used, so loading costs no extra copy of the
    weights; writing to a tensor copies only the touched pages (copy-on-write).
    ``spans``, if given, receives each tensor's location (see :func:`release_pages`).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        header, header_len = _safetensors_header(path, fh, size)
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    start = 8 + header_len
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise CheckpointError(
                f"{path}: tensor {name} has unsupported dtype {info.get('dtype')}"
            )
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = (end - begin) // torch.empty(0, dtype=dtype).element_size()
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(buf, dtype=dtype, count=count, offset=start + begin)
        out[name] = flat.view(shape)
        if spans is not None:
            spans[name] = (buf, start + begin, end - begin)
    return out


def _safetensors_header(path: str | Path, fh: BinaryIO, size: int) -> tuple[dict, int]:
    """The JSON header of the safetensors file open in ``fh`` and its length, checked:
    every tensor's ``data_offsets`` lie inside the ``size``-byte file's data."""
    raw = fh.read(8)
    if len(raw) != 8:
        raise CheckpointError(f"{path} is not a safetensors file (too short: {size} bytes)")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len > size - 8:
        raise CheckpointError(
            f"{path}: the safetensors header claims {header_len} bytes but the file has "
            f"{size - 8} after the length field (truncated or not a safetensors file)"
        )
    try:
        header = json.loads(fh.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} has an unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    data_size = size - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: tensor {name} has no valid data_offsets in the header"
            ) from exc
        if not 0 <= begin <= end <= data_size:
            raise CheckpointError(
                f"{path}: tensor {name} lies at bytes {begin}..{end} of the data but the "
                f"file holds {data_size} data bytes (truncated?)"
            )
    return header, header_len


def _read_one(
    path: Path, device: str | torch.device, spans: Spans | None = None
) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        state = read_safetensors(path, spans)
        if torch.device(device).type != "cpu":
            state = {k: v.to(device) for k, v in state.items()}
        return state
    try:
        state = torch.load(str(path), map_location=device, weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) .bin files cannot be memory-mapped
        try:
            state = torch.load(str(path), map_location=device, weights_only=True)
        except Exception as exc:  # torch's own errors name no file
            raise CheckpointError(
                f"{path} cannot be read as a PyTorch checkpoint (truncated or corrupt?): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_checkpoint(
    path: str | Path | Sequence[str | Path],
    device: str | torch.device = "cpu",
    spans: Spans | None = None,
) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint (every shard merged), loaded onto ``device``.

    safetensors files are memory-mapped (see :func:`read_safetensors`).
    """
    state: dict[str, torch.Tensor] = {}
    for file in resolve_checkpoint_files(path):
        state.update(_read_one(file, device, spans))
    return state


def write_checkpoint(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write ``state`` to ``path``: a folder gets model.safetensors; ``*.bin`` uses torch.save."""
    p = Path(path)
    if p.suffix not in (".safetensors", ".bin"):
        p.mkdir(parents=True, exist_ok=True)
        p = p / "model.safetensors"
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage: give every tensor its own contiguous copy
    own = {k: v.detach().contiguous().clone().cpu() for k, v in state.items()}
    # write beside and rename: a model loaded from this very file memory-maps it, and
    # truncating a mapped file under it would corrupt (or crash) that model
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if p.suffix == ".bin":
            torch.save(own, str(tmp))
        else:
            save_file(own, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
