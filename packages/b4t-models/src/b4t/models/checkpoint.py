"""Reading and writing checkpoint files: safetensors, ``pytorch_model.bin``, sharded indexes.

``.bin`` files are read with ``torch.load(weights_only=True)``: never a full unpickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["CheckpointError", "read_checkpoint", "resolve_checkpoint_files", "write_checkpoint"]

# looked for, in order, inside a checkpoint folder
CHECKPOINT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped tensors."""


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


def _read_one(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path), device=str(device))
    state = torch.load(str(path), map_location=device, weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_checkpoint(
    path: str | Path | Sequence[str | Path], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint (every shard merged), loaded onto ``device``."""
    state: dict[str, torch.Tensor] = {}
    for file in resolve_checkpoint_files(path):
        state.update(_read_one(file, device))
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
    if p.suffix == ".bin":
        torch.save(own, str(p))
    else:
        save_file(own, str(p), metadata={"format": "pt"})
    return p
