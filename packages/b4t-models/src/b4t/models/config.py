"""The typed model config, read from a Hugging Face ``config.json``.

Known keys are normalised into :class:`ModelConfig` fields (with a few aliases such as
``n_embd`` or ``layer_norm_epsilon``); a missing required key or a value of the wrong
type raises :class:`ConfigError` naming the key and the file. Unknown keys are kept in
``ModelConfig.extra`` so a variant can read its own settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "ModelConfig", "load_config", "raw_config", "resolve_config_path"]


class ConfigError(ValueError):
    """A config file is missing, unreadable, lacks a key, or has a value of the wrong type."""


# HF / bert4torch spellings -> ModelConfig field
ALIASES: dict[str, str] = {
    "n_embd": "hidden_size",
    "d_model": "hidden_size",
    "n_layer": "num_hidden_layers",
    "num_layers": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "num_heads": "num_attention_heads",
    "n_positions": "max_position_embeddings",
    "layer_norm_epsilon": "layer_norm_eps",
    "d_ff": "intermediate_size",
    "n_inner": "intermediate_size",
    "segment_vocab_size": "type_vocab_size",
    "dropout_rate": "hidden_dropout_prob",
    # BART (encoder sizes; the decoder's are read by the variant)
    "encoder_layers": "num_hidden_layers",
    "encoder_attention_heads": "num_attention_heads",
    "encoder_ffn_dim": "intermediate_size",
    "activation_function": "hidden_act",
    "attention_dropout": "attention_probs_dropout_prob",
    "max_position": "max_position_embeddings",
}


@dataclass
class ModelConfig:
    """Sizes and architecture flags of one transformer.

    Sizes come from ``config.json``; the architecture flags normally come from the
    variant's preset (see :mod:`b4t.models.registry`), and any field can be overridden
    by a keyword argument of ``build_transformer_model``.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    embedding_size: int | None = None
    attention_head_size: int | None = None
    attention_key_size: int | None = None
    tie_word_embeddings: bool = True
    num_hidden_groups: int = 1
    inner_group_num: int = 1
    # architecture flags (presets)
    position_type: str = "learned"
    roberta_positions: bool = False
    pre_norm: bool = False
    norm_mode: str = "normal"
    is_gated: bool = False
    bias: bool = True
    share_layers: bool = False
    mlm_hidden_act: str | None = None
    # bookkeeping
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    source: str | None = None

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding tables (``embedding_size`` or ``hidden_size``)."""
        return self.embedding_size or self.hidden_size


REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
_FIELD_TYPES: dict[str, tuple[type, ...]] = {}
for _f in dataclasses.fields(ModelConfig):
    _t = str(_f.type)
    if _f.name in ("extra", "raw", "source"):
        continue
    if _t.startswith("int"):
        _FIELD_TYPES[_f.name] = (int,)
    elif _t.startswith("float"):
        _FIELD_TYPES[_f.name] = (int, float)
    elif _t.startswith("str"):
        _FIELD_TYPES[_f.name] = (str,)
    elif _t.startswith("bool"):
        _FIELD_TYPES[_f.name] = (bool,)
_OPTIONAL_NONE = {f.name for f in dataclasses.fields(ModelConfig) if "None" in str(f.type)}


def resolve_config_path(config_path: str | Path) -> Path:
    """A ``config.json`` path from a file or a checkpoint folder; ConfigError if absent."""
    path = Path(config_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return path


def _check(name: str, value: Any, source: str) -> Any:
    if value is None and name in _OPTIONAL_NONE:
        return None
    expected = _FIELD_TYPES.get(name)
    if expected is None:
        return value
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if not ok:
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(
            f"config key {name!r} in {source} must be {names}, got {value!r} "
            f"({type(value).__name__})"
        )
    if expected == (int,) and value < 0:
        raise ConfigError(f"config key {name!r} in {source} must be >= 0, got {value}")
    return float(value) if expected == (int, float) else value


def config_from_dict(
    data: dict[str, Any],
    source: str = "<dict>",
    preset: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelConfig:
    """Build a :class:`ModelConfig`: ``preset`` < the file's keys < ``overrides``."""
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra", "raw", "source"}
    values: dict[str, Any] = dict(preset or {})
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = ALIASES.get(key, key)
        if name in known:
            if name in ("intermediate_size", "pad_token_id") and value is None:  # null: keep preset
                continue
            values[name] = _check(name, value, source)
        else:
            extra[key] = value
    for key, value in (overrides or {}).items():
        name = ALIASES.get(key, key)
        if name not in known:
            raise ConfigError(f"unknown config override {key!r}")
        values[name] = _check(name, value, "the keyword arguments")
    for name in REQUIRED:
        if name not in values:
            raise ConfigError(f"config key {name!r} is missing from {source}")
    if "intermediate_size" not in values:
        values["intermediate_size"] = 4 * values["hidden_size"]
    if values["hidden_size"] <= 0 or values["num_attention_heads"] <= 0:
        raise ConfigError(f"hidden_size and num_attention_heads in {source} must be positive")
    return ModelConfig(**values, extra=extra, raw=dict(data), source=source)


def raw_config(config_path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The config's keys as written (a dict is returned as is); ConfigError if unreadable."""
    if isinstance(config_path, dict):
        return config_path
    path = resolve_config_path(config_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def load_config(
    config_path: str | Path,
    preset: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelConfig:
    """Read ``config.json`` (a file or a folder holding one) into a :class:`ModelConfig`."""
    path = resolve_config_path(config_path)
    return config_from_dict(raw_config(path), str(path), preset, overrides)
