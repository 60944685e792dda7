"""The official ``openai`` client against b4t's OpenAI-compatible routes on 127.0.0.1.

Texts are checked against a greedy loop written out in conftest (argmax over the
model's logits, the whole sequence re-run each step), not against the decoder.
"""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai", reason="the openai client is in b4t-generation[test]")

PROMPTS = ["hello there", "To be, or not", "Q"]


@pytest.fixture()
def client(make_server, generation):
    serving, service = make_server(generation, max_n=4, max_tokens=40)
    api = openai.OpenAI(base_url=serving.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    api.serving, api.service = serving, service
    return api


def test_models_list_and_retrieve(client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["b4t-lm"]
    assert client.models.retrieve("b4t-lm").owned_by == "b4t"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4")
    assert "gpt-4" in info.value.body["message"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_completion_greedy_equals_written_out_reference(client, greedy_reference, prompt) -> None:
    answer = client.completions.create(model="b4t-lm", prompt=prompt, max_tokens=12, temperature=0)
    text, reason = greedy_reference(prompt, 12)
    assert answer.object == "text_completion" and answer.model == "b4t-lm"
    assert [(c.index, c.text, c.finish_reason) for c in answer.choices] == [(0, text, reason)]
    assert answer.usage.prompt_tokens == len(prompt)
    assert answer.usage.completion_tokens == (12 if reason == "length" else len(text) + 1)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_completion_stream_arrives_in_pieces_that_join_to_the_reference(
    client, greedy_reference
) -> None:
    stream = client.completions.create(
        model="b4t-lm", prompt="hello there", max_tokens=15, temperature=0, stream=True
    )
    chunks = list(stream)
    text, reason = greedy_reference("hello there", 15)
    pieces = [c.choices[0].text for c in chunks]
    assert "".join(pieces) == text
    assert sum(1 for p in pieces if p) >= 10  # token by token, not one blob at the end
    assert [c.choices[0].finish_reason for c in chunks][-1] == reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")


def test_chat_completion_plain_and_streamed(client, greedy_reference) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    expected, reason = greedy_reference("system: Be brief.\nuser: hi\nassistant:", 10)
    answer = client.chat.completions.create(
        model="b4t-lm", messages=messages, max_tokens=10, temperature=0
    )
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == (
        expected,
        reason,
    )
    stream = client.chat.completions.create(
        model="b4t-lm",
        messages=messages,
        max_completion_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-2].choices[0].finish_reason == reason


def test_n_choices_and_seed_make_sampling_reproducible(client) -> None:
    def ask(seed: int) -> list[str]:
        answer = client.completions.create(
            model="b4t-lm", prompt="abc", max_tokens=8, n=3, seed=seed, temperature=1.0
        )
        assert [c.index for c in answer.choices] == [0, 1, 2]
        return [c.text for c in answer.choices]

    first = ask(11)
    assert ask(11) == first
    assert len(set(first)) > 1  # each choice is its own draw (seed, seed + 1, ...)
    assert ask(12) != first


def test_stop_sequences_cut_the_text_streamed_or_not(client, greedy_reference) -> None:
    full, _ = greedy_reference("To be, or not", 30)
    stop = full[6:8]
    expected = full[: full.find(stop)]
    answer = client.completions.create(
        model="b4t-lm", prompt="To be, or not", max_tokens=30, temperature=0, stop=[stop, "@@"]
    )
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == (expected, "stop")
    chunks = list(
        client.completions.create(
            model="b4t-lm", prompt="To be, or not", max_tokens=30, temperature=0, stop=stop,
            stream=True,
        )
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_echo_prepends_the_prompt(client, greedy_reference) -> None:
    answer = client.completions.create(
        model="b4t-lm", prompt="Q", max_tokens=5, temperature=0, echo=True
    )
    assert answer.choices[0].text == "Q" + greedy_reference("Q", 5)[0]


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"max_tokens": 41}, "max_tokens", "[1, 40]"),
        ({"n": 5}, "n", "[1, 4]"),
        ({"temperature": -1}, "temperature", "in [0, 2]"),
        ({"temperature": 2.5}, "temperature", "in [0, 2]"),
        ({"top_p": 1.5}, "top_p", "(0, 1]"),
        ({"logprobs": 2}, "logprobs", "not supported"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "not supported"),
        ({"prompt": "x" * 90, "max_tokens": 10}, "prompt", "maximum context length is 96"),
        ({"prompt": "caf\u00e9"}, "prompt", "outside the alphabet"),
        ({"extra_body": {"temperature": "hot"}}, "temperature", "a number"),
        ({"extra_body": {"stream": "yes"}}, "stream", "a boolean"),
    ],
)
def test_bad_requests_are_openai_shaped_400s(client, kwargs, param, words) -> None:
    kwargs = {"model": "b4t-lm", "prompt": "hi", **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**kwargs)
    body = info.value.body
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert words in body["message"]
    assert client.service.active == 0


def test_chat_prompt_hook_renders_the_messages(make_server, generation, greedy_reference) -> None:
    """A model's own chat template goes in as the service's ``chat_prompt``: the model
    continues exactly the text it renders, and the prompt tokens are counted from it."""
    seen: list[list[dict[str, str]]] = []

    def template(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        turns = "".join(f"{m['role'].upper()}; {m['content']}\n" for m in messages)
        return turns + "ASSISTANT ANSWERS;"

    serving, _ = make_server(generation, max_tokens=40, chat_prompt=template)
    api = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "hi"}]
    answer = api.chat.completions.create(
        model="b4t-lm", messages=messages, max_tokens=10, temperature=0
    )
    prompt = "USER; hi\nASSISTANT ANSWERS;"
    assert seen == [messages]
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == (
        greedy_reference(prompt, 10)
    )
    assert answer.usage.prompt_tokens == len(prompt)


def test_chat_messages_are_checked(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="b4t-lm", messages=[])
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="b4t-lm", messages=[{"role": "user", "content": 5}])
    assert info.value.body["param"] == "messages[0].content"


def test_raw_errors_on_v1_paths_use_the_openai_shape(client, fetch) -> None:
    url = client.serving.url
    status, headers, raw = fetch(url + "/v1/nope")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = fetch(url + "/v1/completions", body=b"{oops")
    assert status == 400 and "does not parse" in json.loads(raw)["error"]["message"]
    status, _, raw = fetch(url + "/v1/completions", body={"prompt": "hi"})
    assert status == 400 and json.loads(raw)["error"]["param"] == "model"
    status, _, raw = fetch(url + "/v1/completions", method="GET")
    assert status == 405 and "error" in json.loads(raw)
