"""Checkpoint IO: sharded indexes, strict / lenient loads, keep_tokens, no double init."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import b4t.models.loading as loading
from b4t.models import CheckpointError, build_transformer_model, read_checkpoint


def _shard(path, out):
    """Split model.safetensors in two shards + an index, as transformers does for big models."""
    state = load_file(str(path / "model.safetensors"))
    keys = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    out.mkdir()
    weight_map = {}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(out / name))
        weight_map.update(dict.fromkeys(part, name))
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (out / "config.json").write_text((path / "config.json").read_text())
    return state


def test_sharded_index_loads_the_same(hf_checkpoint, batch, tmp_path) -> None:
    _, path = hf_checkpoint("bert")
    state = _shard(path, tmp_path / "sharded")
    assert read_checkpoint(tmp_path / "sharded").keys() == state.keys()
    ids, seg, _ = batch(0)
    a = build_transformer_model(path, path).eval()
    b = build_transformer_model(path, tmp_path / "sharded").eval()
    with torch.no_grad():
        torch.testing.assert_close(a([ids, seg]), b([ids, seg]), atol=0, rtol=0)


def test_no_random_init_before_assigning_loaded_weights(hf_checkpoint, monkeypatch) -> None:
    _, path = hf_checkpoint("bert")
    calls: list[str] = []
    real = loading._init_param
    monkeypatch.setattr(
        loading, "_init_param", lambda m, n, p, s: calls.append(n) or real(m, n, p, s)
    )
    model = build_transformer_model(path, path, with_pool=True, with_mlm=True)
    assert calls == []  # everything came from the file
    assert not any(p.is_meta for p in model.parameters())
    build_transformer_model(path, path, with_pool=True, segment_vocab_size=0)
    assert calls == []


def test_strict_error_lists_missing_unexpected_and_misshaped(hf_checkpoint, tmp_path) -> None:
    _, path = hf_checkpoint("bert")
    state = load_file(str(path / "model.safetensors"))
    state.pop("bert.encoder.layer.1.output.dense.weight")
    state["bert.encoder.layer.0.intermediate.dense.bias"] = torch.zeros(5)
    state["bert.encoder.extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError) as err:
        build_transformer_model(path, tmp_path / "broken.safetensors")
    msg = str(err.value)
    assert "bert.encoder.layer.1.output.dense.weight" in msg
    assert "bert.encoder.extra.weight" in msg
    assert "bert.encoder.layer.0.intermediate.dense.bias: checkpoint (5,) vs model (37,)" in msg
    with pytest.warns(UserWarning, match="bert.encoder.extra.weight"):
        model = build_transformer_model(path, tmp_path / "broken.safetensors", strict=False)
    with pytest.warns(UserWarning, match="wrong shape"):
        report = model.load_weights(tmp_path / "broken.safetensors", strict=False)
    assert report.unexpected == ["bert.encoder.extra.weight"]
    assert len(report.missing) == 1 and len(report.mismatched) == 1
    assert not any(p.is_meta for p in model.parameters())


def test_missing_checkpoint_file_is_named(hf_checkpoint, tmp_path) -> None:
    _, path = hf_checkpoint("bert")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.safetensors"):
        build_transformer_model(path, tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        build_transformer_model(path, tmp_path)  # a folder without weights


def test_wrong_config_for_weights_is_a_shape_error(hf_checkpoint) -> None:
    _, path = hf_checkpoint("bert")
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight: checkpoint \(99, 32\)"):
        build_transformer_model(path, path, vocab_size=120)


def test_keep_and_compound_tokens(hf_checkpoint) -> None:
    hf, path = hf_checkpoint("bert")
    keep = [0, 5, 7, 9, 11]
    compound = [[1, 2], [3]]
    model = build_transformer_model(
        path, path, with_mlm=True, keep_tokens=keep, compound_tokens=compound
    )
    table = hf.bert.embeddings.word_embeddings.weight.detach()
    mine = model.embeddings.word_embeddings.weight.detach()
    assert mine.shape == (7, 32)
    torch.testing.assert_close(mine[:5], table[keep])
    torch.testing.assert_close(mine[5], table[[5, 7]].mean(0))  # ids of the kept vocab
    torch.testing.assert_close(mine[6], table[9])
    bias = hf.cls.predictions.bias.detach()
    torch.testing.assert_close(model.mlm.bias.detach()[:5], bias[keep])


def test_state_dict_and_explicit_mapping(hf_checkpoint, batch) -> None:
    hf, path = hf_checkpoint("bert")
    model = build_transformer_model(path, path).eval()
    mapping = model.variable_mapping()
    assert mapping["embeddings.word_embeddings.weight"] == "bert.embeddings.word_embeddings.weight"
    fresh = build_transformer_model(path).eval()  # random weights
    ids, seg, _ = batch(0)
    with torch.no_grad():
        assert not torch.allclose(fresh([ids, seg]), model([ids, seg]))
        base = {k: v for k, v in hf.bert.state_dict().items() if not k.startswith("pooler.")}
        fresh.load_weights(base, mapping=mapping)  # headless keys match too
        torch.testing.assert_close(fresh([ids, seg]), model([ids, seg]))


def test_dtype_and_gradient_checkpoint(hf_checkpoint, batch) -> None:
    _, path = hf_checkpoint("bert")
    ids, seg, _ = batch(0)
    half = build_transformer_model(path, path, dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    plain = build_transformer_model(
        path, path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    ckpt = build_transformer_model(
        path,
        path,
        gradient_checkpoint=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    for m in (plain, ckpt):
        m.train()
        m([ids, seg]).pow(2).mean().backward()
    torch.testing.assert_close(
        plain.layers[0].attention.qkv.weight.grad, ckpt.layers[0].attention.qkv.weight.grad
    )


def test_save_over_the_loaded_file_keeps_the_model_intact(hf_checkpoint, batch, tmp_path) -> None:
    """Weights are memory-mapped: saving over their own file must not change them."""
    _, path = hf_checkpoint("bert")
    ids, seg, keep = batch(0)
    model = build_transformer_model(path, path).eval()
    with torch.no_grad():
        before = model([ids, seg])
        model.embeddings.word_embeddings.weight.mul_(2.0)  # copy-on-write, file untouched
        changed = model([ids, seg])
        model.save_pretrained(path)  # replaces the very file the tensors map
        torch.testing.assert_close(model([ids, seg]), changed)
    again = build_transformer_model(path, path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again([ids, seg]), changed)
        assert not torch.allclose(again([ids, seg])[keep], before[keep])


def test_parts_without_checkpoint_tensors_are_reported_not_silent(hf_checkpoint) -> None:
    _, path = hf_checkpoint("electra")  # ELECTRA checkpoints have no pooler
    with pytest.warns(UserWarning, match=r"initialised randomly .*pooler\.dense\.weight"):
        model = build_transformer_model(path, path, model="electra", with_pool=True)
    assert not any(p.is_meta for p in model.parameters())
    assert model.pooler.dense.weight.std() > 0


def test_damaged_files_are_named_with_what_is_wrong(hf_checkpoint, tmp_path) -> None:
    """Truncated safetensors, a header claiming a huge length, a truncated .bin: one
    CheckpointError naming the file, never torch's internals or a MemoryError."""
    _, path = hf_checkpoint("bert")
    data = (path / "model.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{cut}.*bytes .* of the data .*truncated"):
        read_checkpoint(cut)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((2**62).to_bytes(8, "little") + data[8:100])
    with pytest.raises(CheckpointError, match=rf"{huge}: the safetensors header claims"):
        read_checkpoint(huge)
    _, bin_path = hf_checkpoint("bert", safe=False)
    raw = (bin_path / "pytorch_model.bin").read_bytes()
    cut_bin = tmp_path / "pytorch_model.bin"
    cut_bin.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=rf"{cut_bin} cannot be read as a PyTorch"):
        build_transformer_model(bin_path, cut_bin)


def test_own_names_round_trip_with_an_empty_mapping(hf_checkpoint, batch, tmp_path) -> None:
    """save_weights(path, mapping={}) writes b4t's names; load_weights(path, mapping={})
    loads them; a load that matches nothing is an error, not a silent success."""
    _, path = hf_checkpoint("bert")
    ids, seg, _ = batch(0)
    model = build_transformer_model(path, path, with_pool=True, with_mlm=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    target = tmp_path / "own.bin"
    model.save_weights(target, mapping={})
    saved = torch.load(target, weights_only=True)
    assert set(saved) == set(model.state_dict()) and "layers.0.attention.qkv.weight" in saved
    again = build_transformer_model(path, with_pool=True, with_mlm=True).eval()
    again.load_weights(target, mapping={})
    with torch.no_grad():
        for a, b in zip(again([ids, seg]), model([ids, seg]), strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    # without mapping=, a state-dict file in the model's own names loads as one (as
    # bert4torch 0.2.5's load_weights reads what its save_weights wrote), when
    # b4t-trainer is installed; otherwise its names are read as the checkpoint layout
    third = build_transformer_model(path, with_pool=True, with_mlm=True).eval()
    if hasattr(third, "seed_state_names"):
        third.load_weights(target)
        for a, b in zip(third.state_dict().values(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    else:
        with pytest.raises(CheckpointError, match=r"own\.bin does not match the model"):
            third.load_weights(target)
    with pytest.raises(CheckpointError, match="no tensor matched"):
        again.load_weights(path / "model.safetensors", mapping={})
