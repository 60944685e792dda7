"""model='xlnet' against transformers' XLNetLMHeadModel (tiny random, save_pretrained).

b4t's ``with_lm=True`` call returns ``[hidden, logits]``; ``logits`` is transformers'
``.logits`` (raw scores), ``hidden`` its ``XLNetModel`` ``last_hidden_state``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.models import CheckpointError, build_transformer_model

transformers = pytest.importorskip("transformers")

PAD = 5
ATOL = 1e-5


def make_hf(tmp_path: Path, **overrides: Any) -> tuple[Any, Path]:
    cfg = dict(vocab_size=40, d_model=32, n_layer=2, n_head=4, d_inner=48, dropout=0.0)
    cfg.update(overrides)
    torch.manual_seed(0)
    model = transformers.XLNetLMHeadModel(transformers.XLNetConfig(**cfg)).eval()
    with torch.no_grad():  # the zero-initialised biases too, so every term is exercised
        for p in model.parameters():
            p.normal_(0, 0.3)
    out = tmp_path / "xlnet-hf"
    model.save_pretrained(out)
    return model, out


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[3, 8] ids (rows 1 and 2 right-padded with 5, row 2 also holds id 0), segments,
    and transformers' attention_mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(6, 40, (3, 8), generator=g)
    ids[1, 6:] = PAD
    ids[2, 3:] = PAD
    ids[2, 1] = 0
    seg = torch.zeros_like(ids)
    seg[:, 4:] = 1
    return ids, seg, ids.ne(PAD).long()


@pytest.mark.parametrize("segments", [True, False])
def test_logits_equal_transformers_on_a_padded_batch(tmp_path: Path, segments: bool) -> None:
    hf, path = make_hf(tmp_path)
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    assert model.load_report.ok and not model.load_report.unused_optional
    ids, seg, mask = batch()
    with torch.no_grad():
        if segments:
            ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask)
            hidden, logits = model([ids, seg])
            base = hf.transformer(input_ids=ids, token_type_ids=seg, attention_mask=mask)
        else:
            ref = hf(input_ids=ids, attention_mask=mask)
            hidden, logits = model(input_ids=ids)
            base = hf.transformer(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(logits, ref.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, base.last_hidden_state, atol=ATOL, rtol=0)
    encoder = build_transformer_model(checkpoint_path=path, model="xlnet").eval()
    with torch.no_grad():
        out = encoder([ids, seg]) if segments else encoder(input_ids=ids)
    torch.testing.assert_close(out, base.last_hidden_state, atol=ATOL, rtol=0)


def test_uni_attention_equals_transformers(tmp_path: Path) -> None:
    hf, path = make_hf(tmp_path, attn_type="uni")
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    assert model.attn_type == "uni"
    ids, seg, mask = batch()
    with torch.no_grad():
        mine = model([ids, seg])[1]
        for row in range(3):  # transformers' 'uni' mask breaks on a padded batch of > 1
            one = slice(row, row + 1)
            ref = hf(input_ids=ids[one], token_type_ids=seg[one], attention_mask=mask[one])
            torch.testing.assert_close(mine[one], ref.logits, atol=ATOL, rtol=0)


def test_clamp_len_equals_transformers(tmp_path: Path) -> None:
    hf, path = make_hf(tmp_path, clamp_len=3)
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    ids, seg, mask = batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits
        torch.testing.assert_close(model([ids, seg])[1], ref, atol=ATOL, rtol=0)


def test_memory_of_the_previous_segment_equals_transformers(tmp_path: Path) -> None:
    hf, path = make_hf(tmp_path, mem_len=6)
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    assert model.mem_len == 6
    ids, seg, mask = batch()
    first, second = ids[:, :4].clone(), ids[:, 4:].clone()
    first[1:, :] = torch.arange(6, 10)  # padding only in the second segment
    with torch.no_grad():
        hf_first = hf(input_ids=first, token_type_ids=seg[:, :4])
        hf_second = hf(
            input_ids=second,
            token_type_ids=seg[:, 4:],
            attention_mask=mask[:, 4:],
            mems=hf_first.mems,
        )
        model([first, seg[:, :4]])
        assert [m.shape for m in model.mems] == [(3, 4, 32)] * 2
        torch.testing.assert_close(model.mems[1], hf_first.mems[1].transpose(0, 1))
        logits = model([second, seg[:, 4:]], mems=model.mems)[1]
        assert [m.shape for m in model.mems] == [(3, 6, 32)] * 2  # the last mem_len steps
    torch.testing.assert_close(logits, hf_second.logits, atol=ATOL, rtol=0)


def _permutation_inputs(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A perm_mask hiding the last three positions from every query (and a random
    order among the rest), and a target_mapping that predicts those three."""
    b, n = ids.shape
    g = torch.Generator().manual_seed(4)
    perm = (torch.rand(b, n, n, generator=g) > 0.6).float()
    perm[:, :, -3:] = 1.0
    mapping = torch.zeros(b, 3, n)
    for p in range(3):
        mapping[:, p, n - 3 + p] = 1.0
    return perm, mapping


@pytest.mark.parametrize("attn_type", ["bi", "uni"])
def test_two_stream_attention_equals_transformers(tmp_path: Path, attn_type: str) -> None:
    hf, path = make_hf(tmp_path, attn_type=attn_type)
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    ids, seg, mask = batch()
    perm, mapping = _permutation_inputs(ids)
    rows = range(3) if attn_type == "uni" else [slice(None)]  # transformers' 'uni' + mask: B=1
    with torch.no_grad():
        hidden, logits = model([ids, seg], perm_mask=perm, target_mapping=mapping)
        assert logits.shape == (3, 3, 40) and hidden.shape == (3, 3, 32)  # one per target
        for row in rows:
            one = slice(row, row + 1) if isinstance(row, int) else row
            ref = hf(
                input_ids=ids[one],
                token_type_ids=seg[one],
                attention_mask=mask[one],
                perm_mask=perm[one],
                target_mapping=mapping[one],
            )
            torch.testing.assert_close(logits[one], ref.logits, atol=ATOL, rtol=0)
        # perm_mask alone changes the content stream only
        ref = hf(input_ids=ids[:1], token_type_ids=seg[:1], perm_mask=perm[:1]).logits
        torch.testing.assert_close(
            model([ids[:1], seg[:1]], perm_mask=perm[:1])[1], ref, atol=ATOL, rtol=0
        )
    with pytest.raises(ValueError, match="target_mapping must be"):
        model([ids, seg], target_mapping=mapping[:, :, :4])
    with pytest.raises(ValueError, match="perm_mask must be"):
        model([ids, seg], perm_mask=perm[:, :4])


def test_save_weights_round_trip_loads_in_transformers(tmp_path: Path) -> None:
    _, path = make_hf(tmp_path)
    model = build_transformer_model(checkpoint_path=path, model="xlnet", with_lm=True).eval()
    with torch.no_grad():
        for p in model.parameters():  # change every weight so the round trip is visible
            p.add_(0.01 * torch.randn_like(p))
    out = tmp_path / "saved"
    model.save_pretrained(out)
    reloaded = transformers.XLNetLMHeadModel.from_pretrained(out).eval()
    ids, seg, mask = batch()
    with torch.no_grad():
        ref = reloaded(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits
        torch.testing.assert_close(model([ids, seg])[1], ref, atol=ATOL, rtol=0)
    again = build_transformer_model(checkpoint_path=out, model="xlnet", with_lm=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(again([ids, seg])[1], model([ids, seg])[1], atol=0, rtol=0)


def test_keep_tokens_selects_vocabulary_rows(tmp_path: Path) -> None:
    hf, path = make_hf(tmp_path)
    keep = [0, 1, 2, 3, 4, 5, 9, 12, 20, 33, 39]
    model = build_transformer_model(
        checkpoint_path=path, model="xlnet", with_lm=True, keep_tokens=keep
    ).eval()
    old = torch.tensor([[9, 12, 20, 33, 39], [39, 33, 5, 5, 5]])
    new = torch.tensor([[keep.index(int(t)) for t in row] for row in old])
    with torch.no_grad():
        ref = hf(input_ids=old, attention_mask=old.ne(PAD).long()).logits[..., keep]
        torch.testing.assert_close(model(input_ids=new)[1], ref, atol=ATOL, rtol=0)


def test_a_config_of_another_architecture_is_refused(tmp_path: Path) -> None:
    _, path = make_hf(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_type"] = "bert"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"'bert' config but this is model='xlnet'"):
        build_transformer_model(checkpoint_path=path, model="xlnet")


def test_a_checkpoint_of_another_architecture_names_the_missing_keys(tmp_path: Path) -> None:
    _, path = make_hf(tmp_path)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=40,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
        )
    )
    torch.save(bert.state_dict(), tmp_path / "bert.bin")
    with pytest.raises(
        CheckpointError, match=r"no tensor matched.*word_embedding\.weight.*Wrong model="
    ):
        build_transformer_model(path / "config.json", tmp_path / "bert.bin", model="xlnet")


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    _, path = make_hf(tmp_path, mem_len=4)
    model = build_transformer_model(checkpoint_path=path, model="xlnet").eval()
    ids, seg, _ = batch()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model([ids + 40, seg])
    with pytest.raises(ValueError, match="segment_ids shape"):
        model([ids, seg[:, :3]])
    model([ids, seg])
    with pytest.raises(ValueError, match="mems are for a batch of 3"):
        model([ids[:2], seg[:2]], mems=model.mems)
    with pytest.raises(ValueError, match="bi_data"):
        build_transformer_model(checkpoint_path=path, model="xlnet", bi_data=True)


def _generation_fixture(tmp_path: Path) -> tuple[Any, Any]:
    """Weights N(0, 1) but the LayerNorms (N(0, 0.3) everywhere, norms included, makes
    every greedy step pick the same token: a test that could not fail)."""
    cfg = dict(vocab_size=40, d_model=32, n_layer=2, n_head=4, d_inner=48, dropout=0.0)
    torch.manual_seed(0)
    hf = transformers.XLNetLMHeadModel(
        transformers.XLNetConfig(**cfg, eos_token_id=None, bos_token_id=None, pad_token_id=PAD)
    ).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" not in name:
                p.normal_(0, 1.0)
    hf.save_pretrained(tmp_path / "xlnet-gen")
    ours = build_transformer_model(
        checkpoint_path=tmp_path / "xlnet-gen", model="xlnet", with_lm=True
    ).eval()
    return hf, ours


@pytest.mark.parametrize("beams", [1, 3])
def test_greedy_and_beam_equal_transformers_generate(tmp_path: Path, beams: int) -> None:
    generation = pytest.importorskip("b4t.generation")
    hf, ours = _generation_fixture(tmp_path)
    prompts = torch.randint(6, 40, (3, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf.generate(
            prompts, max_new_tokens=6, do_sample=False, num_beams=beams, pad_token_id=PAD
        )[:, 6:].tolist()
    gen = generation.SeqGeneration(ours, end_id=None, maxlen=6, mode="beam_search")
    out = gen.batch_generate(prompts.tolist(), topk=beams)
    assert out == ref
    assert len({tuple(row) for row in ref}) == 3 and len({t for row in ref for t in row}) > 4


def test_decoding_state_follows_rows_and_bad_calls_are_named(tmp_path: Path) -> None:
    _, ours = _generation_fixture(tmp_path)
    prompts = torch.randint(6, 40, (3, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, state = ours.decode_step(prompts, past_key_values=None)
        assert logits.shape == (3, 1, 40) and state.seq_len == 6
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        order = torch.tensor([2, 0, 1])
        stepped, _ = ours.decode_step(nxt[order], past_key_values=state.index_select(order))
        rows = [ours.decode_step(prompts[[r]], past_key_values=None) for r in (2, 0, 1)]
        alone = torch.cat(
            [ours.decode_step(nxt[[r]], past_key_values=s)[0] for r, (_, s) in zip((2, 0, 1), rows)]
        )
        # row i of the reordered state continues row i of the reordered batch
        torch.testing.assert_close(stepped, alone, atol=ATOL, rtol=0)
        with pytest.warns(DeprecationWarning, match="decode_step"):  # the old spelling
            old, old_state = ours(prompts, past_key_values=None, use_cache=True)
        torch.testing.assert_close(old, logits, atol=0, rtol=0)
        assert old_state.seq_len == 6
        with pytest.raises(TypeError, match="XLNetDecodingState"):
            ours.decode_step(nxt, past_key_values=(torch.zeros(1),))
        with pytest.raises(ValueError, match="holds 3 rows but input_ids has 2"):
            ours.decode_step(nxt[:2], past_key_values=state)
        with pytest.raises(ValueError, match="attention_mask shape"):
            ours.decode_step(nxt, past_key_values=state, attention_mask=torch.ones(3, 4))
    no_head = build_transformer_model(checkpoint_path=tmp_path / "xlnet-gen", model="xlnet")
    with pytest.raises(ValueError, match="with_lm=True"):
        no_head.decode_step(prompts, past_key_values=None)
