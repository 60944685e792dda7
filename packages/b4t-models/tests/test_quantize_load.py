"""Quantizing at load (``build_transformer_model(quantize='int8'|'int4')``) and saving packed.

A tiny random transformers LLaMA (tied and untied head) saved with ``save_pretrained``:
every linear and the word table get packed, the logits stay near the float model's, the
greedy tokens agree; :func:`save_quantized` + ``build_transformer_model`` give back the
same codes and logits; bad ``quantize=`` values name themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.layers import QuantizedLinear
from b4t.layers.int4pack_rows import block_positions
from b4t.layers.quantized_embedding import QuantizedEmbedding
from b4t.models import build_transformer_model
from b4t.models.quantize_load import CONFIG_KEY, save_quantized

transformers = pytest.importorskip("transformers")


def tiny_llama(folder: Path, tied: bool) -> Path:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=tied,
    )  # fmt: skip
    out = folder / ("tied" if tied else "untied")
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    return out


def packed_modules(model: Any) -> dict[str, Any]:
    kinds = (QuantizedLinear, QuantizedEmbedding)
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, _ = model.decode_step(ids)
    return out


IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(3))


# (mode, bits, relative logit error bound: 8-bit ~1%, 4-bit asymmetric ~10% on random weights)
@pytest.mark.parametrize(("mode", "bits", "bound"), [("int8", 8, 0.02), ("int4", 4, 0.25)])
@pytest.mark.parametrize("tied", [True, False])
def test_quantize_at_load(tmp_path: Path, mode: str, bits: int, bound: float, tied: bool) -> None:
    folder = tiny_llama(tmp_path, tied)
    floats = build_transformer_model(
        checkpoint_path=folder, model="llama"
    ).eval()  # 'float' by default
    model = build_transformer_model(checkpoint_path=folder, model="llama", quantize=mode).eval()
    assert not packed_modules(floats)
    packed = packed_modules(model)
    assert isinstance(packed["embeddings.word_embeddings"], QuantizedEmbedding)
    assert isinstance(model.lm_head, QuantizedLinear)
    assert len([m for m in packed.values() if isinstance(m, QuantizedLinear)]) == 2 * 5 + 1
    assert all(m.bits == bits and m.group_size == 32 for m in packed.values())
    if tied:  # one copy of the codes: the table gathers its rows from the packed head
        table = model.embeddings.word_embeddings
        assert torch.equal(model.lm_head.codes(), table.codes())
        if model.lm_head.kernel == "int4pack" and block_positions(64) is not None:
            assert table.qweight is None and table._head == (model.lm_head,)
    reference = logits(floats, IDS)
    error = float((logits(model, IDS) - reference).abs().max()) / float(reference.abs().max())
    assert error < bound, error
    assert error > 0  # really quantized


@pytest.mark.parametrize("tied", [True, False])
def test_save_quantized_round_trip(tmp_path: Path, tied: bool) -> None:
    model = build_transformer_model(
        checkpoint_path=tiny_llama(tmp_path, tied), model="llama", quantize="int4"
    )
    model.eval()
    written = save_quantized(model, tmp_path / "saved")
    assert written.name == "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(written), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("layers.0.ffn.gate.qweight").dtype == torch.uint8
    assert "layers.0.attention.qkv.scales" in keys and "model.norm.weight" in keys
    # a tied head is not written twice: it is rebuilt over the table's codes
    assert any(k.startswith("lm_head.") for k in keys) == (not tied)
    # the packed bytes, not float32 copies: 4-bit codes are half a byte a value
    float_bytes = sum(p.numel() * 4 for p in build_transformer_model(
        checkpoint_path=tiny_llama(tmp_path / "f", tied), model="llama").parameters())  # fmt: skip
    assert written.stat().st_size < 0.5 * float_bytes
    back = build_transformer_model(checkpoint_path=tmp_path / "saved", model="llama").eval()
    assert CONFIG_KEY in back.config.raw
    with pytest.raises(ValueError, match="saved packed"):
        build_transformer_model(checkpoint_path=tmp_path / "saved", model="llama", quantize="float")
    original, loaded = packed_modules(model), packed_modules(back)
    assert original.keys() == loaded.keys()
    for name, module in original.items():
        assert torch.equal(module.codes(), loaded[name].codes()), name
        assert torch.equal(module.scales, loaded[name].scales), name
        assert type(module) is type(loaded[name])
    torch.testing.assert_close(logits(back, IDS), logits(model, IDS), rtol=0, atol=0)


def test_bad_quantize_values(tmp_path: Path) -> None:
    folder = tiny_llama(tmp_path, True)
    with pytest.raises(ValueError, match=r"quantize='int3': expected one of"):
        build_transformer_model(checkpoint_path=folder, model="llama", quantize="int3")
    with pytest.raises(ValueError, match=r"quantize='gguf'.*not a \.gguf file"):
        build_transformer_model(checkpoint_path=folder, model="llama", quantize="gguf")
    with pytest.raises(ValueError, match="holds no QuantizedLinear"):
        save_quantized(
            build_transformer_model(checkpoint_path=folder, model="llama"), tmp_path / "x"
        )
