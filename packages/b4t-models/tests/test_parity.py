"""b4t vs transformers on tiny random checkpoints: hidden states, pooled, MLM, round trip."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from b4t.models import build_transformer_model

ATOL = 1e-5


def _close(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> None:
    if keep is not None:  # padded positions are not compared: they are garbage in both
        a, b = a[keep], b[keep]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


def _segments(hf, seg: torch.Tensor) -> torch.Tensor:
    """Real RoBERTa checkpoints have one segment (type_vocab_size=1): all zeros then."""
    return seg if hf.config.type_vocab_size > 1 else torch.zeros_like(seg)


def _hf_outputs(hf, ids, seg, keep):
    with torch.no_grad():
        return hf(
            input_ids=ids, token_type_ids=seg, attention_mask=keep.long(), output_hidden_states=True
        )


HEADS = {
    # name: (with_pool, HF logits attribute for MLM)
    "bert": (True, "prediction_logits"),
    "roberta": (False, "logits"),
    "albert": (True, "prediction_logits"),
    "electra": (False, "logits"),
    "ernie": (True, "prediction_logits"),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_hidden_pooled_mlm_match_transformers(name, hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint(name)
    ids, seg, keep = batch(hf.config.pad_token_id)
    seg = _segments(hf, seg)
    ref = _hf_outputs(hf, ids, seg, keep)
    with_pool, logits_attr = HEADS[name]
    model = build_transformer_model(path, path, model=name, with_pool=with_pool, with_mlm=True)
    model.eval()
    with torch.no_grad():
        out = model([ids, seg])
    _close(out[0], ref.hidden_states[-1], keep)
    _close(out[-1], getattr(ref, logits_attr), keep)
    if with_pool:
        base = getattr(hf, hf.base_model_prefix)
        with torch.no_grad():
            pooled = base(
                input_ids=ids, token_type_ids=seg, attention_mask=keep.long()
            ).pooler_output
        _close(out[1], pooled)


@pytest.mark.parametrize("name", list(HEADS))
def test_save_weights_round_trip_reloads_in_transformers(name, hf_checkpoint, batch, tmp_path):
    hf, path = hf_checkpoint(name)
    ids, seg, keep = batch(hf.config.pad_token_id)
    seg = _segments(hf, seg)
    model = build_transformer_model(path, path, model=name, with_mlm=True).eval()
    with torch.no_grad():  # change the weights so the round trip cannot pass by accident
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        out = model([ids, seg])
    target = tmp_path / "saved"
    model.save_pretrained(target)
    again = type(hf).from_pretrained(target).eval()
    ref = _hf_outputs(again, ids, seg, keep)
    logits_attr = HEADS[name][1]
    _close(out[0], ref.hidden_states[-1], keep)
    _close(out[1], getattr(ref, logits_attr), keep)


def test_bert_nsp_and_all_layers(hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint("bert")
    ids, seg, keep = batch(0)
    ref = _hf_outputs(hf, ids, seg, keep)
    model = build_transformer_model(
        path, path, with_nsp=True, output_all_encoded_layers=True
    ).eval()
    with torch.no_grad():
        layers, _pooled, nsp = model(token_ids=ids, segment_ids=seg)
    # L + 1 tensors, the embedding output first (0.2.5's numbering, as transformers')
    assert len(layers) == hf.config.num_hidden_layers + 1
    for mine, theirs in zip(layers, ref.hidden_states, strict=True):
        _close(mine, theirs, keep)
    _close(nsp, ref.seq_relationship_logits)


def test_bin_checkpoint_and_no_prefix_keys(hf_checkpoint, batch, tmp_path) -> None:
    hf, path = hf_checkpoint("bert", safe=False)
    assert (path / "pytorch_model.bin").exists()
    ids, seg, keep = batch(0)
    ref = _hf_outputs(hf, ids, seg, keep)
    model = build_transformer_model(path, path).eval()
    with torch.no_grad():
        _close(model([ids, seg]), ref.hidden_states[-1], keep)
    # the base model alone saves keys without the "bert." prefix
    hf.bert.save_pretrained(tmp_path / "base")
    headless = build_transformer_model(tmp_path / "base", tmp_path / "base").eval()
    with torch.no_grad():
        _close(headless([ids, seg]), ref.hidden_states[-1], keep)


def test_albert_unshared_starts_from_the_shared_layer(hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint("albert")
    ids, seg, keep = batch(0)
    ref = _hf_outputs(hf, ids, seg, keep)
    model = build_transformer_model(path, path, model="albert_unshared").eval()
    assert len(model.layers) == hf.config.num_hidden_layers
    assert model.layers[0].attention.qkv.weight is not model.layers[1].attention.qkv.weight
    with torch.no_grad():
        _close(model([ids, seg]), ref.hidden_states[-1], keep)


def test_albert_unshared_saves_nothing_lossy(hf_checkpoint, batch, tmp_path) -> None:
    """Equal layers save in the ALBERT layout; once they differ, an error, and own names work."""
    _, path = hf_checkpoint("albert")
    ids, seg, _ = batch(0)
    model = build_transformer_model(path, path, model="albert_unshared").eval()
    model.save_pretrained(tmp_path / "shared")  # still equal: the shared layout holds them
    with torch.no_grad():
        model.layers[1].attention.qkv.weight.add_(0.01)  # as after fine-tuning apart
    with pytest.raises(ValueError, match=r"layers\.1\..*different values"):
        model.save_pretrained(tmp_path / "lossy")
    assert not (tmp_path / "lossy" / "model.safetensors").exists()
    own = {name: name for name in model.state_dict()}
    model.save_weights(tmp_path / "own.safetensors", mapping=own)
    again = build_transformer_model(path, model="albert_unshared").eval()
    again.load_weights(tmp_path / "own.safetensors", mapping=own)
    with torch.no_grad():
        torch.testing.assert_close(again([ids, seg]), model([ids, seg]), atol=0, rtol=0)


def test_electra_discriminator_matches_transformers(hf_checkpoint, batch, tmp_path) -> None:
    """with_discriminator: logits equal ElectraForPreTraining's; True gives their sigmoid."""
    hf, path = hf_checkpoint("electra-discriminator")
    ids, seg, keep = batch(hf.config.pad_token_id)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=keep.long()).logits
    logits_model = build_transformer_model(
        path, path, model="electra", with_discriminator="linear"
    ).eval()
    probs_model = build_transformer_model(path, path, model="electra", with_discriminator=True)
    with torch.no_grad():
        hidden, logits = logits_model([ids, seg])
        _, probs = probs_model.eval()([ids, seg])
    assert logits.shape == ids.shape and hidden.shape == (*ids.shape, hf.config.hidden_size)
    _close(logits, ref, keep)
    _close(probs, torch.sigmoid(ref), keep)
    # round trip: b4t's save -> transformers' from_pretrained
    logits_model.save_pretrained(tmp_path / "saved")
    again = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = again(input_ids=ids, token_type_ids=seg, attention_mask=keep.long()).logits
    _close(out, ref, keep)


def test_electra_discriminator_needs_its_weights(hf_checkpoint) -> None:
    """A generator-only checkpoint has no discriminator head: strict loading names it."""
    _, path = hf_checkpoint("electra")  # ElectraForMaskedLM
    with pytest.raises(Exception, match=r"discriminator_predictions\.dense"):
        build_transformer_model(path, path, model="electra", with_discriminator=True)


def test_ernie_task_type_ids(hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint("ernie")
    ids, seg, keep = batch(0)
    task = torch.ones_like(ids)
    with torch.no_grad():
        ref = hf.ernie(
            input_ids=ids, token_type_ids=seg, attention_mask=keep.long(), task_type_ids=task
        ).last_hidden_state
        out = build_transformer_model(path, path, model="ernie").eval()(
            ids, seg, task_type_ids=task
        )
    _close(out, ref, keep)


def test_lm_application_matches_a_causal_bert(hf_checkpoint) -> None:
    hf, path = hf_checkpoint("bert", is_decoder=True)
    ids = torch.randint(3, 99, (2, 9))
    with torch.no_grad():
        ref = hf(input_ids=ids)
        # 'lm' adds the MLM head as 0.2.5 does: [hidden, mlm_scores]
        model = build_transformer_model(path, path, application="lm").eval()
        out, scores = model(ids)
    _close(out, hf.bert(input_ids=ids).last_hidden_state)
    _close(scores, ref.prediction_logits)


def test_uie_loads_ernie_weights_plus_pointer_heads(hf_checkpoint, batch, tmp_path) -> None:
    """A UIE checkpoint in transformers' ERNIE layout (``ernie.*``) + linear_start / linear_end.

    (0.2.5's own UIE layout, ``bert.*`` keys, is checked against 0.2.5 in
    ``tests/seed/test_seed_models.py::test_uie_bert_layout_equals_the_seed``.)"""
    from safetensors.torch import load_file, save_file

    hf, path = hf_checkpoint("ernie")
    state = load_file(str(path / "model.safetensors"))
    torch.manual_seed(3)
    heads = {
        "linear_start.weight": torch.randn(1, 32),
        "linear_start.bias": torch.randn(1),
        "linear_end.weight": torch.randn(1, 32),
        "linear_end.bias": torch.randn(1),
    }
    save_file({**state, **heads}, str(tmp_path / "uie.safetensors"))
    ids, seg, keep = batch(0)
    model = build_transformer_model(path, tmp_path / "uie.safetensors", model="uie").eval()
    with torch.no_grad():
        hidden, start, end = model([ids, seg])
        ref = hf.ernie(input_ids=ids, token_type_ids=seg, attention_mask=keep.long())
    ref_hidden = ref.last_hidden_state
    _close(hidden, ref_hidden, keep)
    expected_start = torch.sigmoid(
        ref_hidden @ heads["linear_start.weight"].T + heads["linear_start.bias"]
    )
    expected_end = torch.sigmoid(
        ref_hidden @ heads["linear_end.weight"].T + heads["linear_end.bias"]
    )
    _close(start, expected_start.squeeze(-1), keep)
    _close(end, expected_end.squeeze(-1), keep)


def test_albert_sop_head_as_nsp(hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint("albert")
    ids, seg, keep = batch(0)
    ref = _hf_outputs(hf, ids, seg, keep)
    model = build_transformer_model(path, path, model="albert", with_nsp=True).eval()
    with torch.no_grad():
        _hidden, _pooled, sop = model([ids, seg])
    _close(sop, ref.sop_logits)


def _perturbed(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_untied_mlm_decoder_loads_into_its_own_weight(tmp_path, batch) -> None:
    """tie_word_embeddings=False: cls.predictions.decoder.{weight,bias} are the head's own
    (never "optional"); the MLM logits equal transformers'. A tied config whose file holds
    a different decoder is an error naming the key, not a silent choice."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    hf = transformers.BertForPreTraining(config).eval()
    _perturbed(hf)
    assert not torch.equal(
        hf.cls.predictions.decoder.weight, hf.bert.embeddings.word_embeddings.weight
    )
    hf.save_pretrained(tmp_path / "untied")
    ids, seg, keep = batch(0)
    ref = _hf_outputs(hf, ids, seg, keep)
    model = build_transformer_model(tmp_path / "untied", tmp_path / "untied", with_mlm=True).eval()
    assert model.mlm.decoder is not None
    with torch.no_grad():
        _, scores = model([ids, seg])
    _close(scores, ref.prediction_logits, keep)
    # asked to tie (tie_emb_prj_weight=True), a file whose decoder differs is refused
    with pytest.raises(Exception, match=r"cls\.predictions\.decoder\.weight differs"):
        build_transformer_model(
            tmp_path / "untied", tmp_path / "untied", with_mlm=True, tie_emb_prj_weight=True
        )


def test_mlm_decoder_is_its_own_weight_unless_tied(hf_checkpoint, batch) -> None:
    """As 0.2.5: the decoder starts as the checkpoint's (tied: a copy of the embeddings)
    and trains apart; tie_emb_prj_weight=True shares the table."""
    _, path = hf_checkpoint("bert", safe=False)  # a .bin saving both names of one tensor
    apart = build_transformer_model(path, path, with_mlm=True)
    # the stored tensor is one; the model's two parameters must not share its memory
    assert apart.mlm.decoder.weight.data_ptr() != apart.embeddings.word_embeddings.weight.data_ptr()
    tied = build_transformer_model(path, path, with_mlm=True, tie_emb_prj_weight=True)
    emb = apart.embeddings.word_embeddings.weight
    assert apart.mlm.decoder.weight is not emb
    torch.testing.assert_close(apart.mlm.decoder.weight, emb, atol=0, rtol=0)
    assert tied.mlm.decoder is None
    ids, seg, _ = batch(0)
    apart(ids, seg)[1].sum().backward()
    assert apart.mlm.decoder.weight.grad is not None
    with torch.no_grad():
        apart.mlm.decoder.weight.add_(1.0)  # trained apart: the embeddings do not move
    torch.testing.assert_close(emb, tied.embeddings.word_embeddings.weight, atol=0, rtol=0)


def test_roberta_loads_both_layouts(tmp_path, batch) -> None:
    """model='roberta': Facebook keys (roberta.*, lm_head.*) and the BERT layout of the
    Chinese RoBERTa-wwm checkpoints (bert.*, cls.*) both load, told apart by the keys."""
    common = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    facebook = transformers.RobertaForMaskedLM(
        transformers.RobertaConfig(**common, type_vocab_size=1, pad_token_id=1)
    ).eval()
    wwm = transformers.BertForMaskedLM(transformers.BertConfig(**common)).eval()
    _perturbed(facebook)
    _perturbed(wwm)
    facebook.save_pretrained(tmp_path / "fb")
    wwm.save_pretrained(tmp_path / "wwm")
    _, seg, _ = batch(1)
    for hf, folder, segments in ((facebook, "fb", torch.zeros_like(seg)), (wwm, "wwm", seg)):
        pad = hf.config.pad_token_id
        ids_, _, keep_ = batch(pad)
        with torch.no_grad():
            ref = hf(input_ids=ids_, token_type_ids=segments, attention_mask=keep_.long())
            _, scores = build_transformer_model(
                tmp_path / folder, tmp_path / folder, model="roberta", with_mlm=True
            ).eval()([ids_, segments])
        _close(scores, ref.logits, keep_)
    # keys of both kinds: refused, naming one of each
    from safetensors.torch import load_file, save_file

    mixed = {**load_file(str(tmp_path / "fb" / "model.safetensors"))}
    mixed["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    with pytest.raises(Exception, match="both Facebook-layout keys"):
        build_transformer_model(tmp_path / "fb", tmp_path / "mixed.safetensors", model="roberta")
    # headless keys and no model_type: no guess
    base = {k.removeprefix("roberta."): v for k, v in mixed.items() if k.startswith("roberta.")}
    save_file(base, str(tmp_path / "headless.safetensors"))
    raw = json.loads((tmp_path / "fb" / "config.json").read_text())
    raw.pop("model_type", None)
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="set model_type to 'roberta' or 'bert'"):
        build_transformer_model(
            tmp_path / "cfg.json", tmp_path / "headless.safetensors", model="roberta"
        )
