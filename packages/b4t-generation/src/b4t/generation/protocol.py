"""The b4t decoder protocol and the duck-typed tokenizer protocol.

A **decoder model** is any callable

.. code-block:: python

    logits, past_key_values = model(input_ids, past_key_values=None, attention_mask=None)

- ``input_ids``: ``(batch, new)`` long; when ``past_key_values`` is given,
  only the tokens not yet in the cache;
- ``past_key_values``: ``None`` or the cache the previous call returned; it
  must be batch-first so rows can be selected (tensors, or tuples/lists/dicts
  of tensors with dim 0 = batch, or an object with ``index_select(indices)``;
  see :func:`b4t.generation.select_states`);
- ``attention_mask``: ``(batch, past + new)``, 1 for real tokens and 0 for
  left padding; the model derives positions from it (``cumsum - 1``);
- returns ``logits`` ``(batch, new, vocab)`` and the cache extended by the
  new tokens. A return value with ``.logits`` and ``.past_key_values``
  attributes (a Hugging Face ``ModelOutput``) is accepted too.
- optionally ``logits_to_keep``: a model that declares
  ``accepts_logits_to_keep = True`` (or has the keyword in ``forward``, or a
  ``decode_step``) is asked for the last position's logits only.

A model with a ``decode_step`` method (b4t's decoder models: the decoder-protocol call
beside their seed-style ``forward``) is called through it with the same arguments,
``model.decode_step(input_ids, past_key_values=..., attention_mask=...)``; any other
model (a user's, a transformers one) is called as above. :func:`decoder_step` is that
one call, and every decoding loop of this package goes through it.

b4t's own decoders (``build_transformer_model(..., model='gpt2' | 'llama' |
...)``) follow this protocol with ``b4t.models``' ``KVCache`` (it has
``index_select(indices)`` for beams and finished rows); the T5 / BART models
follow the seq2seq protocol below. b4t-generation does not import b4t-models.

A **seq2seq model** has two methods; the encoder runs once per call to
``generate``:

.. code-block:: python

    memory = model.encode(input_ids, attention_mask)            # (batch, src, hidden)
    logits, past = model.decode(input_ids, memory, attention_mask, past_key_values=None)

A **tokenizer** needs ``encode(text)`` and ``decode(ids)``. ``encode`` may
return a list of ids, a ``(token_ids, segment_ids)`` pair (b4t and
bert4torch), an object with ``.ids`` (``tokenizers.Encoding``) or a mapping
with ``"input_ids"`` (Hugging Face).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "DecoderModel",
    "Seq2SeqModel",
    "TextDeltas",
    "TokenizerLike",
    "decoder_step",
    "encode_text",
    "split_model_output",
    "takes_logits_to_keep",
]


@runtime_checkable
class DecoderModel(Protocol):
    """A decoder-only model: new ids + past key/values -> logits + new cache."""

    def __call__(
        self,
        input_ids: torch.Tensor,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
    ) -> Any: ...


@runtime_checkable
class Seq2SeqModel(Protocol):
    """An encoder-decoder model whose encoder runs once per generation."""

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(batch, src)`` ids and mask -> ``(batch, src, hidden)`` encoder states."""
        ...

    def decode(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
    ) -> Any:
        """``(batch, new)`` decoder ids -> ``(logits (batch, new, vocab), cache)``."""
        ...


@runtime_checkable
class TokenizerLike(Protocol):
    """Anything with ``encode(text)`` and ``decode(ids)``."""

    def encode(self, text: str) -> Any:
        """The ids of ``text`` (a list, a pair, an object with ``.ids`` or a mapping)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``."""
        ...


def _is_id_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def encode_text(tokenizer: Any, text: Any) -> list[int]:
    """Turn ``text`` (a string, or already a list of ids) into a list of ids.

    Raises:
        ValueError: ``text`` is a string and there is no tokenizer, or the
            tokenizer's ``encode`` returns something that is not ids.
    """
    if isinstance(text, torch.Tensor):
        return [int(v) for v in text.flatten().tolist()]
    if _is_id_list(text):
        return list(text)
    if not isinstance(text, str):
        raise TypeError(f"expected a string or a list of token ids, got {type(text).__name__}")
    if tokenizer is None or not hasattr(tokenizer, "encode"):
        raise ValueError("a tokenizer with encode(text) is needed to generate from a string")
    encoded = tokenizer.encode(text)
    if hasattr(encoded, "ids"):
        encoded = encoded.ids
    elif isinstance(encoded, Mapping) and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    elif isinstance(encoded, tuple) and encoded and not _is_id_list(encoded):
        encoded = encoded[0]  # (token_ids, segment_ids)
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if not _is_id_list(encoded):
        raise ValueError(
            f"{type(tokenizer).__name__}.encode returned {type(encoded).__name__}, not token ids"
        )
    return list(encoded)


def split_model_output(output: Any) -> tuple[torch.Tensor, Any]:
    """``(logits, cache)`` from a protocol model's return value."""
    if hasattr(output, "logits"):
        return output.logits, getattr(output, "past_key_values", None)
    if isinstance(output, tuple | list) and len(output) == 2:
        return output[0], output[1]
    raise TypeError(
        "a decoder model must return (logits, past_key_values) or an object with .logits, "
        f"got {type(output).__name__}"
    )


def takes_logits_to_keep(model: Any) -> bool:
    """Whether ``model`` computes the LM head for the last ``logits_to_keep`` positions
    only (b4t's decoder LMs and transformers' LMs do)."""
    if getattr(model, "accepts_logits_to_keep", False) or callable(
        getattr(model, "decode_step", None)
    ):
        return True
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def decoder_step(
    model: Any,
    input_ids: torch.Tensor,
    past_key_values: Any = None,
    attention_mask: torch.Tensor | None = None,
    logits_to_keep: int = 0,
) -> tuple[torch.Tensor, Any]:
    """One decoder-protocol call: ``(logits (batch, new | logits_to_keep, vocab), cache)``.

    ``model.decode_step(...)`` when the model has one (b4t's decoder models), else
    ``model(input_ids, past_key_values=..., attention_mask=...)``. ``logits_to_keep``
    (``0``: every position) is passed only when it is not 0.

    Args:
        input_ids: ``(batch, new)`` the tokens not yet in ``past_key_values``.
        past_key_values: ``None`` (a first read) or the cache a previous call returned.
        attention_mask: ``(batch, past + new)``, 1 for real tokens, 0 for left padding.
        logits_to_keep: compute the logits of the last ``logits_to_keep`` positions only.
    """
    extra = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
    step = getattr(model, "decode_step", None)
    call = step if callable(step) else model
    output = call(
        input_ids, past_key_values=past_key_values, attention_mask=attention_mask, **extra
    )
    return split_model_output(output)


class TextDeltas:
    """The text each new token adds to a growing decoded output.

    Call it with the whole text decoded so far after every token; it returns what is
    new since the last call. An incomplete multi-byte character (decoded as U+FFFD)
    adds nothing until the next token completes it, and a text that no longer starts
    with what was sent (a tokenizer that rewrites earlier text) adds nothing.
    """

    def __init__(self) -> None:
        self.sent = ""

    def __call__(self, text: str) -> str:
        delta = text[len(self.sent) :] if text.startswith(self.sent) else ""
        if delta.endswith("\ufffd"):
            delta = ""  # half a character: wait for the rest
        self.sent += delta
        return delta
