"""Linear layers whose float32 weight is packed once for oneDNN's CPU matmul (inference).

Decoding a batch of a few sequences multiplies every weight matrix by 5 to a few dozen
rows. On CPU, ``F.linear`` (MKL's sgemm) re-reads and repacks the weight on every call and
does not keep ahead of memory, so at 8 rows it runs at about half the speed it reaches on
a weight already in cache (``benchmarks/bench_chat.py``: AMD EPYC, AVX2, torch 2.13). oneDNN
can reorder the weight once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``)
and multiply from there (``torch.ops.mkldnn._linear_pointwise``): at 8 rows the 30 layers of
SmolLM2-135M take about 0.65x the time of ``F.linear``.

:func:`pack_linears` swaps the ``nn.Linear`` modules of a model for :class:`PackedLinear`
(same values, another memory layout, no second copy); :func:`unpack_linears` swaps them
back. A packed layer is for inference only: it has no ``weight`` parameter to train, and
refuses an input that needs a gradient. Its state dict is the plain one (``weight``,
``bias``), so saving and loading a packed model reads and writes ordinary checkpoints.

Each output is still one dot product of a weight row with an input row in float32, so it
equals ``F.linear`` up to summation order (about 1e-6 relative); a row's result does not
depend on how many other rows are in the batch. For one to four rows the few-rows path of
:mod:`b4t.layers.linear` is faster than either: pack a model that decodes several rows at
a time (a batch, beams, a serving scheduler), not one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from b4t.layers.linear import Linear

__all__ = ["PackedLinear", "pack_linears", "packing_available", "unpack_linears"]


def packing_available() -> bool:
    """Whether this torch build has oneDNN and its packed-linear operators."""
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(
        torch.backends.mkldnn.is_available()
        and ops is not None
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def _require_packing() -> None:
    if not packing_available():
        raise RuntimeError(
            f"packed linear layers need torch with oneDNN (torch.backends.mkldnn) and its "
            f"_reorder_linear_weight / _linear_pointwise operators; torch {torch.__version__} "
            "lacks them: keep the model's nn.Linear layers"
        )


def _pack(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``[out, in]`` float32 CPU weight -> the same values in oneDNN's blocked layout."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise ValueError(
            f"only float32 CPU weights can be packed, got {weight.dtype} on {weight.device}"
        )
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)


class PackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` (``[..., in] -> [..., out]``, float32, CPU) whose
    weight is held in oneDNN's blocked layout, packed for ``rows`` rows per call (a hint;
    any row count works).

    State dict: ``weight [out, in]`` and ``bias [out]`` (if any) in the plain layout, the
    keys of the ``nn.Linear`` it replaces. :meth:`to_linear` gives the plain layer back.
    With ``persistent=False`` the layer is a packed copy of a weight the model keeps
    elsewhere (a tied LM head): it adds nothing to the state dict, and
    :func:`unpack_linears` drops it instead of making it a ``Linear``.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        rows: int = 8,
        persistent: bool = True,
    ) -> None:
        super().__init__()
        _require_packing()
        if weight.dim() != 2:
            raise ValueError(f"weight must be [out, in], got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.rows = rows
        self.persistent = persistent
        self.packed = _pack(weight, rows)
        self.bias = None if bias is None else bias.detach().clone()

    @classmethod
    def from_linear(cls, layer: nn.Linear, rows: int = 8) -> PackedLinear:
        """Pack ``layer``'s weight and bias (copies; ``layer`` is left as it is)."""
        return cls(layer.weight, layer.bias, rows)

    def to_linear(self) -> Linear:
        """A b4t :class:`~b4t.layers.linear.Linear` with this layer's weight and bias."""
        layer = Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The weight ``[out, in]`` in the plain layout (a new tensor, unpacked)."""
        return self.packed.to_dense()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``input [..., in]`` float32 on CPU -> ``[..., out]``."""
        if input.shape[-1] != self.in_features:
            raise ValueError(
                f"PackedLinear expects [..., {self.in_features}], got {tuple(input.shape)}"
            )
        if torch.is_grad_enabled() and input.requires_grad:
            raise RuntimeError(
                "PackedLinear is for inference only (its weight cannot be trained); "
                "call unpack_linears(model) before training"
            )
        if input.dtype != torch.float32 or input.device.type != "cpu":
            raise ValueError(
                f"PackedLinear takes float32 CPU input, got {input.dtype} on {input.device}"
            )
        return torch.ops.mkldnn._linear_pointwise(input, self.packed, self.bias, "none", [], "")

    def _apply(self, fn: Any, recurse: bool = True) -> PackedLinear:
        """``.to()`` / ``.cuda()`` / ``.half()`` would break the packed layout: refuse them
        unless they leave the tensors as they are."""
        probe = torch.empty(0)
        moved = fn(probe)
        if moved.device != probe.device or moved.dtype != probe.dtype:
            raise RuntimeError(
                "a PackedLinear stays float32 on CPU; call unpack_linears(model) before "
                "moving or casting the model"
            )
        return self

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        if not self.persistent:
            return
        destination[prefix + "weight"] = self.weight
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        names = ["weight"] + (["bias"] if self.bias is not None else [])
        for name in names if self.persistent else ():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            expected = (self.out_features, self.in_features) if name == "weight" else (
                self.out_features,
            )  # fmt: skip
            if tuple(value.shape) != expected:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape "
                    f"{tuple(value.shape)}, the packed layer has shape {expected}"
                )
                continue
            if name == "weight":
                self.packed = _pack(value.to(torch.float32), self.rows)
            else:
                self.bias = value.detach().to(torch.float32).clone()

    def extra_repr(self) -> str:
        """``in_features``, ``out_features``, ``bias``, ``rows`` as ``nn.Linear`` shows them."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, rows={self.rows}"
        )


def _swap(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)


def pack_linears(model: nn.Module, rows: int = 8, skip: tuple[str, ...] = ()) -> list[str]:
    """Swap every float32 CPU ``nn.Linear`` of ``model`` (b4t's ``Linear`` included) for a
    :class:`PackedLinear`, in place; return the names swapped.

    ``rows`` is the expected rows per call (batch x new tokens), a layout hint. A layer
    whose name contains one of ``skip`` stays as it is. A weight that another module uses
    too (a tied LM head reading the embedding table) is not a ``nn.Linear`` here and is not
    touched. Raises ``RuntimeError`` when this torch has no oneDNN.
    """
    _require_packing()
    swapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or any(part in name for part in skip):
            continue
        weight = module.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32:
            continue
        _swap(model, name, PackedLinear.from_linear(module, rows))
        swapped.append(name)
    return swapped


def unpack_linears(model: nn.Module) -> list[str]:
    """Swap every :class:`PackedLinear` of ``model`` back for a plain b4t ``Linear`` with the
    same weight and bias, in place (a non-persistent packed copy becomes ``None``); return
    the names swapped."""
    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, PackedLinear):
            _swap(model, name, module.to_linear() if module.persistent else None)
            swapped.append(name)
    return swapped
