"""A word-embedding table kept quantized: rows are gathered from the codes, then dequantized.

:class:`QuantizedEmbedding` stores a ``[num_embeddings, embedding_dim]`` table in the
canonical layout of :class:`~b4t.layers.quantized.QuantizedLinear` (``qweight``,
``scales``, ``mins``; same formulas) and looks ids up by gathering only the rows asked
for: ``[...]`` ids -> ``[..., embedding_dim]`` float32. A tied LM head reads the same
codes through :meth:`QuantizedEmbedding.tied_head`, a ``QuantizedLinear`` over the table
(repacked for its fast kernel once; the embedding keeps the canonical codes, which a row
gather needs).
"""

from __future__ import annotations

import torch
from torch import nn

from b4t.layers.int4pack_rows import ROW_BLOCK, block_positions
from b4t.layers.quantized import QuantizedLinear, _dequantize_rows, pack_int4, unpack_int4

__all__ = ["QuantizedEmbedding"]


class QuantizedEmbedding(nn.Module):
    """An ``nn.Embedding`` whose table stays packed (8-bit or 4-bit codes, per-group scales).

    Build it with :meth:`from_quantized_linear` (a table quantized as a linear layer:
    GGUF blocks, :meth:`QuantizedLinear.quantize`) or :meth:`quantize`, or as an empty
    shell to ``load_state_dict`` into. ``weight`` is the dequantized float32 table, made on
    each access (costly: for code that needs the float table, not for lookups).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        bits: int = 8,
        group_size: int | None = 32,
        asymmetric: bool = False,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        shell = QuantizedLinear(
            embedding_dim, num_embeddings, bits, group_size, asymmetric, False, "dequant"
        )
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.bits = bits
        self.group_size = group_size
        self.asymmetric = asymmetric
        self.padding_idx = padding_idx
        self.register_buffer("qweight", shell.qweight)
        self.register_buffer("scales", shell.scales)
        self.register_buffer("mins", shell.mins)
        # the tied head whose packed codes the rows are read from (see read_rows_from);
        # a tuple, so that the head is not registered twice as a submodule
        self._head: tuple[QuantizedLinear, ...] = ()

    @classmethod
    def from_quantized_linear(
        cls, layer: QuantizedLinear, padding_idx: int | None = None
    ) -> QuantizedEmbedding:
        """The table of ``layer`` (``[out, in]`` = ``[num_embeddings, embedding_dim]``),
        sharing its canonical codes while ``layer`` keeps them (kernel ``'dequant'``)."""
        table = cls(
            layer.out_features,
            layer.in_features,
            layer.bits,
            layer.group_size,
            layer.asymmetric,
            padding_idx,
        )
        codes = layer.codes()
        table.qweight = codes if layer.bits == 8 else pack_int4(codes)
        table.scales = layer.scales
        table.mins = layer.mins
        return table

    @classmethod
    def quantize(
        cls,
        weight: torch.Tensor,
        bits: int = 8,
        group_size: int | None = 32,
        asymmetric: bool = False,
        padding_idx: int | None = None,
    ) -> QuantizedEmbedding:
        """Quantize a float ``[num_embeddings, embedding_dim]`` table (as
        :meth:`QuantizedLinear.quantize` does a weight)."""
        layer = QuantizedLinear.quantize(weight, None, bits, group_size, asymmetric, "dequant")
        return cls.from_quantized_linear(layer, padding_idx)

    def codes(self) -> torch.Tensor:
        """The integer codes ``[num_embeddings, embedding_dim]`` (int8, or uint8 0..15)."""
        if self._head:
            return self._row_codes(torch.arange(self.num_embeddings))
        return self.qweight if self.bits == 8 else unpack_int4(self.qweight)

    def _row_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Codes ``[len(ids), embedding_dim]`` of rows ``ids`` (int8, or uint8 0..15)."""
        if self._head:
            return self._head[0].row_codes(ids)
        codes = self.qweight.index_select(0, ids)
        return codes if self.bits == 8 else unpack_int4(codes)

    def read_rows_from(self, head: QuantizedLinear, samples: int = 64) -> bool:
        """Read rows from ``head``'s packed codes (a tied LM head over this table, kernel
        ``'native'``, or ``'int4pack'`` where torch's layout allows a row gather:
        :mod:`b4t.layers.int4pack_rows`) and drop this module's own copy of the codes, when
        ``samples`` rows read back equal. Returns whether it did (else nothing changes)."""
        if self._head or head.out_features != self.num_embeddings:
            return False
        if head.kernel not in ("int4pack", "native"):
            return False
        if head.kernel == "int4pack" and (
            block_positions(self.embedding_dim) is None or self.num_embeddings % ROW_BLOCK
        ):
            return False
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, self.num_embeddings, (samples,), generator=generator)
        ids = torch.cat([ids, torch.tensor([0, self.num_embeddings - 1])])
        own = self._row_codes(ids)
        self._head = (head,)
        if not torch.equal(self._row_codes(ids), own):
            self._head = ()
            return False
        self.qweight = None  # the head's packed codes are the table now
        if head._shared_codes is not None:
            head._shared_codes = None
        return True

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 table ``[num_embeddings, embedding_dim]`` (made per call)."""
        return _dequantize_rows(
            self.codes(), self.scales, self.mins, self.bits, self.asymmetric, self.group_size
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``[...]`` integer ids -> ``[..., embedding_dim]`` float32 rows."""
        flat = ids.reshape(-1)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(
                f"QuantizedEmbedding: ids must be in [0, {self.num_embeddings}), got "
                f"{int(flat.min())}..{int(flat.max())}"
            )
        codes = self._row_codes(flat)
        mins = None if self.mins is None else self.mins.index_select(0, flat)
        rows = _dequantize_rows(
            codes,
            self.scales.index_select(0, flat),
            mins,
            self.bits,
            self.asymmetric,
            self.group_size,
        )
        return rows.reshape(*ids.shape, self.embedding_dim)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._head:  # the canonical codes, read back from the head
            codes = self.codes()
            destination[prefix + "qweight"] = codes if self.bits == 8 else pack_int4(codes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self._head and prefix + "qweight" in state_dict:  # own codes again
            self._head = ()
            self.qweight = torch.empty_like(state_dict[prefix + "qweight"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def tied_head(self, kernel: str = "auto") -> QuantizedLinear:
        """A ``QuantizedLinear`` ``[..., embedding_dim]`` -> ``[..., num_embeddings]`` over
        this table (the tied LM head), repacked for ``kernel``."""
        head = QuantizedLinear(
            self.embedding_dim,
            self.num_embeddings,
            self.bits,
            self.group_size,
            self.asymmetric,
            False,
            "dequant",
        )
        head.qweight = self.qweight
        head.scales = self.scales
        head.mins = self.mins
        head.set_kernel(kernel)
        head.share_codes(self.qweight)
        return head

    def extra_repr(self) -> str:
        group = "row" if self.group_size is None else self.group_size
        return (
            f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, group_size={group}, "
            f"asymmetric={self.asymmetric}, padding_idx={self.padding_idx}"
        )
