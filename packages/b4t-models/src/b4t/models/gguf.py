"""Reading llama.cpp's GGUF files: config, tensor names, dequantized weights.

``build_transformer_model(checkpoint_path='model.gguf')`` (or a folder holding one
``.gguf`` and no ``config.json``) comes here through :func:`find_gguf` and
:func:`read_gguf`. The file is read with the ``gguf`` package (``pip install
'b4t-models[gguf]'``); its metadata becomes a transformers-style LLaMA ``config.json``
dict (:func:`gguf_config`) and its tensors are renamed to transformers' LLaMA names
(:func:`hf_name`) and dequantized to float32 (:mod:`b4t.models.gguf_quants`), so the
``llama`` variant's weight map loads them as any Hugging Face checkpoint.

Facts of the format this relies on:

* GGUF lists a tensor's dimensions innermost first (``ne``): a ``[576, 192]`` entry is
  torch's ``[192, 576]`` (``[out, in]``).
* llama.cpp's converter reorders the rows of ``attn_q`` / ``attn_k`` inside each head
  from the half-split rotary layout (transformers' ``rotate_half``: row ``r`` pairs
  with ``r + d/2``) to the interleaved one (rows ``2i, 2i+1`` pair); :func:`unpermute_rope`
  puts them back (``attn_k`` per key/value head).
* No ``output.weight`` tensor means the LM head is the token embedding (tied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from b4t.models.checkpoint import CHECKPOINT_NAMES, CheckpointError
from b4t.models.gguf_quants import dequantize

__all__ = [
    "PACKED_TYPES",
    "GGUFBlocks",
    "GGUFCheckpoint",
    "find_gguf",
    "gguf_config",
    "hf_name",
    "open_gguf",
    "read_gguf",
    "unpermute_rope",
]

SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF tensor name (after ``blk.{i}.``) -> transformers' LLaMA name (after ``model.layers.{i}.``)
_LAYER_NAMES = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_gate.bias": "mlp.gate_proj.bias",
    "ffn_up.bias": "mlp.up_proj.bias",
    "ffn_down.bias": "mlp.down_proj.bias",
}
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(
            "reading a .gguf checkpoint needs the 'gguf' package: "
            "pip install 'b4t-models[gguf]' (or pip install gguf)"
        ) from exc
    return gguf


def open_gguf(path: str | Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path`` (copy-on-write map, so tensors may be views).

    The reader slices its ``np.memmap`` once per header value (about 250,000 times for a
    49k-token vocabulary), and a memmap slice costs several times a plain array's; this
    subclass slices a plain ``ndarray`` view of the same map instead (same bytes, same
    results, about 3x faster to open).
    """

    gguf = _import_gguf()

    class Reader(gguf.GGUFReader):  # type: ignore[misc, name-defined]
        def _get(
            self, offset: int, dtype: Any, count: int = 1, override_order: str | None = None
        ) -> np.ndarray:
            plain = self.__dict__.get("_plain")
            if plain is None:
                plain = self._plain = self.data.view(np.ndarray)
            dtype = np.dtype(dtype)
            count = int(count)
            values = plain[offset : offset + dtype.itemsize * count].view(dtype)[:count]
            order = self.byte_order if override_order is None else override_order
            return values.view(values.dtype.newbyteorder(order))

    return Reader(path, "c")


def find_gguf(path: Any) -> Path | None:
    """The GGUF file behind ``path``: a ``.gguf`` file, or a folder holding exactly one
    ``.gguf`` and no transformers checkpoint (``model.safetensors``, ...); else None.

    A folder with several ``.gguf`` files is an error naming them (pass the file).
    """
    if path is None or isinstance(path, (list, tuple, dict)):
        return None
    p = Path(path)
    if p.suffix.lower() == ".gguf" and not p.is_dir():
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {p}")
        return p
    if not p.is_dir() or any((p / name).is_file() for name in CHECKPOINT_NAMES):
        return None
    found = sorted(f for f in p.iterdir() if f.suffix.lower() == ".gguf" and f.is_file())
    if len(found) > 1:
        raise FileNotFoundError(
            f"{p} holds several GGUF files ({', '.join(f.name for f in found)}): pass one "
            "as checkpoint_path"
        )
    return found[0] if found else None


def _field(reader: Any, key: str, default: Any = None) -> Any:
    entry = reader.fields.get(key)
    return default if entry is None else entry.contents()


PACKED_TYPES = ("Q8_0", "Q4_0", "Q4_1")
"""ggml types that ``read_gguf(..., packed=True)`` keeps as blocks (2-D tensors only)."""


@dataclass
class GGUFBlocks:
    """One quantized matrix as stored: ``raw`` uint8 ``[out, bytes per row]`` (rows in
    transformers' order: q/k rotary rows already put back), its ggml ``type_name`` and
    its torch ``shape`` ``(out, in)``."""

    raw: torch.Tensor
    type_name: str
    shape: tuple[int, int]


@dataclass
class GGUFCheckpoint:
    """One GGUF file read: ``config`` (transformers ``config.json`` keys), ``tensors``
    (transformers names -> float32 tensors), and every metadata key (``metadata``, the
    tokenizer arrays left out: read those with ``gguf.GGUFReader``)."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    types: dict[str, str] = field(default_factory=dict, repr=False)  # GGUF name -> ggml type
    blocks: dict[str, GGUFBlocks] = field(default_factory=dict, repr=False)
    """``read_gguf(..., packed=True)``: the matrices kept as their ggml blocks (transformers
    names), absent from ``tensors``."""

    @property
    def variant(self) -> str:
        """The b4t ``model=`` name of the file's architecture."""
        return str(self.config["model_type"])


# long: the metadata -> config table, read top to bottom
def gguf_config(reader: Any, path: Path, tensor_names: set[str]) -> dict[str, Any]:
    """The metadata of an opened ``gguf.GGUFReader`` as transformers LLaMA config keys.

    Sizes, grouped-query heads, RMSNorm epsilon, rope base and tying all come from the
    file; a missing required key or an unsupported setting is a ``CheckpointError``
    naming it.
    """
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise CheckpointError(
            f"{path}: GGUF architecture {arch!r} is not supported (b4t reads "
            f"{', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def need(key: str) -> Any:
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise CheckpointError(f"{path}: GGUF metadata key {arch}.{key} is missing")
        if isinstance(value, list):
            raise CheckpointError(
                f"{path}: {arch}.{key} differs between layers ({value[:4]}...): not supported"
            )
        return value

    heads = int(need("attention.head_count"))
    kv_heads = int(_field(reader, f"{arch}.attention.head_count_kv", heads))
    hidden = int(need("embedding_length"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", hidden // heads))
    rope_dim = int(_field(reader, f"{arch}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise CheckpointError(
            f"{path}: {arch}.rope.dimension_count {rope_dim} rotates part of each "
            f"{head_dim}-wide head; b4t's llama rotates whole heads"
        )
    scaling = _field(reader, f"{arch}.rope.scaling.type")
    if (scaling not in (None, "none")) or "rope_freqs.weight" in tensor_names:
        raise CheckpointError(
            f"{path}: rope scaling {scaling or 'rope_freqs.weight (llama 3)'} is not "
            "supported (only plain rope)"
        )
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise CheckpointError(f"{path}: neither {arch}.vocab_size nor tokenizer.ggml.tokens")
        vocab = len(tokens.data)
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
        "mlp_bias": "blk.0.ffn_up.bias" in tensor_names,
        "hidden_act": "silu",
    }
    for ours, key in (
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ):
        value = _field(reader, key)
        if value is not None:
            config[ours] = int(value)
    return config


def hf_name(name: str) -> str:
    """GGUF tensor name -> transformers LLaMA name (unknown names come back unchanged,
    so a strict load lists them as unexpected)."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    if name.startswith("blk."):
        index, _, rest = name[4:].partition(".")
        if index.isdigit() and rest in _LAYER_NAMES:
            return f"model.layers.{index}.{_LAYER_NAMES[rest]}"
    return name


def unpermute_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's interleaved rotary row order -> transformers' half-split order.

    ``weight`` is ``[heads * d, ...]`` (a q/k projection weight or bias); within each
    head, row ``2i`` (llama.cpp) becomes row ``i`` and row ``2i + 1`` becomes ``i + d/2``.
    """
    rows = weight.shape[0]
    if rows % (2 * heads):
        raise ValueError(f"cannot split {rows} rows into {heads} heads of rotary pairs")
    half = rows // heads // 2
    rest = weight.shape[1:]
    return weight.reshape(heads, half, 2, *rest).transpose(1, 2).reshape(weight.shape)


def read_gguf(path: str | Path, packed: bool = False) -> GGUFCheckpoint:
    """Read a LLaMA-architecture GGUF file: config dict, dequantized float32 tensors
    under transformers' names (q/k rows back in the half-split rotary order).

    ``packed=True``: matrices of a :data:`PACKED_TYPES` type are not dequantized but
    kept as their blocks in ``blocks`` (copied out of the file's map, rows reordered
    like the float tensors'), for ``b4t.models.quantize_load`` to repack."""
    path = Path(path)
    try:
        reader = open_gguf(path)
    except (ValueError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable GGUF file: {exc}") from exc
    names = {t.name for t in reader.tensors}
    config = gguf_config(reader, path, names)
    rope_heads = {
        "attn_q": config["num_attention_heads"],
        "attn_k": config["num_key_value_heads"],
    }
    tensors: dict[str, torch.Tensor] = {}
    types: dict[str, str] = {}
    blocks: dict[str, GGUFBlocks] = {}
    for info in reader.tensors:
        shape = [int(n) for n in reversed(info.shape.tolist())]
        raw = torch.from_numpy(np.asarray(info.data).reshape(-1).view(np.uint8))
        type_name = info.tensor_type.name
        types[info.name] = type_name
        kind = info.name.split(".")[2] if info.name.startswith("blk.") else ""
        if packed and type_name in PACKED_TYPES and len(shape) == 2:
            rows = raw.reshape(shape[0], -1)
            rows = unpermute_rope(rows, rope_heads[kind]) if kind in rope_heads else rows.clone()
            blocks[hf_name(info.name)] = GGUFBlocks(rows, type_name, (shape[0], shape[1]))
            continue
        tensor = dequantize(raw, type_name, shape, name=info.name)
        if packed and type_name == "F32":
            tensor = tensor.clone()  # own memory: the file's map is not kept alive
        if kind in rope_heads:
            tensor = unpermute_rope(tensor, rope_heads[kind])
        tensors[hf_name(info.name)] = tensor
    metadata = {
        key: entry.contents()
        for key, entry in reader.fields.items()
        if not key.startswith("tokenizer.ggml.") or len(entry.data) <= 1
    }
    return GGUFCheckpoint(path, config, tensors, metadata, types, blocks)
