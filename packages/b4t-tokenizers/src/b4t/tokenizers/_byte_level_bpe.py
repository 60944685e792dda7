"""``ByteLevelBPETokenizer``: GPT-2-style byte-level BPE, from GGUF metadata or ``tokenizer.json``.

Encoding: added tokens are cut out whole, the rest is (normalized and) pre-tokenized into
words, each word is spelled in the byte alphabet and merged by BPE (cached per word).
Decoding joins the tokens' bytes and reads them as UTF-8. Ids equal the Rust
``tokenizers`` library's for the same vocabulary, merges and pre-tokenizer.
"""

from __future__ import annotations

import os
import re

from b4t.tokenizers._added_tokens import AddedToken, AddedTokenSplitter
from b4t.tokenizers._bpe import CACHE_LIMIT, BPEModel
from b4t.tokenizers._bpe_sources import BPESpec, read_gguf, read_tokenizer_json
from b4t.tokenizers._byte_level import decode_tokens

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

# The name of a special token that ends a turn or a text, once its brackets are stripped:
# <|im_end|>, <|eot_id|>, <|eom_id|>, <|end_of_text|>, <end_of_turn>, <eos>, <|end|>,
# <|endoftext|>, <｜end▁of▁sentence｜>; and </s>. Not <|end_header_id|>, </think>.
_END_NAME = re.compile(
    r"(?:im_end|eot|eom|eos|end|endoftext|end_of_text|end_of_turn|end_of_sentence)(?:_id)?",
    re.IGNORECASE,
)


def is_end_token(content: str) -> bool:
    """Whether a special token's text names an end of turn or of text."""
    name = content.strip("<>|｜ ").replace("▁", "_")
    return content == "</s>" or _END_NAME.fullmatch(name) is not None


class ByteLevelBPETokenizer:
    """Byte-level BPE (GPT-2, LLaMA-3, Qwen2, SmolLM, ...) in pure Python.

    Build it with ``from_gguf(path)`` or ``from_tokenizer_json(path)``.

    Attributes:
        vocab_size: one past the largest id (model vocabulary and added tokens).
        bos_token_id, eos_token_id: the named begin/end ids, or ``None``.
        stop_token_ids: every id that ends a generation: the end ids the metadata names
            (``eos``, GGUF ``eot``/``eom``, ``generation_config.json``'s ``eos_token_id``) and
            the end-like special tokens the chat template writes (``<|im_end|>``, ...).
        chat_template: the model's Jinja chat template, or ``None``.
    """

    def __init__(self, spec: BPESpec) -> None:
        self.source = spec.source
        self._vocab = dict(spec.vocab)
        for token in spec.added:  # an added token wins a clash, as in Rust's token_to_id
            self._vocab[token.content] = token.id
        unk_id = spec.vocab.get(spec.unk_token) if spec.unk_token is not None else None
        self._model = BPEModel(
            spec.vocab,
            spec.merges,
            unk_id=unk_id,
            fuse_unk=spec.fuse_unk,
            byte_fallback=spec.byte_fallback,
            ignore_merges=spec.ignore_merges,
        )
        self.vocab_size = 1 + max([*spec.vocab.values(), *(t.id for t in spec.added)], default=-1)
        self._id_to_token: list[str | None] = [None] * self.vocab_size
        for token_id, token in enumerate(spec.id_tokens or ()):
            self._id_to_token[token_id] = token
        for token, token_id in spec.vocab.items():
            self._id_to_token[token_id] = token
        for token in spec.added:
            self._id_to_token[token.id] = token.content
        self.added_tokens: dict[int, AddedToken] = {token.id: token for token in spec.added}
        self._special_ids = frozenset(t.id for t in spec.added if t.special)
        self._raw_split = AddedTokenSplitter(t for t in spec.added if not t.normalized)
        self._normalized_split = AddedTokenSplitter(t for t in spec.added if t.normalized)
        self._has_normalized_added = self._normalized_split.pattern is not None
        self._normalizer = spec.normalizer
        self._pre = spec.pre_tokenizer.split
        self._prefix_ids = list(spec.prefix_ids)
        self._suffix_ids = list(spec.suffix_ids)
        self.special_tokens_map = dict(spec.special_tokens)
        self.bos_token_id = self.token_to_id(spec.special_tokens.get("bos_token", ""))
        self.eos_token_id = self.token_to_id(spec.special_tokens.get("eos_token", ""))
        self.chat_template = spec.chat_template
        self.stop_token_ids = frozenset(spec.end_ids | self._template_end_ids())
        self._words: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str] | Any) -> ByteLevelBPETokenizer:
        """From a GGUF file's ``tokenizer.*`` metadata (needs ``b4t-tokenizers[gguf]``).

        ``path`` may be an open ``gguf.GGUFReader`` instead, to share one parse of the file.
        """
        return cls(read_gguf(path))

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike[str]) -> ByteLevelBPETokenizer:
        """From a ``tokenizer.json`` file, or a folder with it and ``tokenizer_config.json``."""
        return cls(read_tokenizer_json(path))

    def _template_end_ids(self) -> set[int]:
        templates = self.chat_template
        if templates is None:
            return set()
        text = "\n".join(templates.values()) if isinstance(templates, dict) else templates
        return {
            token.id
            for token in self.added_tokens.values()
            if token.special and token.content in text and is_end_token(token.content)
        }

    # ------------------------------------------------------------------------ lookup

    def token_to_id(self, token: str) -> int | None:
        """The id of a token (in the vocabulary's spelling), or ``None``."""
        return self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token of an id, or ``None`` for an id the tokenizer does not have."""
        if 0 <= token_id < self.vocab_size:
            return self._id_to_token[token_id]
        return None

    def get_vocab(self) -> dict[str, int]:
        """token -> id, added tokens included."""
        return dict(self._vocab)

    # ---------------------------------------------------------------------- encoding

    def _encode_text(self, text: str, out: list[int]) -> None:
        """Append the ids of plain text (no added tokens in it) to ``out``."""
        words = self._words
        for word in self._pre(text):
            ids = words.get(word)
            if ids is None:
                ids = self._model.merge_bytes(word)
                if len(words) >= CACHE_LIMIT:
                    words.clear()
                words[word] = ids
            out += ids

    def _encode_piece(self, text: str, out: list[int]) -> None:
        """Normalize a piece between raw added tokens; find the normalized ones; encode."""
        if self._normalizer is not None:
            text = self._normalizer(text)
        if not self._has_normalized_added:
            self._encode_text(text, out)
            return
        for piece, token_id in self._normalized_split.split(text):
            if token_id is not None:
                out.append(token_id)
            elif piece:
                self._encode_text(piece, out)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` adds the BOS/EOS the model asks for."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        out: list[int] = list(self._prefix_ids) if add_special_tokens else []
        for piece, token_id in self._raw_split.split(text):
            if token_id is not None:
                out.append(token_id)
            elif piece:
                self._encode_piece(piece, out)
        if add_special_tokens:
            out += self._suffix_ids
        return out

    def encode_batch(
        self, texts: Iterable[str], add_special_tokens: bool = True
    ) -> list[list[int]]:
        """``encode`` for each text."""
        return [self.encode(text, add_special_tokens) for text in texts]

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (vocabulary spelling), without BOS/EOS."""
        return [self._id_to_token[i] for i in self.encode(text, add_special_tokens=False)]  # type: ignore[misc]

    # ---------------------------------------------------------------------- decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``: the tokens' bytes as UTF-8 (U+FFFD for a broken sequence).

        An id outside the vocabulary raises ``IndexError`` naming it.
        """
        tokens = []
        for token_id in ids:
            token_id = int(token_id)
            if skip_special_tokens and token_id in self._special_ids:
                continue
            token = self.id_to_token(token_id)
            if token is None:
                raise IndexError(
                    f"token id {token_id} is not in the vocabulary (size {self.vocab_size})"
                )
            tokens.append(token)
        return decode_tokens(tokens)

    # ------------------------------------------------------------------ chat template

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        *,
        chat_template: str | None = None,
        continue_final_message: bool | str = False,
        tools: list[dict[str, Any]] | None = None,
        documents: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render ``messages`` with the model's chat template as transformers does.

        ``chat_template`` overrides the model's (a template string, or a name when the model
        has several); ``continue_final_message`` leaves the last message open (``True``:
        its ``content``); extra keyword arguments are template variables. With
        ``tokenize=True`` the rendered text is encoded without adding BOS/EOS (the template
        writes them).
        """
        from b4t.tokenizers._chat_template import render

        template = self._pick_template(chat_template, tools)
        text = render(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tools=tools,
            documents=documents,
            variables={**self.special_tokens_map, **kwargs},
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def _pick_template(self, chat_template: str | None, tools: Any) -> str:
        own = self.chat_template
        if isinstance(own, dict):
            if chat_template is not None:
                return own.get(chat_template, chat_template)
            if tools is not None and "tool_use" in own:
                return own["tool_use"]
            if "default" in own:
                return own["default"]
            raise ValueError(
                f"{self.source}: several chat templates {sorted(own)} and none is 'default'"
            )
        if chat_template is not None:
            return chat_template
        if own is None:
            raise ValueError(f"{self.source} has no chat template; pass chat_template=")
        return own

    def __repr__(self) -> str:
        return f"ByteLevelBPETokenizer(vocab_size={self.vocab_size}, source={self.source!r})"
