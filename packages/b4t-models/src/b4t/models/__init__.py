"""b4t.models: The b4t model zoo: build_transformer_model over Hugging Face checkpoints."""

from b4t.models._version import __version__

__all__ = ["__version__"]
