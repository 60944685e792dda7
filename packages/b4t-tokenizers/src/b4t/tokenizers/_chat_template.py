"""Rendering a model's Jinja chat template the way transformers' ``apply_chat_template`` does.

The environment matches transformers': an immutable sandbox with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension and a ``{% generation %}`` tag (rendered
as its body), ``tojson`` as ``json.dumps`` (no HTML escaping, ``ensure_ascii=False``),
``raise_exception``, ``strftime_now``, and a ``dict``/``namespace`` that cannot reach
Python internals. Messages drop ``None`` values and get their reasoning under both
``reasoning_content`` and ``thinking``; the special tokens are template variables.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

CHAT_EXTRA = "chat templates need Jinja2: pip install 'b4t-tokenizers[chat]'"
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def _jinja() -> Any:
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError as exc:
        raise ImportError(CHAT_EXTRA) from exc
    return jinja2


@lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """The compiled template (cached per source string)."""
    jinja2 = _jinja()
    generation_tag, safe_namespace, dict_builder = _sandbox_types()
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[generation_tag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=dict_builder(),
        namespace=safe_namespace,
    )
    return env.from_string(source)


@lru_cache(maxsize=1)
def _sandbox_types() -> tuple[type, type, type]:
    """``(GenerationTag, SafeNamespace, DictBuilder)``: the ``{% generation %}`` extension,
    the ``namespace`` and the ``dict`` of the environment (made on first use: they subclass
    jinja2's classes, and jinja2 is imported only then)."""
    jinja2 = _jinja()

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` renders its body."""

        tags = frozenset({"generation"})

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(
                lineno
            )

        def _body(self, caller: Any) -> str:
            return caller()

    class SafeNamespace(jinja2.utils.Namespace):
        """``namespace(...)`` refusing attribute names that start with ``_``."""

        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                SafeNamespace.check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            SafeNamespace.check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot set underscore attributes on a namespace: {name!r}"
                )

    class DictBuilder:
        """``dict(...)`` and ``dict.fromkeys(...)`` only."""

        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    return GenerationTag, SafeNamespace, DictBuilder


def _raise_exception(message: str) -> None:
    raise _jinja().exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: Any = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def plain(value: Any) -> Any:
    """A copy made of JSON types only (str/int/float/bool subclasses reduced to the base)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return f"<{type(value).__name__}>"


def prepare_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the template sees them: ``None`` values dropped, reasoning aliased."""
    out = []
    for index, message in enumerate(messages):
        if not hasattr(message, "items"):
            raise TypeError(f"chat message {index} must be a dict, got {type(message).__name__}")
        message = {key: value for key, value in plain(message).items() if value is not None}
        reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _tag_final_message(messages: list[dict[str, Any]], field: str, template: str) -> str:
    """Append a marker to the last message's ``field``; return the text it had."""
    last = messages[-1]
    final = last.get(field)
    if final is None:
        raise ValueError(f"continue_final_message: the last message has no {field!r} to continue")
    fields = [field]
    if field in _REASONING_KEYS:  # reasoning is copied under several names: mark every copy
        fields = [key for key in _REASONING_KEYS if last.get(key) == final]
    if not any(name in template for name in fields):
        raise ValueError(f"continue_final_message: the chat template does not read {field!r}")
    if isinstance(final, (list, tuple)):  # content blocks: continue the last text block
        for block in reversed(final):
            if "text" in block:
                text = block["text"]
                block["text"] = text + _CONTINUE_TAG
                return text
        raise ValueError("continue_final_message: the last message has no text block")
    for name in fields:
        last[name] = last[name] + _CONTINUE_TAG
    return final


def _cut_at_tag(rendered: str, final: str) -> str:
    """The rendering up to where the final message ends (its closing tokens cut off)."""
    marker = _CONTINUE_TAG.strip()
    if final.strip() not in rendered or marker not in rendered:
        raise ValueError(
            "continue_final_message: the rendered chat does not contain the final message "
            "(the template changes or drops it)"
        )
    at = rendered.rindex(marker)
    if rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:at]
    return rendered[:at].rstrip()  # the template trimmed the message's trailing space


def render(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    tools: list[dict[str, Any]] | None = None,
    documents: list[dict[str, Any]] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> str:
    """The rendered conversation (``variables``: special tokens and extra template keywords).

    ``continue_final_message`` (``True`` for ``"content"``, or a field name) renders the
    last message open, so a model continues it instead of starting a new turn.
    """
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    if continue_final_message and add_generation_prompt:
        raise ValueError("continue_final_message and add_generation_prompt exclude each other")
    if tools is not None and any(not isinstance(tool, dict) for tool in tools):
        raise TypeError("tools must be JSON-schema dicts")
    if documents is not None and any(not isinstance(doc, dict) for doc in documents):
        raise TypeError("documents must be dicts with 'title' and 'text' keys")
    chat = prepare_messages(messages)
    final = None
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = _tag_final_message(chat, field, template)
    rendered = compile_template(template).render(
        messages=chat,
        tools=plain(tools),
        documents=plain(documents),
        add_generation_prompt=add_generation_prompt,
        **plain(dict(variables or {})),
    )
    return rendered if final is None else _cut_at_tag(rendered, final)
