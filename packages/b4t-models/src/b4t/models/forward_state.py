"""The typed state a model's forward stages hand each other.

:class:`~b4t.models.transformer.Transformer` runs ``parse_inputs`` -> ``apply_embeddings``
-> ``apply_main_layers`` -> ``apply_final_layers``; the stages pass one state object.
Every name it may hold is a declared field: building it with an unknown keyword, or
reading or writing a name that is not a field (a misspelling), raises an error naming
it, instead of adding a key nobody reads. A model whose stages need more names declares
a subclass of :class:`ForwardState` (a dataclass) and names it in its ``state_type``.

Item access (``state["hidden_states"]``, ``state.get("mask")``) works beside attribute
access, for stage code written against the earlier dict (b4t-adversarial's mixup reads
``hidden_states`` and ``mask`` that way); it takes declared fields only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["DecoderState", "ForwardState"]

# the field names of each state class (dataclasses.fields is slow for a per-call check)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(slots=True, eq=False)
class ForwardState:
    """Inputs and intermediate values of one forward call of a
    :class:`~b4t.models.transformer.Transformer`.

    Inputs (from ``parse_inputs``): ``token_ids [B, L]``, ``segment_ids [B, L]``,
    ``position_ids [B, L]``, ``attention_mask [B, L]`` (1 = keep), ``conditional_ids``
    (the ``layer_norm_cond`` input), ``extra_ids`` (one ``[B, L]`` tensor per
    ``layer_add_embs``), ``task_type_ids [B, L]`` (ERNIE's task embedding).
    Stage values: ``cond`` (the conditional LayerNorms' condition), ``hidden_states
    [B, L, H]``, ``mask`` (the additive attention mask, None when nothing is masked),
    ``encoded_layers`` (every layer's output with ``output_all_encoded_layers``),
    ``cache`` (the :class:`~b4t.models.kv_cache.KVCache` of a cached run).
    """

    token_ids: torch.Tensor | None = None
    segment_ids: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    conditional_ids: Any = None
    extra_ids: list[torch.Tensor] = field(default_factory=list)
    task_type_ids: torch.Tensor | None = None
    cond: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    encoded_layers: list[torch.Tensor] | None = None
    cache: Any = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names this state holds, in declaration order."""
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        return names

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or name not in self.field_names():
            raise KeyError(
                f"{type(self).__name__} has no field {name!r} (fields: "
                f"{', '.join(self.field_names())}); a model whose stages need another "
                "name declares a ForwardState subclass as its state_type"
            )

    def __getitem__(self, name: str) -> Any:
        self._check_name(name)
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._check_name(name)
        setattr(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        """``state[name]``, or ``default`` when that field is None (a declared name only)."""
        value = self[name]
        return default if value is None else value

    def copy(self) -> ForwardState:
        """A shallow copy (the same tensors, a new state)."""
        return dataclasses.replace(self, extra_ids=list(self.extra_ids))

    def given(self, names: tuple[str, ...]) -> list[str]:
        """The fields among ``names`` that hold a value (are not None)."""
        return [name for name in names if self[name] is not None]


@dataclass(slots=True, eq=False)
class DecoderState(ForwardState):
    """:class:`ForwardState` of a :class:`~b4t.models.decoder.CausalLM` call; ``protocol``
    is True in a decoder-protocol step (positions count real tokens, no pad-id mask)."""

    protocol: bool = False
