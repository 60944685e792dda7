"""b4t.tokenizers.

Pure-Python WordPiece and SentencePiece tokenizers and text preprocessing
helpers for BERT-family models (no torch).
"""

from b4t.tokenizers._version import __version__

__all__ = ["__version__"]
