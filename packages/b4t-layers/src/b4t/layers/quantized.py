"""Weight-only quantized linear layers: the weights stay packed, the input stays float.

:class:`QuantizedLinear` holds a ``[out, in]`` weight as small integer codes plus float
scales (and, for asymmetric 4-bit, minimums), one per group of ``group_size`` consecutive
input features of a row (``group_size=None``: one per row). The value of code ``q`` is

* ``bits=8``: ``q * scale`` (``q`` an int8, -128..127; GGUF ``Q8_0``),
* ``bits=4``, symmetric: ``(q - 8) * scale`` (``q`` in 0..15; GGUF ``Q4_0``),
* ``bits=4``, asymmetric: ``q * scale + min`` (``q`` in 0..15; GGUF ``Q4_1``).

The state dict holds the portable (canonical) form: ``qweight`` (int8 ``[out, in]`` for 8
bits; uint8 ``[out, in / 2]`` for 4 bits, code ``2j`` in the low nibble of byte ``j`` and
code ``2j + 1`` in the high nibble), ``scales`` (``[out, groups]``), ``mins``
(``[out, groups]``, asymmetric 4-bit only) and ``bias``. Scales and mins are float32 from
:meth:`QuantizedLinear.quantize` and float16 (the file's own values) from GGUF blocks.

Kernels (``kernel=``; ``'auto'`` picks from :func:`choose_kernel`):

* ``'dequant'``: pure PyTorch, available everywhere and the reference the tests compare
  against: dequantize a block of output rows to float32 (small enough to stay in the CPU
  caches) and ``F.linear`` it. Exact: the products use exactly the dequantized values.
* ``'int8pack'``: torch's ``_weight_int8pack_mm`` (8 bits, one scale per row only).
* ``'native'``: b4t's own kernel (:mod:`b4t.layers.native_kernel`, compiled at first use):
  the codes repacked once into tiles of 16 rows, the input quantized per block of 32 to
  int8 as llama.cpp does, then what that left quantized again (``input_passes``, 2 by
  default; 1 is llama.cpp's rounding), integer dot products (AVX-512 VNNI), scales
  applied per block in float32. Any bits (8 or 4, Q8_0/Q4_0/Q4_1 alike), ``group_size`` a
  multiple of 32; 'auto' picks it wherever it was built with its VNNI path. Measured on
  SmolLM2's shapes, one thread, one row, one input pass: 1.7-7.6x an fp32 ``F.linear`` for
  Q8_0 and 2.2-10x for Q4_1, 1.7-3.1x ``'int4pack'`` (``benchmarks/bench_quantized.py``).
* ``'int4pack'``: torch's ``_convert_weight_to_int4pack_for_cpu`` (done once, when the
  kernel is set; the module then keeps only the repacked codes) and
  ``_weight_int4pack_mm_for_cpu``, which computes ``(q - 8) * scale + zero`` per group;
  4 bits: ``zero = 0`` (symmetric) or ``min + 8 * scale`` (asymmetric). 8 bits with groups
  (``Q8_0``) run as two 4-bit products that add up exactly: ``q = 16 * hi + lo`` with
  ``hi = q >> 4`` (codes ``hi + 8``, scale ``16 * scale``, zero 0) and ``lo = q & 15``
  (scale ``scale``, zero ``8 * scale``): the same bytes as int8 codes. Needs
  ``out % 16 == 0`` and ``group_size`` in 32, 64, 128, 256.

torch's two packed kernels are fast on CPU only for bfloat16 activations (with float32
or float16 activations they measured 10-100x slower than an fp32 matmul, torch 2.13 on
AVX-512; see ``benchmarks/bench_quantized.py``), so both compute in bfloat16: the input,
the scales and zeros are rounded to bfloat16 (8 significant bits) and the output comes
back as bfloat16, then is cast to the input's dtype. That is the one place where the
packed kernels do not reproduce the dequantized values exactly (relative error about
2**-8 per value); ``'native'`` instead rounds the input per block of 32 (error at most
1/64516 of the block's largest value with two passes, 1/254 with one). Use
``kernel='dequant'`` for exact float32 products. Rows above
:data:`MAX_KERNEL_ROWS` (prefill) are fed to the kernels in chunks of that many rows.

A kernel that the installed torch lacks (or that rejects the shape) is never chosen by
``'auto'``; asking for it explicitly raises a ``ValueError`` naming the reason. The
packed kernels have no derivative: an input that needs a gradient (adapters trained
before a frozen quantized layer) goes through ``'dequant'``, whatever the kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from b4t.layers import native_kernel
from b4t.layers.int4pack_rows import (
    gather_rows,
    int4pack_join,
    int4pack_parts,
    int4pack_rows_or_codes,
)

__all__ = [
    "KERNELS",
    "QuantizedLinear",
    "choose_kernel",
    "kernel_available",
    "pack_int4",
    "quantize_linears",
    "unpack_int4",
]

KERNELS = ("dequant", "int8pack", "int4pack", "native")
"""Every kernel name :class:`QuantizedLinear` accepts (besides ``'auto'``)."""

INT4PACK_GROUPS = (32, 64, 128, 256)
"""Group sizes torch's CPU int4 kernel accepts."""

MAX_KERNEL_ROWS = 64
"""The most rows one call of a packed torch kernel gets (more are fed in chunks)."""

DEQUANT_BLOCK_BYTES = 1 << 18
"""Bytes of float32 weight the ``'dequant'`` kernel materializes at a time (256 KiB)."""

GGUF_BLOCKS = {"Q8_0": (34, 8, False), "Q4_0": (18, 4, False), "Q4_1": (20, 4, True)}
"""GGUF block formats read by :meth:`QuantizedLinear.from_gguf_blocks`: bytes per block of
32 values, bits, asymmetric."""


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """``[..., 2n]`` codes in 0..15 (any integer dtype) -> ``[..., n]`` uint8, code ``2j`` in
    the low nibble of byte ``j`` and code ``2j + 1`` in the high nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_int4: the last dimension ({codes.shape[-1]}) must be even")
    codes = codes.to(torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_int4`: ``[..., n]`` uint8 -> ``[..., 2n]`` uint8 codes."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


def _op(name: str):
    return getattr(torch.ops.aten, name, None)


def kernel_available(kernel: str) -> bool:
    """Whether the installed torch ships the ops a kernel needs."""
    if kernel == "dequant":
        return True
    if kernel == "int8pack":
        return _op("_weight_int8pack_mm") is not None
    if kernel == "int4pack":
        return (
            _op("_convert_weight_to_int4pack_for_cpu") is not None
            and _op("_weight_int4pack_mm_for_cpu") is not None
        )
    if kernel == "native":
        return native_kernel.available()
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS} or 'auto'")


def _kernel_fits(
    kernel: str, bits: int, group_size: int | None, out_features: int, in_features: int
) -> str:
    """Why ``kernel`` cannot run this layout ('' when it can)."""
    if kernel == "native":
        if not native_kernel.available():
            return f"the native kernel is unavailable: {native_kernel.unavailable_reason()}"
        group = in_features if group_size is None else group_size
        if group % native_kernel.BLOCK or in_features % native_kernel.BLOCK:
            return f"'native' needs in_features and group_size multiples of {native_kernel.BLOCK}"
        return ""
    if not kernel_available(kernel):
        return f"torch {torch.__version__} lacks the ops of kernel {kernel!r}"
    if kernel == "int8pack" and (bits != 8 or group_size is not None):
        return "'int8pack' needs bits=8 with one scale per row (group_size=None)"
    if kernel == "int4pack":
        if group_size not in INT4PACK_GROUPS:
            return f"'int4pack' needs group_size in {INT4PACK_GROUPS}, got {group_size}"
        if out_features % 16:
            return f"'int4pack' needs out_features divisible by 16, got {out_features}"
    return ""


def choose_kernel(
    bits: int, group_size: int | None, out_features: int, in_features: int | None = None
) -> str:
    """The kernel ``'auto'`` picks for a layout: ``'native'`` where it fits and was built
    with its VNNI path (``in_features`` given), else the packed torch kernel where it fits
    and the installed torch has it, else ``'dequant'``.

    Measured (``benchmarks/bench_quantized.py``, CPU, one thread, torch 2.13, SmolLM2-135M's
    shapes, 1 and 8 rows): in bfloat16 ``int4pack`` and ``int8pack`` beat the fp32 matmul
    on the shapes that dominate decoding (the LM head and the MLP), while ``dequant`` is
    slower than fp32 (it reads the packed bytes but converts every value each call).
    """
    fits = in_features is not None and not _kernel_fits(
        "native", bits, group_size, out_features, in_features
    )
    if fits and native_kernel.simd_available():
        return "native"
    if bits == 8 and group_size is None:
        candidate = "int8pack"
    else:
        candidate = "int4pack"
    if _kernel_fits(candidate, bits, group_size, out_features, in_features or 0):
        return "dequant"
    return candidate


def _check_layout(in_features: int, out_features: int, bits: int, group_size: int | None) -> int:
    """Validate the layout; return the number of groups per row."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    if in_features <= 0 or out_features <= 0:
        raise ValueError(
            f"in_features and out_features must be positive, got {in_features}, {out_features}"
        )
    if group_size is None:
        if bits == 4:
            raise ValueError("bits=4 needs a group_size (e.g. 32); one scale per row is too coarse")
        return 1
    if group_size <= 0 or in_features % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {in_features}")
    if bits == 4 and group_size % 2:
        raise ValueError(f"bits=4 needs an even group_size, got {group_size}")
    return in_features // group_size


class QuantizedLinear(nn.Module):
    """A weight-only quantized ``Linear``: ``[..., in]`` -> ``[..., out]`` (see the module doc).

    Build it with :meth:`quantize` (from a float weight), :meth:`from_linear`,
    :meth:`from_gguf_blocks` (GGUF ``Q8_0``/``Q4_0``/``Q4_1`` bytes) or as an empty shell to
    ``load_state_dict`` into.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int = 8,
        group_size: int | None = 32,
        asymmetric: bool = False,
        bias: bool = True,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        groups = _check_layout(in_features, out_features, bits, group_size)
        if asymmetric and bits != 4:
            raise ValueError("asymmetric=True is for bits=4 only (8-bit codes are symmetric)")
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.group_size = group_size
        self.asymmetric = asymmetric
        if bits == 8:
            codes = torch.zeros(out_features, in_features, dtype=torch.int8)
        else:
            codes = torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
        self.register_buffer("qweight", codes)
        self.register_buffer("scales", torch.ones(out_features, groups))
        self.register_buffer("mins", torch.zeros(out_features, groups) if asymmetric else None)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self.kernel = "dequant"
        self._int4: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # the native kernel's tiles: codes, scales, mins (see native_kernel.repack_codes)
        self._native: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._int8_scales: torch.Tensor | None = None
        # int8 passes over the input under the native kernel (native_kernel.set_input_passes)
        self.input_passes = native_kernel.INPUT_PASSES
        # the canonical ``qweight`` while another module keeps it (a tied embedding table):
        # codes() reads it instead of unpacking torch's int4 layout
        self._shared_codes: torch.Tensor | None = None
        self.set_kernel(kernel)

    # ----- kernels -------------------------------------------------------------------------

    def set_kernel(self, kernel: str = "auto") -> QuantizedLinear:
        """Choose the kernel (``'auto'`` or one of :data:`KERNELS`); repacks the codes for
        ``'int4pack'`` and ``'native'``."""
        if kernel == "auto":
            kernel = choose_kernel(self.bits, self.group_size, self.out_features, self.in_features)
        elif kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS} or 'auto'")
        reason = _kernel_fits(
            kernel, self.bits, self.group_size, self.out_features, self.in_features
        )
        if reason:
            raise ValueError(
                f"QuantizedLinear({self.in_features} -> {self.out_features}): {reason}"
            )
        codes = self.codes()
        if self._int4 is not None or self._native is not None:  # canonical buffers first
            self.qweight = codes if self.bits == 8 else pack_int4(codes)
            self._int4 = self._native = None  # (``scales`` and ``mins`` stay canonical)
        self.kernel = kernel
        self._int8_scales = None
        if kernel == "int8pack":
            self._int8_scales = self.scales.reshape(-1).float().to(torch.bfloat16)
        if kernel == "int4pack":
            self._int4 = int4pack_parts(codes, self.scales, self.mins, self.bits)
        if kernel == "native":
            self._native = (
                native_kernel.repack_codes(codes, self.bits),
                native_kernel.repack_groups(self.scales),
                None if self.mins is None else native_kernel.repack_groups(self.mins),
            )
        if kernel in ("int4pack", "native"):
            # the canonical codes now live in the packed form only (see codes())
            self.qweight = torch.empty(0, dtype=self.qweight.dtype)
        return self

    def share_codes(self, qweight: torch.Tensor) -> None:
        """Record that ``qweight`` (this layer's canonical codes, kept by another module)
        stays alive: :meth:`codes` then reads it instead of undoing torch's int4 layout."""
        expected = self.in_features if self.bits == 8 else self.in_features // 2
        if tuple(qweight.shape) != (self.out_features, expected):
            raise ValueError(
                f"share_codes: expected [{self.out_features}, {expected}], got "
                f"{tuple(qweight.shape)}"
            )
        self._shared_codes = qweight

    def codes(self) -> torch.Tensor:
        """The integer codes ``[out, in]`` (int8 for 8 bits, uint8 0..15 for 4 bits)."""
        if self._shared_codes is not None:
            return self._shared_codes if self.bits == 8 else unpack_int4(self._shared_codes)
        if self._native is not None:
            return native_kernel.unpack_codes(
                self._native[0], self.out_features, self.in_features, self.bits
            )
        if self._int4 is not None:
            parts = [
                int4pack_rows_or_codes(p, self.out_features, self.in_features)
                for p, _ in self._int4
            ]
            return int4pack_join(parts)
        if self.bits == 8:
            return self.qweight
        return unpack_int4(self.qweight)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight ``[out, in]`` the codes stand for."""
        return _dequantize_rows(
            self.codes(), self.scales, self.mins, self.bits, self.asymmetric, self.group_size
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``input [..., in]`` -> ``[..., out]`` through the layer's kernel (output in the
        input's dtype)."""
        if input.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantizedLinear expects input [..., {self.in_features}], got {tuple(input.shape)}"
            )
        rows = input.reshape(-1, self.in_features)
        # the packed kernels have no derivative: gradients flow through the exact path
        exact = self.kernel == "dequant" or (input.requires_grad and torch.is_grad_enabled())
        if self.kernel == "native" and not exact:  # bias added in the kernel, in float32
            out = self._native_matmul(rows.float()).to(input.dtype)
            return out.reshape(*input.shape[:-1], self.out_features)
        if exact:
            out = self._dequant_matmul(rows.float())
        elif rows.shape[0] <= MAX_KERNEL_ROWS:  # decoding: one call, no copies beyond the casts
            out = self._packed_matmul(rows.to(torch.bfloat16))
        else:
            chunks = rows.to(torch.bfloat16).split(MAX_KERNEL_ROWS)
            out = torch.cat([self._packed_matmul(chunk) for chunk in chunks])
        out = out.to(input.dtype)
        if self.bias is not None:
            out = out + self.bias.to(input.dtype)
        return out.reshape(*input.shape[:-1], self.out_features)

    def _native_matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """float32 ``[R, in]`` -> float32 ``[R, out]`` (bias included) through
        :func:`b4t.layers.native_kernel.matmul`."""
        packed, scales, mins = self._native
        zero = 8 if self.bits == 4 and not self.asymmetric else 0
        group = self.in_features if self.group_size is None else self.group_size
        shape = (self.out_features, self.bits, group, zero, True, self.input_passes)
        return native_kernel.matmul(rows, packed, scales, mins, self.bias, *shape)

    def row_codes(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The codes ``[len(ids), in]`` of output rows ``ids`` (int8, or uint8 0..15), read
        from whichever form holds them; None where torch's int4 layout does not allow a
        row gather (see :mod:`b4t.layers.int4pack_rows`)."""
        if self._native is not None:
            return native_kernel.row_codes(
                self._native[0], ids, self.out_features, self.in_features, self.bits
            )
        if self._int4 is None:
            codes = self.qweight.index_select(0, ids)
            return codes if self.bits == 8 else unpack_int4(codes)
        parts = [
            gather_rows(packed, ids, self.out_features, self.in_features)
            for packed, _ in self._int4
        ]
        return None if parts[0] is None else int4pack_join(parts)

    def _packed_matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """bfloat16 ``[R, in]`` -> ``[R, out]`` through torch's packed kernels."""
        rows = rows.contiguous()
        if self.kernel == "int8pack":
            return torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self._int8_scales)
        out = None
        for packed, scale_zero in self._int4:
            part = torch.ops.aten._weight_int4pack_mm_for_cpu(
                rows, packed, self.group_size, scale_zero
            )
            out = part if out is None else out.float().add_(part)
        return out

    def _dequant_matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ W.T`` a block of output rows at a time: ``[R, in]`` -> ``[R, out]``."""
        step = max(1, DEQUANT_BLOCK_BYTES // (4 * self.in_features))
        codes = self.codes()
        parts = []
        for start in range(0, self.out_features, step):
            stop = min(start + step, self.out_features)
            weight = _dequantize_rows(
                codes[start:stop],
                self.scales[start:stop],
                None if self.mins is None else self.mins[start:stop],
                self.bits,
                self.asymmetric,
                self.group_size,
            )
            parts.append(F.linear(rows, weight))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    # ----- state dict: always the canonical layout -------------------------------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._int4 is not None or self._native is not None:
            codes = self.codes()
            destination[prefix + "qweight"] = codes if self.bits == 8 else pack_int4(codes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if not any(key.startswith(prefix) for key in state_dict):
            # nothing of this layer (a partial load): report the keys missing, skip the repack
            strict, missing = args[1], args[2]
            if strict:
                missing.extend(prefix + name for name, _ in self.named_buffers(recurse=False))
                missing.extend(prefix + name for name, _ in self.named_parameters(recurse=False))
            return
        self._shared_codes = None
        kernel = self.kernel
        self.set_kernel("dequant")  # canonical buffers to load into
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.set_kernel(kernel)

    def extra_repr(self) -> str:
        group = "row" if self.group_size is None else self.group_size
        kind = "asymmetric" if self.asymmetric else "symmetric"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits={self.bits}, group_size={group}, {kind}, bias={self.bias is not None}, "
            f"kernel={self.kernel!r}"
        )

    # ----- constructors ------------------------------------------------------------------

    @classmethod
    def quantize(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        bits: int = 8,
        group_size: int | None = 32,
        asymmetric: bool = False,
        kernel: str = "auto",
    ) -> QuantizedLinear:
        """Quantize a float ``[out, in]`` weight (round to nearest, per-group absmax scales;
        for asymmetric 4-bit, per-group min/max)."""
        if weight.dim() != 2:
            raise ValueError(f"weight must be [out, in], got shape {tuple(weight.shape)}")
        out_features, in_features = weight.shape
        if bias is not None and tuple(bias.shape) != (out_features,):
            raise ValueError(f"bias must be [{out_features}], got shape {tuple(bias.shape)}")
        layer = cls(
            in_features, out_features, bits, group_size, asymmetric, bias is not None, "dequant"
        )
        groups = layer.scales.shape[1]
        w = weight.detach().float().reshape(out_features, groups, -1)  # [out, G, g]
        if bits == 8:
            scale = w.abs().amax(-1) / 127
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
            codes = torch.round(w / scale[..., None]).clamp(-127, 127).to(torch.int8)
            layer.qweight = codes.reshape(out_features, in_features)
        elif not asymmetric:
            scale = w.abs().amax(-1) / 7
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
            codes = (torch.round(w / scale[..., None]) + 8).clamp(0, 15)
            layer.qweight = pack_int4(codes.reshape(out_features, in_features))
        else:
            low, high = w.amin(-1), w.amax(-1)
            scale = (high - low) / 15
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
            codes = torch.round((w - low[..., None]) / scale[..., None]).clamp(0, 15)
            layer.qweight = pack_int4(codes.reshape(out_features, in_features))
            layer.mins = low.contiguous()
        layer.scales = scale.contiguous()
        if bias is not None:
            layer.bias.data.copy_(bias.detach().float())
        return layer.set_kernel(kernel)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, bits: int = 8, group_size: int | None = 32, **kwargs
    ) -> QuantizedLinear:
        """Quantize an ``nn.Linear`` (or b4t ``Linear``)."""
        return cls.quantize(linear.weight, linear.bias, bits, group_size, **kwargs)

    @classmethod
    def from_gguf_blocks(
        cls,
        raw: torch.Tensor,
        type_name: str,
        shape: tuple[int, int],
        bias: torch.Tensor | None = None,
        kernel: str = "auto",
        name: str = "",
    ) -> QuantizedLinear:
        """Repack a GGUF ``Q8_0``/``Q4_0``/``Q4_1`` matrix once: ``raw`` is its bytes (uint8,
        any shape, read in order), ``shape`` its torch shape ``[out, in]``. The dequantized
        values equal ggml's (see the module doc for ``Q4_1`` under ``int4pack``)."""
        label = f"tensor {name!r}" if name else "GGUF tensor"
        if type_name not in GGUF_BLOCKS:
            raise ValueError(
                f"{label}: type {type_name!r} cannot be kept packed; supported: {list(GGUF_BLOCKS)}"
            )
        block_bytes, bits, asymmetric = GGUF_BLOCKS[type_name]
        if len(shape) != 2:
            raise ValueError(f"{label}: expected a matrix shape [out, in], got {tuple(shape)}")
        out_features, in_features = (int(s) for s in shape)
        if in_features % 32:
            raise ValueError(f"{label}: in_features {in_features} is not whole blocks of 32")
        n_blocks = out_features * in_features // 32
        flat = raw.reshape(-1)
        if flat.dtype != torch.uint8 or flat.numel() != n_blocks * block_bytes:
            raise ValueError(
                f"{label}: expected {n_blocks * block_bytes} uint8 bytes of {type_name} for shape "
                f"{tuple(shape)}, got {flat.numel()} of {flat.dtype}"
            )
        blocks = flat.reshape(out_features, in_features // 32, block_bytes)
        layer = cls(in_features, out_features, bits, 32, asymmetric, bias is not None, "dequant")
        layer.scales = _fp16_field(blocks, 0)
        if type_name == "Q8_0":
            layer.qweight = blocks[..., 2:].contiguous().view(torch.int8).reshape(out_features, -1)
        else:
            start = 4 if asymmetric else 2
            if asymmetric:
                layer.mins = _fp16_field(blocks, 2)
            # ggml: byte j of a block holds value j (low nibble) and value j + 16 (high)
            nibbles = blocks[..., start:]
            codes = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=-1)  # [out, G, 32]
            layer.qweight = pack_int4(codes.reshape(out_features, in_features))
        if bias is not None:
            layer.bias.data.copy_(bias.detach().float())
        return layer.set_kernel(kernel)


def _fp16_field(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """``[out, G, bytes]`` uint8 -> the fp16 field at byte ``start``: float16 ``[out, G]``
    (kept in float16: exact, and half the bytes of float32)."""
    return blocks[..., start : start + 2].contiguous().view(torch.float16).squeeze(-1)


def _dequantize_rows(
    codes: torch.Tensor,
    scales: torch.Tensor,
    mins: torch.Tensor | None,
    bits: int,
    asymmetric: bool,
    group_size: int | None,
) -> torch.Tensor:
    """``[rows, in]`` codes, ``[rows, G]`` scales (and mins) -> float32 ``[rows, in]``."""
    rows, in_features = codes.shape
    groups = scales.shape[1]
    values = codes.float().reshape(rows, groups, in_features // groups)
    if bits == 4 and not asymmetric:
        values = values - 8
    values = values * scales[..., None]
    if asymmetric:
        values = values + mins[..., None]
    return values.reshape(rows, in_features)


def quantize_linears(
    model: nn.Module,
    bits: int = 8,
    group_size: int | None = 32,
    asymmetric: bool = False,
    kernel: str = "auto",
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Swap every ``nn.Linear`` of ``model`` (b4t's ``Linear`` included) for a
    :class:`QuantizedLinear` of its weight, in place; return the names swapped.

    A layer whose name contains one of ``skip``, or whose ``in_features`` the group size
    does not divide, stays float. A weight shared with another module (a tied LM head)
    gets its own packed copy; the other module keeps the float tensor.
    """
    swapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or any(part in name for part in skip):
            continue
        if group_size is not None and module.in_features % group_size:
            continue
        layer = QuantizedLinear.from_linear(
            module, bits, group_size, asymmetric=asymmetric, kernel=kernel
        )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        swapped.append(name)
    return swapped
