"""b4t.tokenizers.

Pure-Python WordPiece, SentencePiece and byte-level BPE tokenizers, chat
templates and text preprocessing helpers for BERT-family and LLaMA-family
models (no torch).
"""

from b4t.tokenizers._base import TokenizerBase
from b4t.tokenizers._bert import Tokenizer
from b4t.tokenizers._padding import sequence_padding
from b4t.tokenizers._parallel import parallel_apply, parallel_apply_generator
from b4t.tokenizers._sentencepiece import SpTokenizer
from b4t.tokenizers._snippets import (
    DottableDict,
    delete_arguments,
    get_kw,
    insert_arguments,
    is_string,
)
from b4t.tokenizers._text import (
    convert_to_unicode,
    lowercase_and_normalize,
    merge_segmentate,
    text_augmentation,
    text_segmentate,
    truncate_sequences,
    whitespace_tokenize,
)
from b4t.tokenizers._trie import Trie
from b4t.tokenizers._version import __version__
from b4t.tokenizers._vocab import load_vocab, save_vocab
from b4t.tokenizers._wordpiece import BasicTokenizer, WordpieceTokenizer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from b4t.tokenizers._byte_level_bpe import ByteLevelBPETokenizer


def __getattr__(name: str) -> object:
    # Byte-level BPE (regex, json, dataclasses) loads on first use, keeping the import light.
    if name == "ByteLevelBPETokenizer":
        from b4t.tokenizers._byte_level_bpe import ByteLevelBPETokenizer

        return ByteLevelBPETokenizer
    raise AttributeError(f"module 'b4t.tokenizers' has no attribute {name!r}")


__all__ = [
    "BasicTokenizer",
    "ByteLevelBPETokenizer",
    "DottableDict",
    "SpTokenizer",
    "Tokenizer",
    "TokenizerBase",
    "Trie",
    "WordpieceTokenizer",
    "__version__",
    "convert_to_unicode",
    "delete_arguments",
    "get_kw",
    "insert_arguments",
    "is_string",
    "load_vocab",
    "lowercase_and_normalize",
    "merge_segmentate",
    "parallel_apply",
    "parallel_apply_generator",
    "save_vocab",
    "sequence_padding",
    "text_augmentation",
    "text_segmentate",
    "truncate_sequences",
    "whitespace_tokenize",
]
