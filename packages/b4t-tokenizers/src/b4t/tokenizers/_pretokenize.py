"""Pre-tokenizers of byte-level BPE: split text into the words BPE merges within.

A pre-tokenizer is a sequence of steps, each mapping every piece to sub-pieces, as the
Rust ``tokenizers`` ``Sequence`` does: ``Split`` (a regex or a literal, with its delimiter
behaviour), ``Digits`` and ``ByteLevel`` (optional prefix space, then the GPT-2 regex).
Pieces stay plain text; spelling them in the byte alphabet is the tokenizer's (cached) step.

The patterns use ``\\p{L}``-style classes, so they are compiled with the ``regex`` package.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: GPT-2's split, also the Rust ``ByteLevel`` pre-tokenizer's (``use_regex=True``).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
#: LLaMA-3's split (also Falcon-3, SmolLM3, ...): digits in threes, case-free contractions.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: Qwen2's split: LLaMA-3's with single digits.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BEHAVIOURS = ("isolated", "removed", "merged_with_previous", "merged_with_next", "contiguous")


def _regex() -> Any:
    try:
        import regex
    except ImportError as exc:  # a declared dependency; only a broken install lands here
        raise ImportError("byte-level BPE needs the regex package: pip install regex") from exc
    return regex


def _segments(pattern: Any, text: str, invert: bool) -> list[tuple[str, bool]]:
    """``text`` cut into ``(segment, is_delimiter)`` pairs, gaps included, empty matches skipped."""
    out: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        if start == end:
            continue
        if start > last:
            out.append((text[last:start], invert))
        out.append((text[start:end], not invert))
        last = end
    if last < len(text):
        out.append((text[last:], invert))
    return out


def _apply_behaviour(segments: list[tuple[str, bool]], behaviour: str) -> list[str]:
    if behaviour == "isolated":
        return [text for text, _ in segments]
    if behaviour == "removed":
        return [text for text, is_match in segments if not is_match]
    out: list[str] = []
    if behaviour == "merged_with_previous":
        previous_match = False
        for text, is_match in segments:
            if is_match and not previous_match and out:
                out[-1] += text
            else:
                out.append(text)
            previous_match = is_match
        return out
    if behaviour == "merged_with_next":
        next_match = False
        for text, is_match in reversed(segments):
            if is_match and not next_match and out:
                out[-1] = text + out[-1]
            else:
                out.append(text)
            next_match = is_match
        return out[::-1]
    previous_match = False  # contiguous: neighbours of the same kind become one piece
    for text, is_match in segments:
        if is_match == previous_match and out:
            out[-1] += text
        else:
            out.append(text)
        previous_match = is_match
    return out


def split_step(
    pattern: str, behaviour: str = "isolated", invert: bool = False, *, literal: bool = False
):
    """A step splitting on ``pattern`` (a regex, or a literal string with ``literal=True``)."""
    regex = _regex()
    behaviour = behaviour.lower().replace("mergedwith", "merged_with_")
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown Split behavior {behaviour!r}; expected one of {BEHAVIOURS}")
    compiled = regex.compile(regex.escape(pattern) if literal else pattern)
    if behaviour == "isolated" and not invert:
        findall = compiled.findall
        # The same pattern as one capturing group: re.split keeps gaps and matches in C.
        grouped = regex.compile(f"({compiled.pattern})") if compiled.groups == 0 else None

        def isolated(text: str) -> list[str]:
            pieces = findall(text)
            # Patterns like GPT-2's match every char; only then is findall the whole split.
            if sum(map(len, pieces)) == len(text) and "" not in pieces:
                return pieces
            if grouped is not None:
                parts = grouped.split(text)
                if "" not in parts[1::2]:  # no empty match (those the Rust split skips)
                    return [part for part in parts if part]
            return [piece for piece, _ in _segments(compiled, text, False)]

        return isolated

    def split(text: str) -> list[str]:
        return _apply_behaviour(_segments(compiled, text, invert), behaviour)

    return split


def digits_step(individual_digits: bool):
    """Rust ``Digits``: numeric chars isolated one by one, or in runs."""
    if individual_digits:
        return split_step(r"\p{N}")
    return split_step(r"\p{N}+")


def byte_level_step(add_prefix_space: bool = False, use_regex: bool = True):
    """Rust ``ByteLevel``: an optional leading space per piece, then GPT-2's split."""
    regex_split = split_step(GPT2_PATTERN) if use_regex else None

    def byte_level(text: str) -> list[str]:
        if add_prefix_space and not text.startswith(" "):
            text = " " + text
        return regex_split(text) if regex_split is not None else [text]

    return byte_level


class PreTokenizer:
    """Steps applied in order, each to every piece the previous one made."""

    def __init__(self, steps: list) -> None:
        self.steps = list(steps)

        if len(self.steps) == 1:
            self.split = self.steps[0]  # type: ignore[method-assign]

    def split(self, text: str) -> list[str]:
        """The words of ``text`` (plain text, not yet in the byte alphabet)."""
        pieces = [text]
        for step in self.steps:
            if len(pieces) == 1:
                pieces = step(pieces[0])
            else:
                pieces = [word for piece in pieces for word in step(piece)]
        return pieces


def from_json_spec(spec: Mapping[str, Any] | None) -> tuple[PreTokenizer, bool]:
    """A pre-tokenizer from a ``tokenizer.json`` ``pre_tokenizer`` entry.

    Returns it and whether it has a ``ByteLevel`` step (a byte-level BPE must).
    """
    steps: list = []
    has_byte_level = False

    def add(entry: Mapping[str, Any]) -> None:
        nonlocal has_byte_level
        kind = entry.get("type")
        if kind == "Sequence":
            for sub in entry.get("pretokenizers", []):
                add(sub)
        elif kind == "ByteLevel":
            has_byte_level = True
            steps.append(
                byte_level_step(entry.get("add_prefix_space", True), entry.get("use_regex", True))
            )
        elif kind == "Split":
            pattern = entry["pattern"]
            if "Regex" in pattern:
                text, literal = pattern["Regex"], False
            else:
                text, literal = pattern["String"], True
            steps.append(
                split_step(
                    text,
                    entry.get("behavior", "Isolated"),
                    entry.get("invert", False),
                    literal=literal,
                )
            )
        elif kind == "Digits":
            steps.append(digits_step(entry.get("individual_digits", False)))
        else:
            raise ValueError(
                f"pre_tokenizer type {kind!r} is not supported by ByteLevelBPETokenizer "
                "(supported: Sequence, ByteLevel, Split, Digits)"
            )

    if spec:
        add(spec)
    if not steps:
        steps.append(lambda text: [text])
    return PreTokenizer(steps), has_byte_level


#: llama.cpp's ``tokenizer.ggml.pre`` names -> the regex splits they apply, in order.
GGUF_PRE_SPLITS: dict[str, tuple[str, ...]] = {
    "default": (GPT2_PATTERN,),
    "gpt-2": (GPT2_PATTERN,),
    "gpt2": (GPT2_PATTERN,),
    "phi-2": (GPT2_PATTERN,),
    "jais": (GPT2_PATTERN,),
    "llama3": (LLAMA3_PATTERN,),
    "llama-v3": (LLAMA3_PATTERN,),
    "llama-bpe": (LLAMA3_PATTERN,),
    "falcon3": (LLAMA3_PATTERN,),
    "smaug-bpe": (LLAMA3_PATTERN,),
    "dbrx": (LLAMA3_PATTERN,),
    "qwen2": (QWEN2_PATTERN,),
    "deepseek-r1-qwen": (QWEN2_PATTERN,),
    "smollm": (r"\p{N}", GPT2_PATTERN),
    "starcoder": (r"\p{N}", GPT2_PATTERN),
    "refact": (r"\p{N}", GPT2_PATTERN),
    "codeshell": (r"\p{N}", GPT2_PATTERN),
    "command-r": (r"\p{N}", GPT2_PATTERN),
}


#: ``tokenizer.ggml.pre`` names whose vocabularies take a whole-word token before merging
#: (llama.cpp's LLaMA-3 type; ``ignore_merges`` in the models' tokenizer.json).
GGUF_IGNORE_MERGES = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3"})


def from_gguf_pre(name: str | None) -> PreTokenizer:
    """The pre-tokenizer llama.cpp applies for a ``tokenizer.ggml.pre`` name."""
    key = name or "default"
    if key not in GGUF_PRE_SPLITS:
        raise ValueError(
            f"GGUF tokenizer.ggml.pre {name!r} is not known to ByteLevelBPETokenizer; "
            f"known: {sorted(GGUF_PRE_SPLITS)}"
        )
    return PreTokenizer([split_step(pattern) for pattern in GGUF_PRE_SPLITS[key]])
