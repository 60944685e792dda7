"""Chat templates rendered byte for byte as transformers' ``apply_chat_template``.

For SmolLM2's own template (from its GGUF) and nine fixture templates written like the
real ones (LLaMA-3, LLaMA-3.1 with tools, Qwen2, Qwen2.5 with tools, Mistral, Gemma,
ChatML, ChatML with ``{% generation %}``, ChatML with reasoning), 240 generated
conversations each: with and without system prompts, one to seven turns, tool calls,
unicode and whitespace-edged content, ``add_generation_prompt`` on and off,
``continue_final_message``. Templates that reject a conversation must raise the same
error in both.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from b4t.tokenizers import ByteLevelBPETokenizer

jinja2 = pytest.importorskip("jinja2")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

TEMPLATES = Path(__file__).parent / "chat_templates"
N_CONVERSATIONS = 240

FAMILIES: dict[str, dict[str, Any]] = {
    "llama3": {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "specials": ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"],
        "stop": ["<|eot_id|>"],
    },
    "llama3_1": {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "specials": ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"],
        "stop": ["<|eot_id|>", "<|eom_id|>"],
        "tools": True,
    },
    "qwen2": {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "specials": ["<|im_start|>"],
        "stop": ["<|im_end|>"],
    },
    "qwen2_5": {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "specials": ["<|im_start|>"],
        "stop": ["<|im_end|>"],
        "tools": True,
    },
    "mistral": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "specials": [],
        "stop": ["</s>"],
    },
    "gemma": {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "specials": ["<start_of_turn>", "<end_of_turn>"],
        "stop": ["<eos>", "<end_of_turn>"],
        "system_rate": 0.05,  # the template refuses a system prompt
    },
    "chatml": {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "specials": [],
        "stop": ["<|im_end|>"],
    },
    "chatml_generation": {
        "eos_token": "<|im_end|>",
        "specials": ["<|im_start|>"],
        "stop": ["<|im_end|>"],
    },
    "chatml_reasoning": {
        "eos_token": "<|im_end|>",
        "specials": ["<|im_start|>", "<think>", "</think>"],
        "stop": ["<|im_end|>"],
        "reasoning": True,
    },
}
NAMED = ("bos_token", "eos_token", "unk_token", "pad_token")

_TEXTS = [
    "Hello!",
    "What is the capital of France?",
    "  leading and trailing spaces  ",
    "\nnewlines\n\naround\n",
    "你好，请介绍一下你自己。",
    "日本語のテキストと 한국어 텍스트",
    "Emoji 😀👍🏽🇨🇳 and ZWJ 👨‍👩‍👧",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "code:\n```python\ndef f(x):\n    return {'a': x}\n```",
    "Template-looking text {{ not_a_var }} {% if x %} and <|im_end|> inside",
    "quotes \" and ' and backslash \\ and tab\t.",
    "Ünïcödé ñ ß — “smart quotes” … ¿qué?",
    "",
    "x" * 300,
]
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city, in °C",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "城市名"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            },
        },
    },
]


def _text(rng: random.Random) -> str:
    return rng.choice(_TEXTS) + rng.choice(["", "", " ", "\n", " 🤖"])


def _conversation(rng: random.Random, family: dict[str, Any]) -> tuple[list, dict]:
    messages: list[dict[str, Any]] = []
    if rng.random() < family.get("system_rate", 0.4):
        messages.append({"role": "system", "content": _text(rng)})
    for turn in range(rng.randint(1, 7)):
        role = "user" if turn % 2 == 0 else "assistant"
        if rng.random() < 0.03:  # an occasional out-of-order role: strict templates refuse it
            role = "assistant" if role == "user" else "user"
        message: dict[str, Any] = {"role": role, "content": _text(rng)}
        if role == "assistant" and family.get("tools") and rng.random() < 0.3:
            args = {"city": rng.choice(["Paris", "北京"])}
            message = {
                "role": "assistant",
                "content": None,  # dropped before rendering, as transformers does
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": args}}
                ],
            }
            messages.append(message)
            messages.append({"role": "tool", "content": json.dumps({"temp": rng.randint(-5, 30)})})
            continue
        if role == "assistant" and family.get("reasoning") and rng.random() < 0.5:
            key = rng.choice(["reasoning_content", "thinking", "reasoning"])
            message[key] = "\n" + _text(rng) + "\n"
        messages.append(message)
    options: dict[str, Any] = {"add_generation_prompt": rng.random() < 0.5}
    last = messages[-1]
    if last["role"] == "assistant" and last.get("content") is not None and rng.random() < 0.4:
        options = {"continue_final_message": True}  # the last message left open
    if family.get("tools") and rng.random() < 0.5:
        options["tools"] = _TOOLS
    if family.get("reasoning") and rng.random() < 0.5:
        options["enable_thinking"] = rng.random() < 0.5
    if rng.random() < 0.2:
        options["date_string"] = "07 Dec 2026"
    return messages, options


def _render(render: Any, messages: list, options: dict) -> str | tuple[str, str]:
    try:
        return render(messages, **options)
    except jinja2.TemplateError as exc:
        return ("TemplateError", str(exc))
    except ValueError:  # continue_final_message refused (the wording is each library's own)
        return ("ValueError", "")


@pytest.fixture(scope="session")
def tiny_rust() -> Any:
    """A small byte-level BPE: the vocabulary under the templates' special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rust = Tokenizer(models.BPE())
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rust.train_from_iterator(_TEXTS * 3 + [json.dumps(_TOOLS)], trainer)
    return rust


def _family_folder(tmp_path: Path, tiny_rust: Any, name: str) -> Path:
    from tokenizers import AddedToken, Tokenizer

    family = FAMILIES[name]
    rust = Tokenizer.from_str(tiny_rust.to_str())
    named = [family[key] for key in NAMED if key in family]
    rust.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in named + family["specials"]]
    )
    folder = tmp_path / name
    folder.mkdir()
    rust.save(str(folder / "tokenizer.json"))
    config = {key: family[key] for key in NAMED if key in family}
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = (TEMPLATES / f"{name}.jinja").read_text("utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    return folder


@pytest.mark.parametrize("name", list(FAMILIES))
def test_fixture_templates_render_like_transformers(
    name: str, tmp_path: Path, tiny_rust: Any
) -> None:
    folder = _family_folder(tmp_path, tiny_rust, name)
    ours = ByteLevelBPETokenizer.from_tokenizer_json(folder)
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert ours.chat_template == reference.chat_template
    assert ours.special_tokens_map == reference.special_tokens_map

    rng = random.Random(f"chat-{name}")
    rendered = errors = continued = 0
    for index in range(N_CONVERSATIONS):
        messages, options = _conversation(rng, FAMILIES[name])
        expected = _render(
            lambda m, **o: reference.apply_chat_template(m, tokenize=False, **o), messages, options
        )
        got = _render(ours.apply_chat_template, messages, options)
        assert got == expected, (index, messages, options)
        if isinstance(expected, str):
            rendered += 1
            if index % 8 == 0:  # tokenized: the same ids as transformers' (template, then encode)
                ids = reference.apply_chat_template(
                    messages, tokenize=True, return_dict=False, **options
                )
                assert ours.apply_chat_template(messages, tokenize=True, **options) == ids
            continued += "continue_final_message" in options
        else:
            errors += 1
    assert rendered >= 200 and continued >= 20, (rendered, continued, errors)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_stop_ids_are_the_end_tokens(name: str, tmp_path: Path, tiny_rust: Any) -> None:
    ours = ByteLevelBPETokenizer.from_tokenizer_json(_family_folder(tmp_path, tiny_rust, name))
    expected = {ours.token_to_id(token) for token in FAMILIES[name]["stop"]}
    assert ours.stop_token_ids == frozenset(expected)
    assert ours.eos_token_id in ours.stop_token_ids


def test_smollm2_template_renders_like_transformers(
    smollm2: Any, smollm2_reader: Any, tiny_rust: Any
) -> None:
    tokens = smollm2_reader.fields["tokenizer.ggml.tokens"].contents()
    keys = {
        "bos_token": "bos_token_id",
        "eos_token": "eos_token_id",
        "unk_token": "unknown_token_id",
        "pad_token": "padding_token_id",
    }
    named = {
        name: tokens[smollm2_reader.fields[f"tokenizer.ggml.{key}"].contents()]
        for name, key in keys.items()
    }
    assert smollm2.special_tokens_map == named
    reference = transformers.PreTrainedTokenizerFast(tokenizer_object=tiny_rust, **named)
    template = smollm2.chat_template
    assert "<|im_start|>" in template
    rng = random.Random("chat-smollm2")
    for index in range(N_CONVERSATIONS):
        messages, options = _conversation(rng, {})
        expected = reference.apply_chat_template(
            messages, tokenize=False, chat_template=template, **options
        )
        assert smollm2.apply_chat_template(messages, **options) == expected, (index, messages)


def test_smollm2_chat_ids_and_stop(smollm2: Any, smollm2_rust: Any) -> None:
    messages = [{"role": "user", "content": "Write 3 haiku about 春天 🌸"}]
    text = smollm2.apply_chat_template(messages, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    ids = smollm2.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ids == smollm2_rust.encode(text, add_special_tokens=False).ids
    assert ids.count(smollm2.token_to_id("<|im_end|>")) == 2
    assert smollm2.token_to_id("<|im_end|>") in smollm2.stop_token_ids


def test_template_errors_are_clear(smollm2: Any) -> None:
    with pytest.raises(ValueError, match="empty conversation"):
        smollm2.apply_chat_template([])
    with pytest.raises(TypeError, match="chat message 0"):
        smollm2.apply_chat_template(["hi"])
    raising = "{{ raise_exception('no system please') }}"
    with pytest.raises(jinja2.TemplateError, match="no system please"):
        smollm2.apply_chat_template([{"role": "user", "content": "x"}], chat_template=raising)
    user = [{"role": "user", "content": "x"}]
    for sneaky in ("{{ ''.__class__.__mro__ }}", "{% set ns = namespace(_x=1) %}"):
        with pytest.raises(jinja2.exceptions.SecurityError):
            smollm2.apply_chat_template(user, chat_template=sneaky)
    with pytest.raises(jinja2.exceptions.SecurityError):  # the sandbox is immutable
        smollm2.apply_chat_template(user, chat_template="{{ messages.append(1) }}")
