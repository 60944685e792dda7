"""Reading a byte-level BPE tokenizer's description: GGUF metadata or ``tokenizer.json``.

Both readers return a ``BPESpec``: the vocabulary, merges, added tokens, pre-tokenizer,
the ids added around a text, the named special tokens and the chat template.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from b4t.tokenizers._added_tokens import AddedToken
from b4t.tokenizers._byte_level import is_spelled, spell_bytes
from b4t.tokenizers._pretokenize import (
    GGUF_IGNORE_MERGES,
    PreTokenizer,
    from_gguf_pre,
    from_json_spec,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

GGUF_EXTRA = "reading a GGUF file needs the gguf package: pip install 'b4t-tokenizers[gguf]'"
SPECIAL_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# llama.cpp token types (gguf.TokenType)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class BPESpec:
    """Everything ``ByteLevelBPETokenizer`` is built from."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    added: list[AddedToken]
    pre_tokenizer: PreTokenizer
    source: str
    normalizer: Callable[[str], str] | None = None
    unk_token: str | None = None
    fuse_unk: bool = False
    byte_fallback: bool = False
    ignore_merges: bool = False
    prefix_ids: list[int] = field(default_factory=list)
    suffix_ids: list[int] = field(default_factory=list)
    special_tokens: dict[str, str] = field(default_factory=dict)
    end_ids: set[int] = field(default_factory=set)
    chat_template: str | dict[str, str] | None = None
    id_tokens: list[str] | None = None  # every id's token, where the vocab dict loses some


# ----------------------------------------------------------------------------- GGUF


def _gguf_value(reader: Any, key: str, default: Any = None) -> Any:
    found = reader.fields.get(key)
    return default if found is None else found.contents()


def read_gguf(path: str | os.PathLike[str] | Any) -> BPESpec:
    """The tokenizer in a GGUF file's ``tokenizer.*`` metadata (``tokenizer.ggml.model == 'gpt2'``).

    ``path`` may also be an open ``gguf.GGUFReader`` (parsing the metadata takes seconds,
    so a model loader can share its reader).
    """
    reader, path = _open_gguf(path)
    kind = _gguf_value(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(
            f"{path}: tokenizer.ggml.model is {kind!r}; ByteLevelBPETokenizer reads byte-level "
            "BPE vocabularies ('gpt2')"
        )
    tokens = _gguf_value(reader, "tokenizer.ggml.tokens")
    merges_text = _gguf_value(reader, "tokenizer.ggml.merges")
    if tokens is None or merges_text is None:
        raise ValueError(f"{path}: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing")
    types = _gguf_value(reader, "tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    vocab, added, id_tokens = _gguf_vocab(tokens, types)
    pre = _gguf_value(reader, "tokenizer.ggml.pre")
    ids = _gguf_token_ids(reader, _GGUF_SPECIAL_TOKENS, len(tokens))
    turn_ends = _gguf_token_ids(reader, _GGUF_TURN_ENDS, len(tokens))
    bos, eos = ids["bos_token"], ids["eos_token"]
    add_bos = bos is not None and _gguf_value(reader, "tokenizer.ggml.add_bos_token")
    add_eos = eos is not None and _gguf_value(reader, "tokenizer.ggml.add_eos_token")
    return BPESpec(
        vocab=vocab,
        merges=[_merge_pair(text, path) for text in merges_text],
        added=added,
        pre_tokenizer=from_gguf_pre(pre),
        source=str(path),
        ignore_merges=pre in GGUF_IGNORE_MERGES,
        byte_fallback=_BYTE in types,
        prefix_ids=[bos] if add_bos else [],
        suffix_ids=[eos] if add_eos else [],
        special_tokens={name: tokens[i] for name, i in ids.items() if i is not None},
        end_ids={i for i in (eos, *turn_ends.values()) if i is not None},
        chat_template=_gguf_value(reader, "tokenizer.chat_template"),
        id_tokens=id_tokens,
    )


def _open_gguf(path: str | os.PathLike[str] | Any) -> tuple[Any, Path]:
    """``(reader, path)`` of a GGUF file path, or of an open ``gguf.GGUFReader``."""
    if hasattr(path, "fields"):
        return path, Path(getattr(path.data, "filename", None) or "<GGUFReader>")
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(GGUF_EXTRA) from exc
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    return gguf.GGUFReader(path), path


def _gguf_vocab(
    tokens: list[str], types: list[int]
) -> tuple[dict[str, int], list[AddedToken], list[str]]:
    """``(vocab, added tokens, every id's token)`` from a GGUF's tokens and token types."""
    vocab: dict[str, int] = {}
    added: list[AddedToken] = []
    id_tokens: list[str] = []
    for token_id, (token, kind) in enumerate(zip(tokens, types)):
        if kind == _CONTROL:
            added.append(AddedToken(token_id, token, special=True))
        elif kind == _USER_DEFINED:
            added.append(AddedToken(token_id, token, special=False))
        elif kind in (_NORMAL, _UNUSED) and not is_spelled(token):
            token = spell_bytes(token)  # a vocabulary written as text, not in the byte alphabet
        vocab[token] = token_id  # a repeated token: the last id wins, as in transformers
        id_tokens.append(token)
    return vocab, added, id_tokens


# BPESpec.special_tokens name -> the GGUF key of its id
_GGUF_SPECIAL_TOKENS = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}
# ids that end a turn besides eos (BPESpec.end_ids)
_GGUF_TURN_ENDS = {"eot": "eot_token_id", "eom": "eom_token_id"}


def _gguf_token_ids(reader: Any, keys: dict[str, str], n_tokens: int) -> dict[str, int | None]:
    """``{name: id}`` for each ``tokenizer.ggml.<key>`` in ``keys``; ``None`` where the
    metadata lacks it or the id is outside the vocabulary."""
    ids: dict[str, int | None] = {}
    for name, key in keys.items():
        value = _gguf_value(reader, f"tokenizer.ggml.{key}")
        ids[name] = None if value is None or not 0 <= value < n_tokens else int(value)
    return ids


def _bpe_model(data: dict[str, Any], json_path: Path) -> dict[str, Any]:
    """The ``model`` of a tokenizer.json; a ``ValueError`` unless it is a plain BPE."""
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "merges" not in model:
        raise ValueError(f"{json_path}: model type {model.get('type')!r} is not BPE")
    for option in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(option):
            raise ValueError(f"{json_path}: BPE option {option}={model[option]!r} is not supported")
    return model


def _added_token(entry: dict[str, Any]) -> AddedToken:
    """An ``added_tokens`` entry of a tokenizer.json."""
    return AddedToken(
        entry["id"],
        entry["content"],
        special=entry.get("special", False),
        normalized=entry.get("normalized", False),
        lstrip=entry.get("lstrip", False),
        rstrip=entry.get("rstrip", False),
        single_word=entry.get("single_word", False),
    )


def _end_ids(folder: Path, eos_token: str | None, all_ids: dict[str, int]) -> set[int]:
    """Ids that end generation: the eos token's, and the ``eos_token_id`` (one or a list) of
    ``generation_config.json`` and ``config.json`` in ``folder``."""
    end_ids = set()
    if eos_token is not None and eos_token in all_ids:
        end_ids.add(all_ids[eos_token])
    for extra in ("generation_config.json", "config.json"):
        if (folder / extra).is_file():
            eos_ids = json.loads((folder / extra).read_text("utf-8")).get("eos_token_id")
            end_ids.update(
                eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else []
            )
    return end_ids


def _chat_template(folder: Path, config: dict[str, Any]) -> str | dict[str, str] | None:
    """The chat template: ``chat_template.jinja`` in ``folder``, else tokenizer_config's
    ``chat_template`` (a list of named templates becomes a ``{name: template}`` dict)."""
    template: Any = config.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text("utf-8")
    if isinstance(template, list):
        template = {entry["name"]: entry["template"] for entry in template}
    return template


def _merge_pair(text: str | list[str], source: Any) -> tuple[str, str]:
    parts = text.split(" ") if isinstance(text, str) else list(text)
    if len(parts) != 2:
        raise ValueError(f"{source}: a BPE merge must be two tokens, got {text!r}")
    return parts[0], parts[1]


# ----------------------------------------------------------------------- tokenizer.json

_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD"}


def _normalizer(spec: dict[str, Any] | None, source: Path) -> Callable[[str], str] | None:
    if not spec:
        return None
    steps: list[Callable[[str], str]] = []

    def add(entry: dict[str, Any]) -> None:
        kind = entry.get("type")
        if kind == "Sequence":
            for sub in entry.get("normalizers", []):
                add(sub)
        elif kind in _NORMALIZERS:
            steps.append(lambda text, form=kind: unicodedata.normalize(form, text))
        elif kind == "Lowercase":
            steps.append(str.lower)
        else:
            raise ValueError(
                f"{source}: normalizer type {kind!r} is not supported by ByteLevelBPETokenizer "
                f"(supported: Sequence, Lowercase, {', '.join(sorted(_NORMALIZERS))})"
            )

    add(spec)
    if not steps:
        return None

    def normalize(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return normalize


def _post_ids(
    spec: dict[str, Any] | None, vocab: dict[str, int], source: Path
) -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after one text."""
    if not spec:
        return [], []
    kind = spec.get("type")
    if kind == "Sequence":
        before: list[int] = []
        after: list[int] = []
        for sub in spec.get("processors", []):
            pre, post = _post_ids(sub, vocab, source)
            before, after = pre + before, after + post
        return before, after
    if kind == "ByteLevel":
        return [], []
    if kind in ("RobertaProcessing", "BertProcessing"):
        return [spec["cls"][1]], [spec["sep"][1]]
    if kind == "TemplateProcessing":
        specials = spec.get("special_tokens", {})
        before, after, seen_text = [], [], False
        for item in spec.get("single", []):
            if "Sequence" in item:
                seen_text = True
                continue
            name = item["SpecialToken"]["id"]
            ids = specials[name]["ids"] if name in specials else [vocab[name]]
            (after if seen_text else before).extend(ids)
        return before, after
    raise ValueError(f"{source}: post_processor type {kind!r} is not supported")


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _folder_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        config = path / "tokenizer_config.json"
        return path / "tokenizer.json", config if config.is_file() else None
    config = path.with_name("tokenizer_config.json")
    return path, config if config.is_file() else None


def read_tokenizer_json(path: str | os.PathLike[str]) -> BPESpec:
    """A Hugging Face ``tokenizer.json`` (or a folder with it and ``tokenizer_config.json``)."""
    json_path, config_path = _folder_files(Path(path))
    if not json_path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {json_path}")
    data = json.loads(json_path.read_text("utf-8"))
    model = _bpe_model(data, json_path)
    vocab = dict(model["vocab"])
    merges = [_merge_pair(merge, json_path) for merge in model["merges"]]
    added = [_added_token(entry) for entry in data.get("added_tokens") or []]
    pre_tokenizer, has_byte_level = from_json_spec(data.get("pre_tokenizer"))
    decoder = json.dumps(data.get("decoder"))
    if not has_byte_level or '"ByteLevel"' not in decoder:
        raise ValueError(
            f"{json_path}: not a byte-level BPE (the pre_tokenizer and decoder must use ByteLevel)"
        )
    all_ids = {**vocab, **{token.content: token.id for token in added}}
    prefix_ids, suffix_ids = _post_ids(data.get("post_processor"), all_ids, json_path)

    config: dict[str, Any] = {}
    if config_path is not None:
        config = json.loads(config_path.read_text("utf-8"))
    special_tokens = {
        name: text for name in SPECIAL_NAMES if (text := _token_text(config.get(name))) is not None
    }
    if "add_bos_token" in config or "add_eos_token" in config:  # transformers rebuilds the template
        bos = all_ids.get(special_tokens.get("bos_token", ""))
        eos = all_ids.get(special_tokens.get("eos_token", ""))
        prefix_ids = [bos] if config.get("add_bos_token") and bos is not None else []
        suffix_ids = [eos] if config.get("add_eos_token") and eos is not None else []
    folder = json_path.parent
    end_ids = _end_ids(folder, special_tokens.get("eos_token"), all_ids)
    template = _chat_template(folder, config)
    return BPESpec(
        vocab=vocab,
        merges=merges,
        added=added,
        pre_tokenizer=pre_tokenizer,
        source=str(json_path),
        normalizer=_normalizer(data.get("normalizer"), json_path),
        unk_token=model.get("unk_token"),
        fuse_unk=model.get("fuse_unk", False),
        byte_fallback=model.get("byte_fallback", False),
        ignore_merges=model.get("ignore_merges", False),
        prefix_ids=prefix_ids,
        suffix_ids=suffix_ids,
        special_tokens=special_tokens,
        end_ids=end_ids,
        chat_template=template,
    )
