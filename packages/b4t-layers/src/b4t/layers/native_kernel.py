"""b4t's own CPU kernel for quantized weights: integer dot products over 16-row tiles.

torch ships no CPU kernel for 8-bit codes with a scale per group of 32 (GGUF ``Q8_0``):
``_weight_int8pack_mm`` takes one scale per row, and ``_weight_int4pack_mm_for_cpu`` runs
8-bit codes only as two 4-bit halves (see :mod:`b4t.layers.quantized`). This module
builds one, ``kernels/quant_matmul.cpp``, with ``torch.utils.cpp_extension`` the first
time it is needed (about 10 s; the library is kept under ``~/.cache/b4t/kernels``, one
per torch version and CPU), for 8-bit and 4-bit codes alike:

* weights are repacked once into tiles of 16 rows (:func:`repack_codes`), so that one
  AVX-512 VNNI ``vpdpbusd`` multiplies 16 rows by 4 columns;
* activations are quantized per block of 32 columns to int8 (absmax scale, round half to
  even) as llama.cpp does for its ``Q8_0`` dot products, and by default what that left
  is quantized once more (:data:`INPUT_PASSES`): each input value is then within
  1/64516 of its block's largest value instead of 1/254, at twice the integer work
  (SmolLM2's decoding steps: 3-10% longer at batch 1, about 1.35x at batch 8). The
  integer sums are exact and the scales applied per block in float32
  (:func:`reference_matmul` is the same arithmetic in PyTorch, which the tests hold the
  compiled code to);
* the tiles are shared among torch's intra-op threads (``at::parallel_for``).

The library has a portable path (plain loops; ``simd=False``) besides the AVX-512 VNNI
one, and :class:`~b4t.layers.quantized.QuantizedLinear` picks it (``kernel='native'``)
only where the VNNI path was compiled in; everywhere else, and when building fails (no
C++ compiler, no ``ninja``: the reason is warned once), it keeps torch's own kernels.
``B4T_NATIVE_KERNEL=0`` turns the library off; ``B4T_KERNEL_CACHE`` moves its cache.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import torch

__all__ = [
    "BLOCK",
    "INPUT_PASSES",
    "TILE",
    "available",
    "matmul",
    "reference_matmul",
    "repack_codes",
    "repack_groups",
    "row_codes",
    "set_input_passes",
    "simd_available",
    "unpack_codes",
    "unpack_groups",
]

TILE = 16
"""Output rows per tile of the repacked layout."""

BLOCK = 32
"""Input columns per activation quantization block (``in_features`` and ``group_size``
must be multiples of it)."""

STALE_LOCK_SECONDS = 600
"""A build lock older than this is left from a killed build and removed (a build takes
about 10 s)."""

INPUT_PASSES = 2
"""int8 passes over each input block a new ``QuantizedLinear`` makes under this kernel:
2 (the second quantizes what the first left) keeps SmolLM2's greedy answers on its fp32
model's; 1 is llama.cpp's rounding, about 1.35x faster at 8 rows."""

SOURCE = Path(__file__).with_name("kernels") / "quant_matmul.cpp"

_STATE: dict[str, object] = {}
_BUILD_LOCK = threading.Lock()  # one build per process, whichever thread asks first


def _cache_dir() -> Path:
    """One build directory per torch version, CPU model and flags (``-march=native``)."""
    root = os.environ.get("B4T_KERNEL_CACHE") or Path.home() / ".cache" / "b4t" / "kernels"
    cpu = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu += "".join(
                line for line in info if line.startswith(("flags", "model name", "Features"))
            )
    except OSError:
        pass
    digest = hashlib.sha256(cpu.encode()).hexdigest()[:12]
    return Path(root) / f"torch-{torch.__version__}-{digest}"


def _build() -> str:
    """Build (or load the cached) library; return '' or why it is unavailable."""
    if os.environ.get("B4T_NATIVE_KERNEL", "1") == "0":
        return "turned off by B4T_NATIVE_KERNEL=0"
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    directory = _cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / "lock"  # cpp_extension's; a build killed midway leaves it behind
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink()
    except OSError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compiler-version notes of cpp_extension
            cpp_extension.load(
                name="b4t_quant",
                sources=[str(SOURCE)],
                # no contraction into FMA where the source did not ask for one: the
                # input passes round as reference_matmul's PyTorch ops do
                extra_cflags=["-O3", "-march=native", "-ffp-contract=off"],
                build_directory=str(directory),
                is_python_module=False,
                verbose=False,
            )
    except Exception as error:  # no compiler, a failed compile: keep torch's kernels
        lines = str(error).strip().splitlines() or [type(error).__name__]
        first = next((line for line in lines if "error" in line.lower()), lines[-1])
        return f"building {SOURCE.name} failed: {first.strip()}"
    return ""


def available() -> bool:
    """Whether the library is loaded (built on the first call; warns once if it cannot
    be)."""
    if "reason" not in _STATE:
        with _BUILD_LOCK:
            if "reason" not in _STATE:
                reason = _build()
                if reason and os.environ.get("B4T_NATIVE_KERNEL", "1") != "0":
                    warnings.warn(
                        f"b4t's native quantized kernel is unavailable ({reason}); "
                        "quantized layers use torch's kernels",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                _STATE["reason"] = reason
    return not _STATE["reason"]


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    available()
    return str(_STATE["reason"])


def simd_available() -> bool:
    """Whether the library was built with its AVX-512 VNNI path (this CPU has it)."""
    return available() and bool(torch.ops.b4t_quant.simd_available())


def set_input_passes(model: torch.nn.Module, passes: int) -> int:
    """Set the int8 passes over the input (1 or 2, see :data:`INPUT_PASSES`) of every
    quantized layer in ``model``; returns how many layers were set."""
    if passes not in (1, 2):
        raise ValueError(f"input passes must be 1 or 2, got {passes}")
    layers = [m for m in model.modules() if hasattr(m, "input_passes")]
    for layer in layers:
        layer.input_passes = passes
    return len(layers)


def _tiles(rows: int) -> int:
    return -(-rows // TILE)


def repack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Canonical codes ``[out, in]`` (int8 for 8 bits; 0..15 for 4 bits) -> the kernel's
    uint8 tiles (see ``kernels/quant_matmul.cpp``); rows padded to whole tiles."""
    out, cols = codes.shape
    step = 4 if bits == 8 else 8
    if cols % step:
        raise ValueError(f"repack_codes: in_features {cols} is not a multiple of {step}")
    if bits == 8:
        values = (codes.to(torch.int16) + 128).to(torch.uint8)
    else:
        values = codes.to(torch.uint8)
    padded = torch.zeros(_tiles(out) * TILE, cols, dtype=torch.uint8)
    padded[:out] = values
    tiles = padded.reshape(-1, TILE, cols // step, step).permute(0, 2, 1, 3)  # [T, K/s, 16, s]
    if bits == 4:
        tiles = tiles[..., :4] | (tiles[..., 4:] << 4)
    return tiles.contiguous().reshape(-1)


def _codes_of_tiles(tiles: torch.Tensor, bits: int) -> torch.Tensor:
    """``[T', K/s, L, 4]`` uint8 tile bytes (``L`` lanes of each) -> ``[T' * L, K]``
    canonical codes."""
    if bits == 4:
        tiles = torch.cat([tiles & 0x0F, tiles >> 4], dim=-1)  # [T', K/8, 16, 8]
    rows = tiles.permute(0, 2, 1, 3).reshape(tiles.shape[0] * tiles.shape[2], -1)
    if bits == 8:
        return (rows.to(torch.int16) - 128).to(torch.int8)
    return rows


def unpack_codes(packed: torch.Tensor, out: int, cols: int, bits: int) -> torch.Tensor:
    """The inverse of :func:`repack_codes`: ``[out, in]`` canonical codes."""
    step = 4 if bits == 8 else 8
    tiles = packed.reshape(_tiles(out), cols // step, TILE, 4)
    return _codes_of_tiles(tiles, bits)[:out]


def row_codes(packed: torch.Tensor, ids: torch.Tensor, out: int, cols: int, bits: int):
    """Canonical codes ``[len(ids), in]`` of rows ``ids``, read straight from the tiles
    (a tied embedding table looks its rows up here)."""
    step = 4 if bits == 8 else 8
    tiles = packed.reshape(_tiles(out), cols // step, TILE, 4)
    picked = tiles[ids // TILE, :, ids % TILE]  # [n, K/s, 4]
    return _codes_of_tiles(picked.unsqueeze(2), bits)


def repack_groups(values: torch.Tensor) -> torch.Tensor:
    """Per-group floats ``[out, G]`` (scales or mins) -> ``[T, G, 16]`` (padded rows are
    0), float16 where ``values`` are (GGUF's scales: exact, half the bytes), else
    float32."""
    out, groups = values.shape
    dtype = torch.float16 if values.dtype == torch.float16 else torch.float32
    padded = torch.zeros(_tiles(out) * TILE, groups, dtype=dtype)
    padded[:out] = values
    return padded.reshape(-1, TILE, groups).transpose(1, 2).contiguous()


def unpack_groups(tiles: torch.Tensor, out: int) -> torch.Tensor:
    """The inverse of :func:`repack_groups`: ``[out, G]`` in the tiles' dtype."""
    return tiles.transpose(1, 2).reshape(-1, tiles.shape[1])[:out]


def matmul(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor | None,
    bias: torch.Tensor | None,
    out_features: int,
    bits: int,
    group_size: int,
    zero: int,
    simd: bool = True,
    levels: int = 2,
) -> torch.Tensor:
    """float32 ``x [R, in]`` -> float32 ``[R, out]`` through the compiled kernel, for
    tiles of :func:`repack_codes`; the weight's value is ``(code - zero) * scale (+ min)``
    in terms of the canonical codes (``Q8_0``: 0; ``Q4_0``: 8; ``Q4_1``: 0 with mins).
    ``levels``: int8 passes over the input (see :func:`quantize_activations`)."""
    if not available():
        raise RuntimeError(f"b4t's native kernel is unavailable: {unavailable_reason()}")
    return torch.ops.b4t_quant.quant_matmul(
        x.contiguous(),
        packed,
        scales,
        mins,
        bias,
        out_features,
        bits,
        group_size,
        zero + 128 if bits == 8 else zero,  # the tiles hold int8 codes + 128
        levels,
        simd,
    )


def quantize_activations(
    x: torch.Tensor, levels: int = 2
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """float32 ``[R, in]`` -> one (int8-valued float ``[R, in/32, 32]``, scales
    ``[R, in/32]``) per pass: the kernel's per-block absmax quantization, in PyTorch. Pass
    2 quantizes what pass 1 left, so ``sum(q * d)`` is within half a step of the last
    pass of ``x`` (1/254 of the block's absmax for one pass, about 1/64516 for two)."""
    left = x.float().reshape(x.shape[0], -1, BLOCK)
    passes = []
    for _ in range(levels):
        amax = left.abs().amax(-1)
        # tensor-by-tensor divisions: ``127.0 / t`` would be 127 * (1 / t), rounded twice
        full = torch.full_like(amax, 127.0)
        inverse = torch.where(amax > 0, full / amax, torch.zeros_like(amax))
        codes, step = torch.round(left * inverse[..., None]), amax / full
        passes.append((codes, step))
        left = left - step[..., None] * codes
    return passes


def reference_matmul(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor | None,
    bias: torch.Tensor | None,
    group_size: int,
    zero: int,
    levels: int = 2,
) -> torch.Tensor:
    """The kernel's arithmetic in PyTorch: ``x [R, in]``, canonical codes ``[out, in]``
    (value ``(code - zero) * scale (+ min)``), ``scales``/``mins`` ``[out, G]`` -> float32
    ``[R, out]``. Integer sums exact (float64), then per block
    ``scale * sum over passes of dx * (dot - zero * sum)`` (+ ``min * sum over passes of
    dx * sum``), as the kernel."""
    out_features, cols = codes.shape
    w = codes.double().reshape(out_features, -1, BLOCK)  # [N, B, 32]
    index = torch.arange(cols // BLOCK) * BLOCK // group_size
    term = shift = None
    for xq, dx in quantize_activations(x, levels):  # [R, B, 32], [R, B]
        dots = torch.einsum("rbk,nbk->rnb", xq.double(), w)  # exact integers
        sums = xq.sum(-1)  # [R, B]
        centred = (dots - zero * sums[:, None, :].double()).float()  # [R, N, B]
        part = dx[:, None, :] * centred
        term = part if term is None else term + part
        moved = dx * sums
        shift = moved if shift is None else shift + moved
    terms = scales.float()[:, index][None] * term
    if mins is not None:
        terms = terms + mins.float()[:, index][None] * shift[:, None, :]
    out = terms.sum(-1)
    return out if bias is None else out + bias.float()
