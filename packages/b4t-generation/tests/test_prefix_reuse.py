"""Seed-style decoders on b4t models: the search reuses each step's prefix by itself.

bert4torch users' ``predict`` feeds the whole sequence every step. With b4t-models
loaded, the decoder keeps a prefix store active around those calls, so b4t's causal
models run one new token over a KV cache: same outputs as with
``reuse_prefixes = False``, without any cache code in ``predict``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.generation import AutoRegressiveDecoder

models = pytest.importorskip("b4t.models")

GPT2 = dict(model_type="gpt2", vocab_size=61, n_positions=64, n_embd=32, n_layer=2, n_head=4)
BERT = dict(
    vocab_size=61,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)
END = 1


def build(tmp_path: Path, config: dict[str, Any], **kwargs: Any) -> Any:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    torch.manual_seed(0)
    model = models.build_transformer_model(config_path=path, **kwargs).eval()
    with torch.no_grad():  # peaked distributions, so beams differ and ends happen
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def positions_seen(model: torch.nn.Module) -> list[int]:
    """Positions the model's first attention layer sees at each call."""
    seen: list[int] = []
    layer = next(m for name, m in model.named_modules() if name.endswith("attention"))
    layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    return seen


class GptDecoder(AutoRegressiveDecoder):
    """The seed's CDial-GPT / GPT2-ML shape: probabilities of the last position."""

    model: Any

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
        token_ids = torch.cat([inputs[0], output_ids], 1)
        return self.model.predict([token_ids])[:, -1]


class UnilmDecoder(AutoRegressiveDecoder):
    """The seed's auto-title shape: UniLM over [source, output] with segment ids."""

    model: Any

    @AutoRegressiveDecoder.wraps(default_rtype="logits")
    def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
        token_ids, segment_ids = inputs
        token_ids = torch.cat([token_ids, output_ids], 1)
        segment_ids = torch.cat([segment_ids, torch.ones_like(output_ids)], 1)
        _, mlm = self.model.predict([token_ids, segment_ids])
        return mlm[:, -1]


def run_both(decoder: AutoRegressiveDecoder, search: Any) -> tuple[Any, Any, list[int]]:
    """``search(decoder)`` with and without reuse; the positions seen with it. Without
    it (0.2.5's behaviour) every call sees the whole, growing sequence."""
    seen = positions_seen(decoder.model)  # type: ignore[attr-defined]
    decoder.reuse_prefixes = False
    plain = search(decoder)
    full = list(seen)
    assert len(full) > 1 and full == sorted(full)
    assert max(full) > min(full)
    seen.clear()
    decoder.reuse_prefixes = True
    reused = search(decoder)
    return plain, reused, seen


def same(a: Any, b: Any) -> None:
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
        return
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("search", ["beam", "batch_beam", "sample", "stream_beam"])
def test_gpt_seed_decoder_reuses_prefixes(search: str, tmp_path: Path) -> None:
    decoder = GptDecoder(start_id=None, end_id=END, maxlen=8)
    decoder.model = build(tmp_path, GPT2, model="gpt2")
    prompt = [5, 9, 14, 3]
    searches = {
        "beam": lambda d: d.beam_search([prompt], topk=3),
        "batch_beam": lambda d: d.batch_beam_search(
            [torch.tensor([prompt, [7, 8, 9, 10]])], topk=2
        ),
        "sample": lambda d: d.random_sample(
            [prompt], n=3, topp=0.9, generator=torch.Generator().manual_seed(4)
        ),
        "stream_beam": lambda d: list(d.stream_beam_search([prompt], topk=2)),
    }
    plain, reused, seen = run_both(decoder, searches[search])
    same(plain, reused)
    assert seen[0] == 4 and len(seen) > 1 and set(seen[1:]) == {1}


@pytest.mark.parametrize("search", ["beam", "sample"])
def test_unilm_seed_decoder_reuses_prefixes(search: str, tmp_path: Path) -> None:
    decoder = UnilmDecoder(start_id=None, end_id=END, maxlen=6)
    decoder.model = build(tmp_path, BERT, model="bert", application="unilm", with_mlm=True)
    source = [2, 17, 23, 40, 3]
    inputs = [source, [0] * len(source)]
    if search == "beam":
        plain, reused, seen = run_both(decoder, lambda d: d.beam_search(inputs, topk=2))
    else:
        plain, reused, seen = run_both(
            decoder,
            lambda d: d.random_sample(inputs, n=2, generator=torch.Generator().manual_seed(1)),
        )
    same(plain, reused)
    assert seen[0] == 5 and set(seen[1:]) == {1}


def test_seq2seq_seed_decoder_reuses_prefixes(tmp_path: Path) -> None:
    config = dict(
        model_type="t5", vocab_size=61, d_model=32, d_kv=8, d_ff=37, num_layers=2,
        num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    )  # fmt: skip
    model = build(tmp_path, config, model="t5.1.1")

    class T5Decoder(AutoRegressiveDecoder):
        """The seed's T5-PEGASUS shape."""

        @AutoRegressiveDecoder.wraps(default_rtype="logits")
        def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
            return model.decoder.predict([output_ids, *inputs])[-1][:, -1]

    decoder = T5Decoder(start_id=0, end_id=END, maxlen=6)
    decoder.model = model.decoder  # type: ignore[attr-defined]
    with torch.no_grad():
        encoded = model.encoder.predict([torch.tensor([[5, 9, 14, 3, 22]])])
    plain, reused, seen = run_both(
        decoder, lambda d: d.beam_search(encoded, topk=2, add_btz_dim=False)
    )
    same(plain, reused)
    assert set(seen) == {1} and len(seen) > 1


def test_reuse_stays_off_for_models_that_are_not_b4t_models() -> None:
    from b4t.generation.testing import TinyCausalLM

    tiny = TinyCausalLM(vocab_size=24, hidden_size=16, num_heads=2, num_layers=1, seed=3).eval()
    calls: list[int] = []

    class Plain(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype="logits")
        def predict(self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any) -> Any:
            ids = torch.cat([inputs[0], output_ids], 1)
            calls.append(ids.shape[1])
            with torch.no_grad():
                return tiny(ids)[0][:, -1]

    Plain(start_id=None, end_id=None, maxlen=4).beam_search([[5, 6, 7]], topk=2)
    assert calls == [3, 4, 5, 6]  # every step the whole sequence, as written
