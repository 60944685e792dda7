"""Prefix reuse: seed-style steps that feed the whole sequence run only the new positions.

Each case plays a decoding run by hand: every step the rows are reordered, repeated or
dropped (as beam search and sampling do) and one or two tokens appended. Inside
``reuse_prefixes()`` the outputs must equal the plain forward pass of the same inputs
within 1e-5, with the same shapes, while the layers see only the new positions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.prefix_reuse import PrefixStore, active_store, reuse_prefixes

ATOL = 1e-5
BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_act="gelu",
)
GPT2 = dict(model_type="gpt2", vocab_size=61, n_positions=64, n_embd=32, n_layer=2, n_head=4)
LLAMA = dict(
    model_type="llama",
    vocab_size=61,
    hidden_size=32,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rope_theta=500.0,
)


def build(tmp_path: Path, config: dict[str, Any], **kwargs: Any) -> Any:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    torch.manual_seed(0)
    model = build_transformer_model(config_path=path, **kwargs).eval()
    with torch.no_grad():  # random weights, larger than the init, so rounding shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def count_positions(model: torch.nn.Module) -> list[int]:
    """Positions each call of the model's first attention layer sees (a forward hook)."""
    seen: list[int] = []
    layer = next(m for name, m in model.named_modules() if name.endswith("attention"))
    layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    return seen


def compare(a: Any, b: Any, keep: torch.Tensor | None = None) -> None:
    """Equal structure, shapes and values; with ``keep`` ``[B, L]``, per-position outputs
    are compared at real tokens only (a padding query that sees no key averages every
    key, later ones included, in the full pass too: its output means nothing)."""
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            compare(x, y, keep)
        return
    assert a.shape == b.shape
    if keep is not None and a.shape[:2] == keep.shape:
        a, b = a[keep], b[keep]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# each step: (rows kept / reordered / repeated, tokens appended)
STEPS = [
    (torch.tensor([0, 1]), 1),
    (torch.tensor([1, 0]), 1),  # the same rows, swapped: the cache must follow
    (torch.tensor([1, 1, 0]), 1),  # beams: a row repeated
    (torch.tensor([2, 0]), 2),  # two new tokens at once
    (torch.tensor([1]), 1),  # a finished row dropped
]


# call(ids [rows, L], segment ids [rows, L], origin [rows]: the starting row of each row)
Call = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]


def play(model: Any, call: Call, start: torch.Tensor, vocab: int) -> list[int]:
    """Run the steps with and without reuse; return the positions the layers saw."""
    g = torch.Generator().manual_seed(7)
    ids, seg, origin = start, torch.zeros_like(start), torch.arange(start.shape[0])
    seen = count_positions(model)
    kept: list[tuple[Any, Any]] = []  # every step's outputs and a copy made at once
    with torch.no_grad(), reuse_prefixes():
        out = call(ids, seg, origin)
        compare(out, _plain(call, ids, seg, origin), ids.ne(0))
        kept.append((out, _clone(out)))
        for rows, n in STEPS:
            new = torch.randint(3, vocab, (len(rows), n), generator=g)
            ids = torch.cat([ids[rows], new], 1)
            seg = torch.cat([seg[rows], torch.ones_like(new)], 1)
            origin = origin[rows]
            out = call(ids, seg, origin)
            compare(out, _plain(call, ids, seg, origin), ids.ne(0))
            kept.append((out, _clone(out)))
    for out, copy in kept:  # later steps wrote nothing into earlier results
        compare(out, copy)
    return seen


def _clone(out: Any) -> Any:
    return [_clone(o) for o in out] if isinstance(out, list | tuple) else out.clone()


def _plain(call: Call, *args: torch.Tensor) -> Any:
    """The same call outside the store: a full forward pass."""
    assert active_store() is not None
    with PrefixStore() as empty:
        out = call(*args)
        empty.clear()  # a fresh store each time: never anything to reuse
    return out


def reused(seen: list[int], prompt: int, per_call: int = 1) -> None:
    """Full pass first (then each plain pass is full): reused steps see 1 or 2 positions.
    ``per_call``: how often the hooked layer runs in one call (ALBERT shares it)."""
    reuse_calls = seen[0 :: 2 * per_call]  # reuse call, plain call, reuse call, ...
    assert reuse_calls == [prompt] + [n for _, n in STEPS]


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("bert", dict(application="unilm", with_mlm=True, with_pool=True, with_nsp=True)),
        ("bert", dict(application="lm", output_all_encoded_layers=True)),
        ("roformer", dict(application="unilm", with_mlm=True)),
        ("roformer_v2", dict(application="unilm", with_mlm=True)),
        ("albert", dict(application="lm", with_mlm=True)),
    ],
)
def test_encoder_lm_and_unilm_reuse_their_prefix(
    model: str, kwargs: dict[str, Any], tmp_path: Path
) -> None:
    config = dict(BERT, embedding_size=16) if model == "albert" else BERT
    m = build(tmp_path, config, model=model, **kwargs)
    start = torch.randint(3, 99, (2, 5), generator=torch.Generator().manual_seed(1))
    start[1, 0] = 0  # a padding position inside the prompt: masked the same both ways
    reused(play(m, lambda i, s, _o: m([i, s]), start, 99), 5, 2 if model == "albert" else 1)


GPT = dict(model_type="openai-gpt", vocab_size=61, n_positions=64, n_embd=32, n_layer=2, n_head=4)


@pytest.mark.parametrize(
    ("model", "config", "kwargs"),
    [
        ("gpt2", GPT2, {}),
        ("llama", LLAMA, {}),
        ("gpt2_ml", BERT, {}),
        ("gpt", GPT, {"shared_segment_embeddings": True}),  # CDial-GPT: segments in the word table
    ],
)
def test_decoder_lms_reuse_their_prefix(
    model: str, config: dict[str, Any], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    m = build(tmp_path, config, model=model, **kwargs)
    vocab = config["vocab_size"]
    start = torch.randint(3, vocab, (2, 5), generator=torch.Generator().manual_seed(1))
    with_segments = model == "gpt2_ml" or kwargs
    call = (lambda i, s, _o: m([i, s])) if with_segments else (lambda i, s, _o: m([i]))
    reused(play(m, call, start, vocab), 5)


@pytest.mark.parametrize("model", ["t5.1.1", "bart"])
def test_seq2seq_decoders_reuse_their_prefix(model: str, tmp_path: Path) -> None:
    if model == "bart":
        config = dict(
            model_type="bart", vocab_size=61, d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
            decoder_ffn_dim=37, max_position_embeddings=64, pad_token_id=1,
        )  # fmt: skip
    else:
        config = dict(
            model_type="t5", vocab_size=61, d_model=32, d_kv=8, d_ff=37, num_layers=2,
            num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        )  # fmt: skip
    m = build(tmp_path, config, model=model)
    g = torch.Generator().manual_seed(2)
    source = torch.randint(3, 61, (2, 7), generator=g)
    source[1, 5:] = m.decoder.pad_token_id
    with torch.no_grad():
        memory, mask = m.encoder.predict([source])

    def call(ids: torch.Tensor, _seg: torch.Tensor, origin: torch.Tensor) -> Any:
        # the encoder output follows the rows, as a decoder's inputs do
        return m.decoder.predict([ids, memory[origin], mask[origin]])

    start = torch.full((2, 1), 2, dtype=torch.long)
    seen = play(m.decoder, call, start, 61)
    assert seen[0::2] == [1] + [n for _, n in STEPS]


def test_unilm_reuses_only_when_no_earlier_position_sees_the_new_ones(tmp_path: Path) -> None:
    """UniLM: source (segment-0) positions see every source position, so a step that
    appends a segment-0 token changes all of them: that call must run in full (it once
    returned the old outputs: max probability difference 0.63, last argmax changed)."""
    m = build(tmp_path, BERT, model="bert", application="unilm", with_mlm="softmax")
    seen = count_positions(m)
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(3, 99, (2, 4), generator=g)
    seg = torch.zeros_like(ids)
    steps = [  # (segment of the appended token per row, positions the layers must see)
        ([0, 0], 5),  # source grows: every position changes, a full pass
        ([1, 1], 1),  # the target starts: reused
        ([1, 1], 1),
        ([1, 0], 8),  # one row appends a segment-0 token: in full
        ([0, 0], 9),  # after a target token a segment-0 token is seen by it: in full
        ([1, 1], 1),
    ]
    with torch.no_grad(), reuse_prefixes():
        m([ids, seg])
        for segments, positions in steps:
            new_seg = torch.tensor(segments)[:, None]
            ids = torch.cat([ids, torch.randint(3, 99, (2, 1), generator=g)], 1)
            seg = torch.cat([seg, new_seg], 1)
            before = len(seen)
            out = m([ids, seg])
            assert seen[before] == positions
            compare(out, _plain(lambda i, s: m([i, s]), ids, seg))


def test_no_reuse_when_a_row_does_not_extend_the_last_call(tmp_path: Path) -> None:
    m = build(tmp_path, GPT2, model="gpt2")
    seen = count_positions(m)
    ids = torch.randint(3, 61, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), reuse_prefixes() as store:
        m([ids])
        changed = ids.clone()
        changed[0, 2] = (changed[0, 2] + 1) % 61  # not a prefix any more
        out = m([torch.cat([changed, ids[:, :1]], 1)])
        plain = build(tmp_path, GPT2, model="gpt2")  # same seed: same weights
        with PrefixStore():  # an empty store: nothing to reuse
            ref = plain([torch.cat([changed, ids[:, :1]], 1)])
        m([torch.cat([changed, ids[:, :1]], 1)])  # the same length again: no reuse
        assert len(store.entries) == 1
    assert seen == [6, 7, 7]
    compare(out, ref)


def test_no_reuse_in_training_mode_with_gradients_or_outside_a_store(tmp_path: Path) -> None:
    m = build(tmp_path, GPT2, model="gpt2")
    seen = count_positions(m)
    ids = torch.randint(3, 61, (1, 4))
    longer = torch.cat([ids, ids[:, :1]], 1)
    with reuse_prefixes():
        m([ids])
        m([longer])  # gradients on: full passes
    with torch.no_grad():
        m([ids])
        m([longer])  # no store: full passes
        m.train()
        with reuse_prefixes():
            m([ids])
            m([longer])  # training mode: full passes
    assert seen == [4, 5, 4, 5, 4, 5]


def test_variants_with_relative_positions_fall_back_to_full_passes(tmp_path: Path) -> None:
    m = build(tmp_path, dict(BERT, max_relative_position=8), model="nezha", application="lm")
    start = torch.randint(3, 99, (2, 5), generator=torch.Generator().manual_seed(1))
    seen = play(m, lambda i, s, _o: m([i, s]), start, 99)
    assert seen[0::2] == seen[1::2]  # every call a full pass, outputs equal (checked in play)


def test_the_store_frees_its_caches_when_the_block_ends(tmp_path: Path) -> None:
    m = build(tmp_path, GPT2, model="gpt2")
    with torch.no_grad(), reuse_prefixes() as store:
        m([torch.randint(3, 61, (1, 4))])
        assert len(store.entries) == 1
    assert store.entries == {} and active_store() is None


def test_max_steps_caps_the_cache_and_sizes_the_output_buffer_once(tmp_path: Path) -> None:
    m = build(tmp_path, GPT2, model="gpt2")
    ids = torch.randint(3, 61, (2, 6), generator=torch.Generator().manual_seed(5))
    bases = []
    with torch.no_grad(), PrefixStore(max_steps=30) as store:
        for step in range(30):  # 6 + 29 positions at the end
            out = m([ids])
            if step:
                bases.append(out._base)
            ids = torch.cat([ids, out[:, -1].argmax(-1, keepdim=True)], 1)
        (_, entry), *_ = store.entries.values()
        assert entry.cache.layers[0].capacity == 35  # no growth past the run's length
    assert bases[0].shape[1] == 35 and all(b is bases[0] for b in bases)  # one buffer


def test_reuse_is_a_declared_class_property(tmp_path: Path) -> None:
    """Each class states ``prefix_reuse``; a subclass that overrides a stage reuse runs
    without stating it does not reuse (its stages are not known to take the cache), and
    stating it turns reuse on again for the same graph."""
    from b4t.models.decoder import CausalLM
    from b4t.models.transformer import Transformer
    from b4t.models.variants.electra import Electra
    from b4t.models.variants.gpt2 import GPT2 as GPT2Model
    from b4t.models.variants.llama import LLaMA

    assert Transformer.prefix_reuse and CausalLM.prefix_reuse and LLaMA.prefix_reuse
    assert GPT2Model.prefix_reuse and "prefix_reuse" not in GPT2Model.__dict__  # inherited
    assert Electra.prefix_reuse is False and "prefix_reuse" in Electra.__dict__

    class Doubled(GPT2Model):
        def apply_main_layers(self, state):
            return super().apply_main_layers(state)

    class DoubledDeclared(Doubled):
        prefix_reuse = True

    assert Doubled.prefix_reuse is False and DoubledDeclared.prefix_reuse is True
    start = torch.randint(3, 61, (2, 4), generator=torch.Generator().manual_seed(2))
    for cls, reuses in ((Doubled, False), (DoubledDeclared, True)):
        m = build(tmp_path, GPT2, model=cls)
        assert m.prefix_graph_reusable() is reuses
        seen = play(m, lambda i, _s, _o, m=m: m([i]), start, 61)
        if reuses:
            reused(seen, 4)
        else:
            assert seen[0::2] == seen[1::2]  # every call a full pass


def test_layers_that_do_not_take_the_cache_are_a_stated_premise(tmp_path: Path) -> None:
    m = build(tmp_path, dict(BERT, max_relative_position=8), model="nezha", application="lm")
    assert type(m).prefix_reuse is True  # Nezha's stages are Transformer's ...
    assert m.layers_take_kv_cache() is False  # ... its relative-position layers are not
    assert m.prefix_graph_reusable() is False
