"""Weight-only quantization at load: ``build_transformer_model(..., quantize=...)``.

``quantize`` picks what the linear layers and the word-embedding table hold:

* ``'gguf'`` (the default for a llama.cpp ``.gguf`` file): its ``Q8_0`` / ``Q4_0`` /
  ``Q4_1`` matrices stay packed: each is repacked once, from the file's blocks, into a
  :class:`~b4t.layers.QuantizedLinear` (exactly the file's values: see that module for
  the kernels); a quantized token-embedding table becomes a
  :class:`~b4t.layers.QuantizedEmbedding` (rows gathered from the codes) and, when the
  LM head is tied to it, the head is a ``QuantizedLinear`` over the same codes.
* ``'int8'`` / ``'int4'``: any checkpoint (safetensors, ``.bin``, a GGUF file's
  dequantized values) is loaded in float, then every linear layer and the word table are
  quantized, weight-only, with one scale per group of :data:`GROUP_SIZE` input features
  (8-bit symmetric like ``Q8_0``; 4-bit asymmetric like ``Q4_1``).
* ``'float'`` (the default for other checkpoints): no quantization; a GGUF file is
  dequantized to float32 (what b4t did before packed loading).

:func:`save_quantized` writes such a model back, packed: a folder with
``model.safetensors`` (the float tensors under the checkpoint's names, the packed
modules under b4t's own: ``<module>.qweight`` / ``.scales`` / ``.mins`` / ``.bias``) and
``config.json`` whose ``b4t_quantization`` key lists the packed modules; loading that
folder with ``build_transformer_model`` rebuilds them packed (:func:`prepare_modules`).
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.layers.quantized import QuantizedLinear, quantize_linears
from b4t.layers.quantized_embedding import QuantizedEmbedding
from b4t.models.gguf import GGUFBlocks
from b4t.models.gguf_quants import dequantize
from b4t.models.weight_map import Concat, FirstOf

__all__ = [
    "CONFIG_KEY",
    "GROUP_SIZE",
    "QUANTIZE_MODES",
    "load_mode",
    "prepare_modules",
    "quantize_model",
    "release_freed_memory",
    "save_quantized",
]

QUANTIZE_MODES = ("gguf", "int8", "int4", "float")
"""The values ``build_transformer_model(quantize=...)`` accepts (None: the default)."""

GROUP_SIZE = 32
"""Input features per scale for ``quantize='int8'|'int4'`` (GGUF's block size)."""

CONFIG_KEY = "b4t_quantization"
"""The ``config.json`` key :func:`save_quantized` writes: ``{module name: layout}``."""

WORD_TABLE = "embeddings.word_embeddings"


def load_mode(quantize: str | None, gguf: bool, config: dict[str, Any] | None = None) -> str:
    """Validate ``quantize`` and resolve its default: ``'gguf'`` for a GGUF file,
    ``'saved'`` for a folder written by :func:`save_quantized` (which always loads in its
    own packed layout: ``'int8'`` / ``'int4'`` change nothing, ``'float'`` is an error),
    else ``'float'``."""
    if quantize is None:
        if gguf:
            return "gguf"
        return "saved" if config and CONFIG_KEY in config else "float"
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}: expected one of {QUANTIZE_MODES} or None")
    if quantize == "gguf" and not gguf:
        raise ValueError(
            "quantize='gguf' keeps a llama.cpp file's blocks packed, but the checkpoint is not "
            "a .gguf file: use quantize='int8' or 'int4' to quantize it at load"
        )
    if config and CONFIG_KEY in config:
        if quantize == "float":
            raise ValueError(
                "quantize='float': this checkpoint was saved packed (config.json "
                f"'{CONFIG_KEY}'); load it packed (quantize=None) and use each module's "
                "dequantize()"
            )
        return "saved"  # packed already: its own layout
    return quantize


def _sources(src: Any) -> list[str] | None:
    """The checkpoint keys a parameter is stacked from (rows), or None when the source is
    not a plain key / row-wise concatenation (those load in float)."""
    if isinstance(src, str):
        return [src]
    if isinstance(src, FirstOf):
        return None
    if isinstance(src, Concat) and src.dim == 0 and hasattr(src, "keys"):
        return list(src.keys)
    return None


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _tied_head(model: nn.Module) -> bool:
    """Whether ``model``'s LM head is its word table (b4t's decoder LMs: ``lm_head`` None)."""
    return hasattr(model, "lm_head") and model.lm_head is None and hasattr(model, "lm_logits")


def _pack_gguf(model: nn.Module, blocks: dict[str, GGUFBlocks], state: dict) -> list[str]:
    """Swap each linear (and the word table) whose checkpoint rows are all packed blocks of
    one type for its packed module; the blocks used leave ``blocks``; the rest are
    dequantized into ``state`` (loaded in float). Returns the module names packed."""
    packed = []
    mapping = model.variable_mapping(existing_only=False)  # type: ignore[operator]
    for param, src in mapping.items():
        module_name, _, leaf = param.rpartition(".")
        keys = _sources(src)
        if leaf != "weight" or not keys or any(k not in blocks for k in keys):
            continue
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            continue
        parts = [blocks[k] for k in keys]
        types = {p.type_name for p in parts}
        is_table = module_name == WORD_TABLE and isinstance(module, nn.Embedding)
        if len(types) != 1 or not (isinstance(module, nn.Linear) or is_table):
            continue
        raw = torch.cat([p.raw for p in parts]) if len(parts) > 1 else parts[0].raw
        shape = (sum(p.shape[0] for p in parts), parts[0].shape[1])
        has_bias = isinstance(module, nn.Linear) and module.bias is not None
        layer = QuantizedLinear.from_gguf_blocks(
            raw, types.pop(), shape, torch.zeros(shape[0]) if has_bias else None, "dequant", param
        )
        if is_table:
            table = QuantizedEmbedding.from_quantized_linear(layer, module.padding_idx)
            _swap(model, module_name, table)
            if _tied_head(model):
                model.lm_head = table.tied_head("dequant")
        else:
            _swap(model, module_name, layer)
        for key in keys:
            del blocks[key]
        packed.append(module_name)
    for key in list(blocks):  # matrices no packed module takes (another layout): float
        entry = blocks.pop(key)
        state[key] = dequantize(entry.raw, entry.type_name, entry.shape, name=key)
    return packed


def _shell(layout: dict[str, Any]) -> nn.Module:
    """An empty packed module of a :func:`save_quantized` layout entry."""
    args = (layout["bits"], layout["group_size"], layout["asymmetric"])
    if layout["kind"] == "embedding":
        return QuantizedEmbedding(layout["num_embeddings"], layout["embedding_dim"], *args)
    return QuantizedLinear(
        layout["in_features"], layout["out_features"], *args, layout["bias"], "dequant"
    )


def _load_saved(model: nn.Module, layouts: dict[str, dict[str, Any]], state: dict) -> list[str]:
    """Rebuild the packed modules :func:`save_quantized` listed, from ``state`` (their
    tensors leave it)."""
    for name, layout in layouts.items():
        module = _shell(layout)
        own = {k: v for k, v in state.items() if k.startswith(name + ".")}
        module.load_state_dict({k[len(name) + 1 :]: v for k, v in own.items()})
        for key in own:
            del state[key]
        _swap(model, name, module)
        if name == WORD_TABLE and layout.get("tied_head") and _tied_head(model):
            model.lm_head = module.tied_head("dequant")
    return list(layouts)


def prepare_modules(
    model: nn.Module,
    mode: str,
    state: dict[str, torch.Tensor] | None,
    blocks: dict[str, GGUFBlocks] | None,
    config: dict[str, Any] | None,
) -> list[str]:
    """Before the float load (``model`` on the meta device): put in the packed modules of
    a ``'gguf'`` load (from ``blocks``) or of a ``'saved'`` one (from ``state``, listed
    in ``config``); the tensors they take leave ``blocks`` / ``state``."""
    if mode == "gguf" and blocks is not None and state is not None:
        return _pack_gguf(model, blocks, state)
    if mode == "saved" and state is not None and config:
        return _load_saved(model, config[CONFIG_KEY], state)
    return []


def quantize_model(model: nn.Module, mode: str) -> list[str]:
    """After the float load: for ``'int8'`` / ``'int4'``, quantize every linear layer
    and the word table (and a tied head over it) in place; for ``'gguf'`` / ``'saved'``
    repack the modules :func:`prepare_modules` put in (kept in the canonical layout
    while loading: a state dict of them is cheap) for their fast kernel. Returns the
    names packed."""
    if mode in ("gguf", "saved"):
        names = []
        for name, module in model.named_modules():
            if isinstance(module, QuantizedLinear):
                module.set_kernel("auto")
                names.append(name)
        _table_reads_head(model)
        release_freed_memory()
        return names
    if mode not in ("int8", "int4"):
        return []
    bits, asymmetric = (8, False) if mode == "int8" else (4, True)
    packed = quantize_linears(model, bits, GROUP_SIZE, asymmetric)
    table = getattr(getattr(model, "embeddings", None), "word_embeddings", None)
    if isinstance(table, nn.Embedding) and table.embedding_dim % GROUP_SIZE == 0:
        quantized = QuantizedEmbedding.quantize(
            table.weight, bits, GROUP_SIZE, asymmetric, table.padding_idx
        )
        _swap(model, WORD_TABLE, quantized)
        if _tied_head(model):
            model.lm_head = quantized.tied_head()
        packed.append(WORD_TABLE)
    _table_reads_head(model)
    release_freed_memory()
    return packed


def _table_reads_head(model: nn.Module) -> bool:
    """A packed word table tied to a packed head gathers its rows from the head's codes
    and drops its own copy, where torch's layout allows
    (:meth:`QuantizedEmbedding.read_rows_from`)."""
    if not _is_tied_packed(model):
        return False
    return model.embeddings.word_embeddings.read_rows_from(model.lm_head)


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op
    elsewhere). Repacking frees many mid-sized buffers that glibc would otherwise keep
    resident. Returns whether it ran."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0)) or True
    except (OSError, AttributeError):
        return False


def _layout(module: nn.Module) -> dict[str, Any] | None:
    """The :func:`save_quantized` entry of a packed module (None for any other module)."""
    if not isinstance(module, (QuantizedEmbedding, QuantizedLinear)):
        return None
    common = {"bits": module.bits, "group_size": module.group_size}
    common["asymmetric"] = module.asymmetric
    if isinstance(module, QuantizedEmbedding):
        return {
            "kind": "embedding",
            "num_embeddings": module.num_embeddings,
            "embedding_dim": module.embedding_dim,
            **common,
        }
    return {
        "kind": "linear",
        "in_features": module.in_features,
        "out_features": module.out_features,
        "bias": module.bias is not None,
        **common,
    }


def save_quantized(model: nn.Module, path: str | Path) -> Path:
    """Write a model with packed modules to the folder ``path``, packed (see the module
    doc); ``build_transformer_model(checkpoint_path=path)`` loads it back packed.
    Returns the weights file written."""
    from b4t.models.loading import save_from

    layouts: dict[str, dict[str, Any]] = {}
    tied = _is_tied_packed(model)
    for name, module in model.named_modules():
        layout = _layout(module)
        if layout is None or (tied and name == "lm_head"):
            continue
        if name == WORD_TABLE:
            layout["tied_head"] = tied
        layouts[name] = layout
    if not layouts:
        raise ValueError("save_quantized: the model holds no QuantizedLinear/QuantizedEmbedding")
    mapping = dict(model.variable_mapping())  # type: ignore[operator]
    for name in model.state_dict():
        module_name = name.rpartition(".")[0]
        if module_name in layouts:
            mapping[name] = name
        elif module_name == "lm_head" and tied:
            mapping.pop(name, None)
    config = getattr(model, "config", None)
    raw = getattr(config, "raw", None)
    if raw is None:
        raise ValueError("save_quantized: the model has no config (build it from a checkpoint)")
    saved_raw = dict(raw)
    raw[CONFIG_KEY] = layouts
    try:
        written = save_from(model, path, mapping)
    finally:
        raw.clear()
        raw.update(saved_raw)
    if not (Path(path) / "config.json").is_file():  # a file path: keep the layouts beside it
        (written.parent / "config.json").write_text(
            json.dumps({**saved_raw, CONFIG_KEY: layouts}, indent=2), encoding="utf-8"
        )
    return written


def _is_tied_packed(model: nn.Module) -> bool:
    table = getattr(getattr(model, "embeddings", None), "word_embeddings", None)
    head = getattr(model, "lm_head", None)
    return (
        isinstance(table, QuantizedEmbedding)
        and isinstance(head, QuantizedLinear)
        and bool(getattr(model, "tie_word_embeddings", False))
    )
