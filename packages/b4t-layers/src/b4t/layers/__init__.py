"""b4t.layers.

PyTorch layers for BERT-family models: attention, positional encodings,
norms, CRF, GlobalPointer, pooling.
"""

from b4t.layers._version import __version__

__all__ = ["__version__"]
