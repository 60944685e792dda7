"""b4t.models: The b4t model zoo: build_transformer_model over Hugging Face checkpoints."""

from b4t.models import variants as _variants  # noqa: F401  (registers the built-in variants)
from b4t.models._version import __version__
from b4t.models.build import build_transformer_model
from b4t.models.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from b4t.models.config import ConfigError, ModelConfig, load_config
from b4t.models.loading import LoadReport
from b4t.models.registry import Variant, get_variant, register_variant, variant_names
from b4t.models.transformer import Transformer
from b4t.models.weight_map import Concat

__all__ = [
    "CheckpointError",
    "Concat",
    "ConfigError",
    "LoadReport",
    "ModelConfig",
    "Transformer",
    "Variant",
    "__version__",
    "build_transformer_model",
    "get_variant",
    "load_config",
    "read_checkpoint",
    "register_variant",
    "variant_names",
    "write_checkpoint",
]
