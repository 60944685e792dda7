"""``build_transformer_model``: config + checkpoint + ``model=`` name -> a ready model."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.models.checkpoint import CheckpointError, read_checkpoint, resolve_checkpoint_files
from b4t.models.config import ALIASES, ModelConfig, config_from_dict, load_config, raw_config
from b4t.models.config_arguments import accepted_arguments, config_arguments
from b4t.models.gguf import find_gguf, read_gguf
from b4t.models.loading import init_weights, load_into
from b4t.models.quantize_load import load_mode, prepare_modules, quantize_model
from b4t.models.registry import VARIANTS, Variant, get_variant
from b4t.models.trainer_surface import with_trainer
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


def _resolve_model(model: str | Variant | type) -> tuple[Variant, type]:
    """``model=`` -> (variant, class): a registered name, a Variant or a Transformer subclass.

    A class uses the variant registered for the nearest class in its MRO (``bert`` for a
    direct :class:`Transformer` subclass), so its weights load with that weight map.
    """
    if isinstance(model, Variant):
        return model, model.model_cls or Transformer
    if isinstance(model, type):
        if not issubclass(model, Transformer):
            raise TypeError(
                f"model={model.__name__} must be a registered name or a subclass of "
                "b4t.models.Transformer"
            )
        for base in model.__mro__:
            for variant in VARIANTS.values():
                if variant.model_cls is base:
                    return variant, model
        return get_variant("bert"), model
    if not isinstance(model, str):
        raise TypeError(f"model= must be a name or a Transformer subclass, got {model!r}")
    variant = get_variant(model)
    return variant, variant.model_cls or Transformer


def _seed_configs(config: ModelConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """bert4torch 0.2.5's ``model.configs``: the config file's keys, the build keywords,
    and its three derived defaults."""
    configs = dict(config.raw)
    configs.update(kwargs)
    configs.setdefault("max_position", configs.get("max_position_embeddings", 512))
    configs.setdefault("dropout_rate", configs.get("hidden_dropout_prob"))
    configs.setdefault("segment_vocab_size", configs.get("type_vocab_size", 2))
    return configs


# the steps of a build are the helpers below this function
# long: build_transformer_model's public signature (its ~25 arguments, then a 45-line body)
def _build(
    config_path: str | Path | dict[str, Any] | None = None,
    checkpoint_path: str | Path | Sequence[str | Path] | None = None,
    model: str | Variant | type = "bert",
    application: str = "encoder",
    segment_vocab_size: int | None = None,
    with_pool: bool | str = False,
    with_nsp: bool = False,
    with_mlm: bool | str = False,
    return_model_config: bool = False,
    output_all_encoded_layers: bool = False,
    layer_add_embs: nn.Module | Sequence[nn.Module] | None = None,
    keep_tokens: Sequence[int] | None = None,
    compound_tokens: Sequence[Sequence[int]] | None = None,
    gradient_checkpoint: bool = False,
    ignore_invalid_weights: bool = False,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
    quantize: str | None = None,
    **kwargs: Any,
) -> Transformer | tuple[Transformer, ModelConfig]:
    """The build behind :func:`build_transformer_model` (documented there)."""
    options = dict(  # the build options model.configs records and the class takes
        segment_vocab_size=segment_vocab_size,
        with_pool=with_pool,
        with_nsp=with_nsp,
        with_mlm=with_mlm,
        output_all_encoded_layers=output_all_encoded_layers,
        layer_add_embs=layer_add_embs,
    )
    seed_kwargs = _given(
        kwargs,
        options,
        keep_tokens=keep_tokens,
        compound_tokens=compound_tokens,
        gradient_checkpoint=gradient_checkpoint,
        ignore_invalid_weights=ignore_invalid_weights,
    )
    source = _read_source(config_path, checkpoint_path, model, quantize)
    quant_mode = load_mode(quantize, source.blocks is not None)  # checked before the build
    variant, cls, config, model_kwargs = _configure(source, kwargs, keep_tokens, compound_tokens)
    application = str(application).lower()
    if application in ("lm", "unilm") and not with_mlm and _takes_mlm_for_lm(source.cls):
        options["with_mlm"] = True
    build_kwargs = dict(
        application=application,
        **options,
        gradient_checkpoint=gradient_checkpoint,
        variant=variant,
        **model_kwargs,
    )
    cls = with_trainer(cls)  # + compile/fit/predict when b4t-trainer is installed
    torch_dtype = _dtype(dtype)
    if source.files is None:
        net = cls(config, **build_kwargs)
        init_weights(net, config.initializer_range, skip=_user_modules(build_kwargs))
    else:
        with torch.device("meta"):
            net = cls(config, **build_kwargs)
        quant_mode = load_mode(quantize, source.blocks is not None, config.raw)
        prepare_modules(net, quant_mode, source.state, source.blocks, config.raw)
        # user-given modules (layer_add_embs, layer_norm_cond) are real already: kept
        net.load_report = _load(
            net,
            source,
            strict=strict and not ignore_invalid_weights,
            keep_tokens=keep_tokens,
            compound_tokens=compound_tokens,
            device=device,
            dtype=torch_dtype,
            quiet=ignore_invalid_weights,
            segment_vocab_size=segment_vocab_size,
        )
    net.to(device=device, dtype=torch_dtype)
    quantize_model(net, quant_mode)
    net.configs = _seed_configs(config, seed_kwargs)
    return (net, config) if return_model_config else net


def _given(kwargs: dict[str, Any], *named: dict[str, Any], **more: Any) -> dict[str, Any]:
    """bert4torch's build keywords as ``model.configs`` records them: ``kwargs`` and the
    named arguments that are set (not None or False)."""
    out = dict(kwargs)
    for group in (*named, more):
        out.update((k, v) for k, v in group.items() if v not in (None, False))
    return out


@dataclasses.dataclass
class _Source:
    """Where a build reads from: ``model=``, the config (path, folder or dict) and the
    checkpoint's files and tensors (None without a checkpoint)."""

    model: str | Variant | type
    variant: Variant
    cls: type
    config_path: str | Path | dict[str, Any]
    files: list[Path] | None = None
    state: dict[str, torch.Tensor] | None = None
    spans: dict[str, Any] | None = None
    blocks: Any = None  # a GGUF file's packed blocks (None: not a GGUF file)


def _read_source(
    config_path: str | Path | dict[str, Any] | None,
    checkpoint_path: str | Path | Sequence[str | Path] | None,
    model: str | Variant | type,
    quantize: str | None,
) -> _Source:
    """``model=`` resolved, the checkpoint's tensors (a llama.cpp ``.gguf`` file brings its
    config and, for the default ``model='bert'``, its architecture; its quantized matrices
    stay packed unless ``quantize`` asks for floats) and the config to read."""
    gguf_file = find_gguf(checkpoint_path)
    packed = gguf_file is not None and load_mode(quantize, True) == "gguf"
    gguf = read_gguf(gguf_file, packed=packed) if gguf_file else None
    if gguf is not None:
        model = gguf.variant if model == "bert" else model
        config_path = gguf.config if config_path is None else config_path
    variant, cls = _resolve_model(model)
    if gguf is not None:
        return _Source(model, variant, cls, config_path, [gguf.path], gguf.tensors, {}, gguf.blocks)
    files = state = spans = None
    if checkpoint_path is not None:
        files = resolve_checkpoint_files(checkpoint_path)  # a missing file fails here, early
        spans = {}
        state = read_checkpoint(files, spans=spans)
    if config_path is None:
        if checkpoint_path is None or not Path(str(checkpoint_path)).is_dir():
            raise ValueError("config_path is required unless checkpoint_path is a folder")
        config_path = checkpoint_path  # type: ignore[assignment]
    return _Source(model, variant, cls, config_path, files, state, spans)


def _configure(
    source: _Source,
    kwargs: dict[str, Any],
    keep_tokens: Sequence[int] | None,
    compound_tokens: Sequence[Sequence[int]] | None,
) -> tuple[Variant, type, ModelConfig, dict[str, Any]]:
    """The variant (resolved against the checkpoint), the class, the typed config (with
    ``kwargs``' config fields and the vocabulary ``keep_tokens`` / ``compound_tokens``
    leave) and the other keywords, for the class."""
    variant, cls = source.variant, source.cls
    overrides = {k: v for k, v in kwargs.items() if ALIASES.get(k, k) in _CONFIG_FIELDS}
    model_kwargs = {k: v for k, v in kwargs.items() if k not in overrides}
    config_path = source.config_path
    if variant.resolve is not None:
        variant = variant.resolve(source.state, raw_config(config_path))
        if not isinstance(source.model, type):
            cls = variant.model_cls or Transformer
    if isinstance(config_path, dict):
        config = config_from_dict(config_path, "<dict>", variant.preset, overrides)
    else:
        config = load_config(config_path, variant.preset, overrides)
    extra_rows = len(compound_tokens) if compound_tokens else 0
    if keep_tokens is not None:
        config.vocab_size = len(keep_tokens) + extra_rows
    elif extra_rows:
        config.vocab_size += extra_rows
    return variant, cls, config, model_kwargs


def _user_modules(build_kwargs: dict[str, Any]) -> list[nn.Module]:
    """Modules the user built (``layer_add_embs``, ``layer_norm_cond``): not initialised."""
    found: list[nn.Module] = []
    for extra in (build_kwargs.get("layer_add_embs"), build_kwargs.get("layer_norm_cond")):
        if isinstance(extra, nn.Module):
            found.append(extra)
        elif isinstance(extra, (list, tuple)):
            found.extend(extra)
    return found


def _load(net: Transformer, source: _Source, segment_vocab_size: Any, **kwargs: Any) -> Any:
    """:func:`load_into` the source's tensors; a segment table the file lacks because
    ``segment_vocab_size`` asked for one gets a hint."""
    try:
        return load_into(net, source.files, state=source.state, spans=source.spans, **kwargs)
    except CheckpointError as exc:
        if segment_vocab_size and "segment_embeddings" in str(exc):
            raise CheckpointError(
                f"{exc}\nsegment_vocab_size={segment_vocab_size} builds a segment table "
                "this checkpoint does not hold (leave segment_vocab_size out to use the "
                "config's type_vocab_size)"
            ) from exc
        raise


def _takes_mlm_for_lm(cls: type) -> bool:
    """Whether ``application='lm'/'unilm'`` adds the MLM head (0.2.5's BERT family does;
    decoder LMs with their own head, which take ``final_activation``, do not)."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return True
    return "final_activation" not in params


_BUILD_SIGNATURE = inspect.signature(_build)


def _raw_or_none(config_path: Any, checkpoint_path: Any) -> dict[str, Any] | None:
    """The config's keys, from where :func:`_build` will read them (None: none given)."""
    if config_path is None:
        if checkpoint_path is None or not Path(str(checkpoint_path)).is_dir():
            return None  # _build raises its own error (or builds from the dict)
        if find_gguf(checkpoint_path) is not None:
            return None  # a llama.cpp file: its metadata is the config (read_gguf)
        config_path = checkpoint_path
    return raw_config(config_path)


# the signature users see is _build's (inspect follows __wrapped__); the docstring is here
# long: the docstring documents the ~25 arguments; the body is 15 lines
@functools.wraps(_build, assigned=("__module__",))
def build_transformer_model(*args: Any, **kwargs: Any) -> Any:
    """Build a registered variant and load its checkpoint.

    Args:
        config_path: ``config.json``, a folder holding one, or a dict of config keys
            (default: the ``checkpoint_path`` folder's ``config.json``).
        checkpoint_path: a weights file, sharded index, folder or list of files; None
            builds randomly initialised weights. A llama.cpp ``.gguf`` file (or a folder
            holding one) brings its own config and, when ``model`` is left at its
            default, its architecture (:mod:`b4t.models.gguf`).
        model: a registered name (``b4t.models.variant_names()``, case-insensitive) or a
            subclass of :class:`Transformer` (built with its nearest registered
            variant's preset and weight map).
        application: ``'encoder'``, ``'lm'`` (causal mask) or ``'unilm'`` (seq2seq mask),
            case-insensitive. As in bert4torch 0.2.5, ``'lm'`` and ``'unilm'`` turn the
            MLM head on (``with_mlm=True`` unless a value is given).
        segment_vocab_size: segment table rows (default: the config's
            ``type_vocab_size``); 0 drops segment embeddings.
        with_pool: the pooler head (see :class:`Transformer` for outputs and the
            activation names the heads take).
        with_nsp: the next-sentence head.
        with_mlm: the masked-LM head.
        keep_tokens: keep only these vocabulary rows (embeddings and MLM bias).
        compound_tokens: append rows, each the mean of the listed (kept) ids (an entry
            with an id outside the vocabulary warns and gets the mean of every row).
        gradient_checkpoint: recompute layer activations in backward while training.
        ignore_invalid_weights: as bert4torch: load what matches, initialise the rest,
            raise on nothing (the lists are in ``model.load_report``).
        dtype: the loaded weights' dtype.
        device: where the loaded weights live.
        strict: raise on missing / unexpected / mis-shaped tensors (else warn).
        quantize: ``'gguf'`` (default for a ``.gguf`` file: its Q8_0/Q4_0/Q4_1 matrices
            stay packed), ``'int8'`` / ``'int4'`` (quantize any checkpoint at load,
            weight-only, per-group scales), ``'float'`` (default otherwise; a GGUF file
            dequantized to float32); see :mod:`b4t.models.quantize_load`.
        **kwargs: ModelConfig field overrides (``hidden_dropout_prob=0``,
            ``dropout_rate``, ``max_position``, ``embedding_size``,
            ``attention_head_size``, ``attention_key_size``, ...) and the other
            bert4torch build options (``custom_position_ids``, ``layer_norm_cond``,
            ``keep_hidden_layers``, ... see :class:`Transformer`).

    Returns the model in training mode (like any new ``nn.Module``; call ``.eval()`` for
    inference), or ``(model, config)`` with ``return_model_config``. ``model.configs``
    is bert4torch's dict (config keys + build keywords), ``model.config`` the typed one.

    As in bert4torch 0.2.5, a config key naming one of these arguments or one of the
    model class's (``with_pool``, ``shared_segment_embeddings``, ``token_pad_ids``, ...)
    is that argument, unless it is passed explicitly
    (:mod:`b4t.models.config_arguments`).
    """
    bound = _BUILD_SIGNATURE.bind(*args, **kwargs)
    arguments = dict(bound.arguments)
    extra = dict(arguments.pop("kwargs", {}))
    # bert4torch's later switch for the trainer surface, which 0.2.5-era example code passes
    # and 0.2.5 ignores: b4t's model has that surface whenever b4t-trainer is installed.
    extra.pop("add_trainer", None)
    _, cls = _resolve_model(arguments.get("model", "bert"))
    raw = _raw_or_none(arguments.get("config_path"), arguments.get("checkpoint_path"))
    accepted = accepted_arguments(cls, _build)
    for key, value in config_arguments(raw, accepted, (*arguments, *extra)).items():
        if key in _BUILD_SIGNATURE.parameters:
            arguments[key] = value
        else:
            extra[key] = value
    return _build(**arguments, **extra)
