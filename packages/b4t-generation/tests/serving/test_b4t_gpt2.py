"""Serving b4t's own ``gpt2`` (a tiny random checkpoint built by transformers): the
OpenAI client's greedy completion equals transformers' ``generate(do_sample=False)``,
and the model's context (``n_positions``) bounds the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
openai = pytest.importorskip("openai")
models = pytest.importorskip("b4t.models", reason="b4t-models serves the gpt2 variant")

from b4t.generation import SeqGeneration  # noqa: E402

END, CONTEXT = 1, 48


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=CONTEXT, n_embd=16, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=END, pad_token_id=0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # spread the logits so greedy choices are not near-ties
        hf.lm_head.weight.mul_(4.0)
    hf.save_pretrained(path)
    ours = models.build_transformer_model(checkpoint_path=path, model="gpt2").eval()
    return hf, ours


def test_openai_client_on_b4t_gpt2_equals_transformers_generate(
    checkpoints, tokenizer, make_server
) -> None:
    hf, ours = checkpoints
    generation = SeqGeneration(ours, tokenizer, end_id=END, maxlen=24)
    serving, service = make_server(generation, model_name="tiny-gpt2")
    assert service.limits.max_context == CONTEXT  # read from the b4t model's config
    client = openai.OpenAI(base_url=serving.url + "/v1", api_key="-", max_retries=0)
    for prompt in ["hello", "To be, or"]:
        ids = torch.tensor([tokenizer.encode(prompt)])
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                eos_token_id=END, pad_token_id=0,
            )[0, ids.shape[1] :].tolist()  # fmt: skip
        expected = tokenizer.decode(out[: out.index(END)] if END in out else out)
        answer = client.completions.create(
            model="tiny-gpt2", prompt=prompt, max_tokens=16, temperature=0
        )
        assert answer.choices[0].text == expected
        streamed = client.completions.create(
            model="tiny-gpt2", prompt=prompt, max_tokens=16, temperature=0, stream=True
        )
        assert "".join(c.choices[0].text for c in streamed) == expected
    with pytest.raises(openai.BadRequestError, match="maximum context length is 48"):
        client.completions.create(model="tiny-gpt2", prompt="a" * 40, max_tokens=16)
