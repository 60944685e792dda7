"""``build_transformer_model``: config + checkpoint + ``model=`` name -> a ready model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.models.checkpoint import resolve_checkpoint_files
from b4t.models.config import ALIASES, ModelConfig, config_from_dict, load_config
from b4t.models.loading import init_weights, load_into
from b4t.models.registry import Variant, get_variant
from b4t.models.transformer import Transformer

__all__ = ["build_transformer_model"]

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra", "raw", "source"}
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def _dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    try:
        return _DTYPES[str(value).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {value!r}; use one of {sorted(_DTYPES)}") from None


def build_transformer_model(
    config_path: str | Path | dict[str, Any] | None = None,
    checkpoint_path: str | Path | Sequence[str | Path] | None = None,
    model: str | Variant = "bert",
    application: str = "encoder",
    segment_vocab_size: int = 2,
    with_pool: bool = False,
    with_nsp: bool = False,
    with_mlm: bool = False,
    return_model_config: bool = False,
    output_all_encoded_layers: bool = False,
    layer_add_embs: nn.Module | Sequence[nn.Module] | None = None,
    keep_tokens: Sequence[int] | None = None,
    compound_tokens: Sequence[Sequence[int]] | None = None,
    gradient_checkpoint: bool = False,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> Transformer | tuple[Transformer, ModelConfig]:
    """Build a registered variant and load its checkpoint.

    Args:
        config_path: ``config.json``, a folder holding one, or a dict of config keys
            (default: the ``checkpoint_path`` folder's ``config.json``).
        checkpoint_path: a weights file, sharded index, folder or list of files; None
            builds randomly initialised weights.
        model: a registered name (``b4t.models.variant_names()``).
        application: ``'encoder'``, ``'lm'`` (causal mask) or ``'unilm'`` (seq2seq mask).
        segment_vocab_size: segment table rows; 0 drops segment embeddings.
        with_pool / with_nsp / with_mlm: heads (see :class:`Transformer` for outputs).
        keep_tokens: keep only these vocabulary rows (embeddings and MLM bias).
        compound_tokens: append rows, each the mean of the listed (kept) ids.
        gradient_checkpoint: recompute layer activations in backward while training.
        dtype / device: where the loaded weights live.
        strict: raise on missing / unexpected / mis-shaped tensors (else warn).
        **kwargs: ModelConfig field overrides (e.g. ``hidden_dropout_prob=0``); other
            keywords go to the model class.

    Returns the model in training mode (like any new ``nn.Module``; call ``.eval()`` for
    inference), or ``(model, config)`` with ``return_model_config``.
    """
    variant = model if isinstance(model, Variant) else get_variant(model)
    files = None
    if checkpoint_path is not None:
        files = resolve_checkpoint_files(checkpoint_path)  # a missing file fails here, early
    overrides = {k: v for k, v in kwargs.items() if ALIASES.get(k, k) in _CONFIG_FIELDS}
    model_kwargs = {k: v for k, v in kwargs.items() if k not in overrides}
    if config_path is None:
        if checkpoint_path is None or not Path(str(checkpoint_path)).is_dir():
            raise ValueError("config_path is required unless checkpoint_path is a folder")
        config_path = checkpoint_path  # type: ignore[assignment]
    if isinstance(config_path, dict):
        config = config_from_dict(config_path, "<dict>", variant.preset, overrides)
    else:
        config = load_config(config_path, variant.preset, overrides)  # type: ignore[arg-type]
    extra_rows = len(compound_tokens) if compound_tokens else 0
    if keep_tokens is not None:
        config.vocab_size = len(keep_tokens) + extra_rows
    elif extra_rows:
        config.vocab_size += extra_rows
    cls = variant.model_cls or Transformer
    torch_dtype = _dtype(dtype)
    build_kwargs = dict(
        application=application,
        segment_vocab_size=segment_vocab_size,
        with_pool=with_pool,
        with_nsp=with_nsp,
        with_mlm=with_mlm,
        output_all_encoded_layers=output_all_encoded_layers,
        layer_add_embs=layer_add_embs,
        gradient_checkpoint=gradient_checkpoint,
        variant=variant,
        **model_kwargs,
    )
    if files is None:
        net = cls(config, **build_kwargs)
        user_modules = [layer_add_embs] if isinstance(layer_add_embs, nn.Module) else []
        user_modules += list(layer_add_embs or []) if not user_modules else []
        init_weights(net, config.initializer_range, skip=user_modules)
        net.to(device=device, dtype=torch_dtype)
    else:
        with torch.device("meta"):
            net = cls(config, **build_kwargs)
        # user-given layer_add_embs modules are real already: keep them as they are
        load_into(
            net,
            files,
            strict=strict,
            keep_tokens=keep_tokens,
            compound_tokens=compound_tokens,
            device=device,
            dtype=torch_dtype,
        )
        net.to(device=device, dtype=torch_dtype)
    return (net, config) if return_model_config else net
