"""b4t.generation.

Autoregressive decoding (beam search, sampling, KV cache) and the bottle-based WebServing helper.
"""

from b4t.generation._version import __version__

__all__ = ["__version__"]
