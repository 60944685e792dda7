"""OpenAI-compatible routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Requests and answers follow the OpenAI HTTP API closely enough for the
official ``openai`` Python client (and tools built on it) to work unchanged
with ``base_url="http://127.0.0.1:PORT/v1"`` and any ``api_key``:

- completions: ``prompt`` (a string or a list of strings), ``max_tokens``,
  ``temperature`` (0 is greedy), ``top_p``, ``n``, ``stop`` (up to 4),
  ``seed``, ``echo``, ``stream`` and ``stream_options.include_usage``;
  ``top_k`` is accepted as an extension;
- chat completions: ``messages`` (string content or text parts) turned into
  one prompt by the service's ``chat_prompt``, ``max_tokens`` /
  ``max_completion_tokens`` and the same sampling fields;
- streaming answers are server-sent events of ``*.chunk`` objects ending
  with ``data: [DONE]``.

Nothing is silently dropped: fields this server cannot honour
(``response_format``, ``tools``, ``logprobs``, ``suffix``, ``logit_bias``,
non-zero penalties, ``best_of`` other than ``n``, ...) and fields it does not
know are a 400 naming every one of them. Other checks, as OpenAI answers them:

- a ``model`` other than the served one: 404, code ``model_not_found``;
- prompt plus ``max_tokens`` over the model's context: 400, code
  ``context_length_exceeded`` (no silent truncation);
- ``temperature`` outside [0, 2], ``top_p`` outside (0, 1]: 400;
- a body that is not JSON, not UTF-8, holds a lone surrogate or nests too deep: 400.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with its
4xx/5xx status; a 5xx never carries the exception's text (it is logged). A
request whose client disconnects stops generating at the next token, whether
it streams or not.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import bottle

from b4t.generation.arguments import ClientGone, RequestError, client_disconnected
from b4t.generation.request import GenerationRequest
from b4t.generation.service import GenerationService, HeldStream
from b4t.generation.serving import INTERNAL_ERROR, WebServing
from b4t.generation.sse import SSE_HEADERS, format_event

__all__ = ["add_openai_routes", "complete_while_connected", "openai_error"]

serving_logger = logging.getLogger("b4t.generation.serving")

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


# What each endpoint reads; a field outside these is a 400 (OpenAI's own answer to
# an unrecognized argument). Penalties, best_of, logprobs, ... are read only to
# refuse values other than their neutral default.
_COMMON = {
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
    "seed", "user", "top_k", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
}  # fmt: skip
_FIELDS = {
    "text": _COMMON | {"prompt", "echo", "best_of", "suffix"},
    "chat": _COMMON | {"messages", "max_completion_tokens", "top_logprobs", "metadata", "store"},
}
# Known OpenAI fields this server cannot honour (named as unsupported, not unknown).
_UNSUPPORTED = {
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "functions",
    "function_call", "audio", "modalities", "prediction", "reasoning_effort",
    "web_search_options", "service_tier",
}  # fmt: skip


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error body for ``status``."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ---------------------------------------------------------------- typed fields


def _field(body: dict[str, Any], name: str, kind: str, default: Any = None) -> Any:
    """``body[name]`` checked against ``kind`` (``int``, ``number``, ``bool``, ``str``)."""
    value = body.get(name)
    if value is None:
        return default
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if not ok:
        raise RequestError(f"'{name}' must be {kind_name(kind)}, got {value!r}", 400, name)
    return value


def kind_name(kind: str) -> str:
    return {"int": "an integer", "number": "a number", "bool": "a boolean", "str": "a string"}[kind]


def _stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise RequestError("'stop' must be a string or a list of up to 4 strings", 400, "stop")


def _refuse_unknown(body: dict[str, Any], kind: str) -> None:
    """400 naming every field the endpoint does not read (unsupported ones first)."""
    unsupported = sorted(name for name in body if name in _UNSUPPORTED)
    unknown = sorted(name for name in body if name not in _FIELDS[kind] | _UNSUPPORTED)
    if unsupported:
        names = ", ".join(f"'{name}'" for name in unsupported)
        raise RequestError(f"not supported by this server: {names}", 400, unsupported[0])
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        raise RequestError(f"unrecognized request argument(s): {names}", 400, unknown[0])
    if kind == "chat" and body.get("store"):
        raise RequestError("'store' is not supported by this server", 400, "store")


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        if _field(body, name, "number", 0) != 0:
            raise RequestError(f"'{name}' is not supported by this server (use 0)", 400, name)
    for name in ("logprobs", "top_logprobs", "suffix", "logit_bias", "tools", "functions"):
        value = body.get(name)
        if value not in (None, False, 0, {}, [], ""):
            raise RequestError(f"'{name}' is not supported by this server", 400, name)
    best_of = _field(body, "best_of", "int")
    if best_of is not None and best_of != _field(body, "n", "int", 1):
        raise RequestError("'best_of' other than n is not supported by this server", 400, "best_of")


def _message_text(message: Any, index: int) -> dict[str, str]:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise RequestError(f"'{param}' must be an object with role and content", 400, param)
    role = message.get("role")
    if role not in _ROLES:
        raise RequestError(f"'{param}.role' must be one of {sorted(_ROLES)}, got {role!r}", 400)
    content = message.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        text = "".join(p["text"] for p in content)
    else:
        raise RequestError(
            f"'{param}.content' must be a string or a list of text parts", 400, f"{param}.content"
        )
    return {"role": role, "content": text}


# ---------------------------------------------------------------- shared parsing


class _Call:
    """A checked OpenAI request: its prompts, n, stop, options and stream flags."""

    def __init__(self, service: GenerationService, body: dict[str, Any], prompts: list[str]):
        _refuse_unsupported(body)
        self.n = _field(body, "n", "int", 1)
        if self.n < 1 or len(prompts) * self.n > service.limits.max_n:
            raise RequestError(
                f"n x prompts must be in [1, {service.limits.max_n}], got "
                f"{self.n} x {len(prompts)}",
                400,
                "n",
            )
        self.stream = _field(body, "stream", "bool", False)
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise RequestError("'stream_options' must be an object", 400, "stream_options")
        self.include_usage = bool(options.get("include_usage"))
        self.stop = _stop(body)
        self.echo = _field(body, "echo", "bool", False)
        max_tokens = _field(body, "max_completion_tokens", "int")
        if max_tokens is None:
            max_tokens = _field(body, "max_tokens", "int")
        seed = _field(body, "seed", "int")
        temperature = _field(body, "temperature", "number", 1.0)
        if not 0 <= temperature <= 2:
            raise RequestError(
                f"'temperature' must be in [0, 2], got {temperature}", 400, "temperature"
            )
        top_p = _field(body, "top_p", "number")
        top_k = _field(body, "top_k", "int")
        self.requests: list[GenerationRequest] = []
        for prompt in prompts:
            base = service.make_request(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                topk=top_k,
                topp=top_p,
                seed=seed,
                n=self.n,
            )
            for i in range(self.n):
                self.requests.append(base.choice(i))
        self.prompt_tokens = sum(
            len(r.prompt_ids or ()) for r in self.requests[:: self.n]
        )  # each prompt counted once
        self.id = uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }


def _check_model(service: GenerationService, body: dict[str, Any], kind: str) -> None:
    """The fields are all known and ``model`` names the served model (else 400/404)."""
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError("'model' must be given as a string", 400, "model")
    if model != service.model_name:
        raise RequestError(
            f"The model '{model}' does not exist (this server serves '{service.model_name}')",
            404,
            "model",
            "model_not_found",
        )
    _refuse_unknown(body, kind)


def _completion_prompts(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise RequestError("'prompt' must be a string or a non-empty list of strings", 400, "prompt")


def _chat_prompt(service: GenerationService, body: dict[str, Any]) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", 400, "messages")
    return [service.chat_prompt([_message_text(m, i) for i, m in enumerate(messages)])]


# ---------------------------------------------------------------- answers


def complete_while_connected(
    service: GenerationService,
    request: GenerationRequest,
    stop: Sequence[str] = (),
    gone: Callable[[], bool] | None = None,
) -> tuple[str, str, int]:
    """``(text, finish_reason, completion_tokens)`` of one completion (the caller holds a slot).

    ``gone`` (default: the current request's :func:`client_disconnected`) is
    asked after every token; when the client has left the decoder is closed
    and :class:`ClientGone` raised, so nobody's answer keeps the model busy.
    """
    gone = client_disconnected() if gone is None else gone
    result = service.complete(request, stop, gone)
    return result.text, result.finish_reason, result.completion_tokens


def _run_all(service: GenerationService, call: _Call) -> list[tuple[str, str, int]]:
    """``(text, finish_reason, completion_tokens)`` for every choice (slot held)."""
    gone = client_disconnected()
    return [complete_while_connected(service, r, call.stop, gone) for r in call.requests]


def _chunk(
    call: _Call,
    kind: str,
    model: str,
    choices: Sequence[dict[str, Any]],
    usage: dict[str, int] | None = None,
) -> bytes:
    obj: dict[str, Any] = {
        "id": ("chatcmpl-" if kind == "chat" else "cmpl-") + call.id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": call.created,
        "model": model,
        "choices": list(choices),
    }
    if usage is not None:
        obj["usage"] = usage
    return format_event(obj)


def _events(service: GenerationService, call: _Call, kind: str) -> Iterator[bytes]:
    """The SSE chunks of every choice in turn, then ``[DONE]``."""
    model = service.model_name
    total = 0
    try:
        for index, request in enumerate(call.requests):
            if kind == "chat":
                delta = {"role": "assistant", "content": ""}
                yield _chunk(call, kind, model, [_chat_choice(index, delta, None)])
            elif call.echo:
                yield _chunk(call, kind, model, [_text_choice(index, request.prompt, None)])
            completion = service.stream(request, call.stop)
            try:
                for text, finish in completion:
                    if kind == "chat":
                        delta = {} if finish is not None else {"content": text}
                        choice = _chat_choice(index, delta, finish)
                    else:
                        choice = _text_choice(index, text, finish)
                    yield _chunk(call, kind, model, [choice])
            finally:
                completion.close()
                total += completion.completion_tokens
        if call.include_usage:
            yield _chunk(call, kind, model, [], usage=call.usage(total))
        yield format_event("[DONE]")
    except Exception:  # the status is sent: report in the stream, as OpenAI does
        serving_logger.exception("a %s stream failed", kind)
        yield format_event(openai_error(500, INTERNAL_ERROR))


def _text_choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def _chat_choice(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def add_openai_routes(serving: WebServing, service: GenerationService, prefix: str = "/v1") -> None:
    """Add ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` to ``serving``."""
    prefix = prefix.rstrip("/")
    serving.add_error_format(prefix + "/", lambda status, message: openai_error(status, message))

    def error(exc: RequestError) -> str:
        body = openai_error(exc.status, str(exc), exc.param, exc.code)
        return serving.json_response(exc.status, body)

    def model_card() -> dict[str, Any]:
        return {"id": service.model_name, "object": "model", "created": 0, "owned_by": "b4t"}

    def models() -> str:
        return serving.json_response(200, {"object": "list", "data": [model_card()]})

    def model(name: str) -> str:
        if name != service.model_name:
            message = f"The model '{name}' does not exist"
            return error(RequestError(message, 404, "model", "model_not_found"))
        return serving.json_response(200, model_card())

    def handler(kind: str) -> Any:
        def endpoint() -> Any:
            try:
                body = serving.read_json_body()
                _check_model(service, body, kind)
                prompts = (
                    _chat_prompt(service, body) if kind == "chat" else _completion_prompts(body)
                )
                call = _Call(service, body, prompts)
                service.acquire()
            except RequestError as exc:
                return error(exc)
            if call.stream:
                for key, value in SSE_HEADERS.items():
                    bottle.response.set_header(key, value)
                return HeldStream(service, _events(service, call, kind))
            try:
                results = _run_all(service, call)
            except RequestError as exc:
                return error(exc)
            except ClientGone:  # nobody reads the answer
                return error(RequestError("the client closed the connection", 499))
            except Exception:
                serving_logger.exception("%s failed", bottle.request.path)
                return error(RequestError(INTERNAL_ERROR, 500))
            finally:
                service.release()
            return serving.json_response(200, _answer(service, call, kind, results))

        endpoint.__name__ = f"openai_{kind}"
        return endpoint

    serving.app.route(prefix + "/models", method="GET", callback=models)
    serving.app.route(prefix + "/models/<name:path>", method="GET", callback=model)
    serving.app.route(prefix + "/completions", method="POST", callback=handler("text"))
    serving.app.route(prefix + "/chat/completions", method="POST", callback=handler("chat"))


def _answer(
    service: GenerationService, call: _Call, kind: str, results: list[tuple[str, str, int]]
) -> dict[str, Any]:
    completion_tokens = sum(count for _, _, count in results)
    if kind == "chat":
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, (text, finish, _) in enumerate(results)
        ]
        obj, prefix = "chat.completion", "chatcmpl-"
    else:
        choices = [
            {
                "index": i,
                "text": (call.requests[i].prompt + text) if call.echo else text,
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, (text, finish, _) in enumerate(results)
        ]
        obj, prefix = "text_completion", "cmpl-"
    return {
        "id": prefix + call.id,
        "object": obj,
        "created": call.created,
        "model": service.model_name,
        "choices": choices,
        "usage": call.usage(completion_tokens),
    }
