"""b4t's compiled quantized kernel: its layout, its arithmetic against the PyTorch
reference (both the AVX-512 VNNI and the portable path), and the fallback without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from b4t.layers import native_kernel

needs_library = pytest.mark.skipif(
    not native_kernel.available(), reason=f"native kernel: {native_kernel.unavailable_reason()}"
)
PATHS = [pytest.param(False, id="portable"), pytest.param(True, id="vnni")]


def _codes(out: int, cols: int, bits: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if bits == 8:
        return torch.randint(-128, 128, (out, cols), dtype=torch.int8, generator=generator)
    return torch.randint(0, 16, (out, cols), dtype=torch.uint8, generator=generator)


def _dequantized(codes, scales, mins, group, zero):
    out, cols = codes.shape
    values = (codes.float() - zero).reshape(out, -1, group) * scales[..., None]
    if mins is not None:
        values = values + mins[..., None]
    return values.reshape(out, cols)


def _skip_unless(simd: bool) -> None:
    if simd and not native_kernel.simd_available():
        pytest.skip("this CPU (or build) has no AVX-512 VNNI path")


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("out", [16, 37, 200])
def test_repacked_layout_round_trips(bits, out):
    codes = _codes(out, 96, bits)
    packed = native_kernel.repack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == -(-out // 16) * 16 * 96 * bits // 8  # padded to whole tiles
    assert torch.equal(native_kernel.unpack_codes(packed, out, 96, bits), codes)
    rows = torch.tensor([0, out - 1, out // 2, 15 % out, 0])
    assert torch.equal(native_kernel.row_codes(packed, rows, out, 96, bits), codes[rows])
    for dtype in (torch.float32, torch.float16):  # GGUF's float16 scales stay float16
        scales = torch.rand(out, 3).to(dtype)
        tiles = native_kernel.repack_groups(scales)
        assert tiles.shape == (-(-out // 16), 3, 16) and tiles.dtype == dtype
        assert torch.equal(native_kernel.unpack_groups(tiles, out), scales)


def test_the_layout_is_the_documented_one():
    """8 bits: byte (t, j, r, i) = code of row 16 t + r, column 4 j + i, plus 128;
    4 bits: the low nibble holds column 8 j + i, the high nibble column 8 j + 4 + i."""
    codes8 = _codes(32, 64, 8)
    tiles8 = native_kernel.repack_codes(codes8, 8).reshape(2, 16, 16, 4)
    assert int(tiles8[1, 3, 5, 2]) == int(codes8[16 + 5, 4 * 3 + 2]) + 128
    codes4 = _codes(32, 64, 4)
    tiles4 = native_kernel.repack_codes(codes4, 4).reshape(2, 8, 16, 4)
    byte = int(tiles4[1, 3, 5, 2])
    assert byte & 0x0F == int(codes4[21, 8 * 3 + 2]) and byte >> 4 == int(codes4[21, 8 * 3 + 6])


@pytest.mark.parametrize(("levels", "steps"), [(1, 254), (2, 254 * 127)])
def test_the_reference_is_the_dequantized_product_up_to_input_rounding(levels, steps):
    codes, scales = _codes(48, 128, 8), torch.rand(48, 4) * 0.01
    x = torch.randn(5, 128)
    got = native_kernel.reference_matmul(x, codes, scales, None, None, 32, 0, levels)
    passes = native_kernel.quantize_activations(x, levels)
    assert len(passes) == levels
    rounded = sum(q * d[..., None] for q, d in passes).reshape(5, 128)  # what is multiplied
    weight = _dequantized(codes, scales, None, 32, 0)
    torch.testing.assert_close(got, F.linear(rounded, weight), rtol=1e-5, atol=1e-5)
    # each value within half a step of the last pass: 1/254 of its block's absmax for
    # one pass, 1/(254 * 127) for two (plus float32 rounding)
    amax = x.reshape(5, 4, 32).abs().amax(-1, keepdim=True).expand(5, 4, 32).reshape(5, 128)
    assert bool(((rounded - x).abs() <= amax / steps * 1.001 + 1e-7).all())
    assert not torch.equal(rounded, x)


@needs_library
@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize(
    ("bits", "zero", "asym"),
    [pytest.param(8, 0, False, id="Q8_0"), pytest.param(4, 8, False, id="Q4_0"),
     pytest.param(4, 0, True, id="Q4_1")],
)  # fmt: skip
@pytest.mark.parametrize(("out", "cols", "group"), [(576, 576, 32), (200, 192, 64), (48, 256, 256)])
@pytest.mark.parametrize("rows", [1, 3, 8, 13])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("levels", [1, 2])
def test_compiled_kernel_equals_the_reference(
    simd, bits, zero, asym, out, cols, group, rows, dtype, levels
):
    _skip_unless(simd)
    codes = _codes(out, cols, bits, seed=rows)
    generator = torch.Generator().manual_seed(out)
    scales = (torch.rand(out, cols // group, generator=generator) * 0.01).to(dtype)
    mins = -torch.rand(out, cols // group, generator=generator) * 0.05 if asym else None
    mins = None if mins is None else mins.to(dtype)
    bias = torch.randn(out, generator=generator)
    x = torch.randn(rows, cols, generator=generator)
    got = native_kernel.matmul(
        x,
        native_kernel.repack_codes(codes, bits),
        native_kernel.repack_groups(scales),
        None if mins is None else native_kernel.repack_groups(mins),
        bias,
        out,
        bits,
        group,
        zero,
        simd=simd,
        levels=levels,
    )
    expected = native_kernel.reference_matmul(x, codes, scales, mins, bias, group, zero, levels)
    assert got.shape == (rows, out) and got.dtype == torch.float32
    # the same integers and per-block products; only the float sums' rounding differs
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


@needs_library
@pytest.mark.parametrize("simd", PATHS)
def test_input_rounding_ties_go_to_even_as_in_torch(simd):
    """Values that land exactly on a half step round as ``torch.round`` does (one pass:
    a second would represent the half step exactly)."""
    _skip_unless(simd)
    x = torch.zeros(1, 64)
    x[0, 0] = 127.0  # absmax 127: a step of exactly 1
    x[0, 1:9] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 110.5, 3.25])
    x[0, 32] = -127.0
    x[0, 33] = 126.5
    identity = torch.eye(64, dtype=torch.int8)
    got = native_kernel.matmul(
        x,
        native_kernel.repack_codes(identity, 8),
        native_kernel.repack_groups(torch.ones(64, 2)),
        None,
        None,
        64,
        8,
        32,
        0,
        simd=simd,
        levels=1,
    )
    assert torch.equal(got, torch.round(x))


@needs_library
@pytest.mark.parametrize("simd", PATHS)
def test_a_rows_result_does_not_depend_on_the_other_rows_or_threads(simd):
    _skip_unless(simd)
    codes, scales = _codes(1000, 256, 8), torch.rand(1000, 8)
    packed, tiles = native_kernel.repack_codes(codes, 8), native_kernel.repack_groups(scales)
    x = torch.randn(9, 256)

    def run(rows):
        return native_kernel.matmul(rows, packed, tiles, None, None, 1000, 8, 32, 0, simd)

    batched = run(x)
    for r in range(9):
        assert torch.equal(run(x[r : r + 1])[0], batched[r]), r
    for count in range(1, 9):
        assert torch.equal(run(x[:count]), batched[:count]), count
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run(x)
        torch.set_num_threads(2)
        assert torch.equal(run(x), single)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, batched)


@needs_library
def test_bad_arguments_name_the_problem():
    codes = native_kernel.repack_codes(_codes(32, 64, 8), 8)
    tiles = native_kernel.repack_groups(torch.ones(32, 2))
    x = torch.randn(2, 64)
    with pytest.raises(RuntimeError, match="packed codes must be contiguous uint8 of 2048 bytes"):
        native_kernel.matmul(x, codes[:100], tiles, None, None, 32, 8, 32, 0)
    with pytest.raises(RuntimeError, match=r"scales must be contiguous float32 or float16 \[2, 2"):
        native_kernel.matmul(x, codes, tiles.double(), None, None, 32, 8, 32, 0)
    with pytest.raises(RuntimeError, match="mins must be laid out as the scales"):
        native_kernel.matmul(x, codes, tiles, tiles.half(), None, 32, 8, 32, 0)
    with pytest.raises(RuntimeError, match="multiples of 32"):
        native_kernel.matmul(torch.randn(2, 48), codes, tiles, None, None, 32, 8, 16, 0)
    with pytest.raises(RuntimeError, match="x must be a contiguous float32"):
        native_kernel.matmul(x.double(), codes, tiles, None, None, 32, 8, 32, 0)
    with pytest.raises(RuntimeError, match=r"bias must be contiguous float32 \[32\]"):
        native_kernel.matmul(x, codes, tiles, None, torch.zeros(31), 32, 8, 32, 0)
    empty = native_kernel.matmul(x[:0], codes, tiles, None, None, 32, 8, 32, 0)
    assert empty.shape == (0, 32)


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_the_library_layers_fall_back_to_torchs_kernels(tmp_path):
    """Turned off, or failing to build (here: a compiler that does not exist), the
    library is not used; the reason is warned once and layers keep working."""
    code = """
        import warnings
        import torch
        from b4t.layers import native_kernel
        from b4t.layers.quantized import QuantizedLinear, choose_kernel
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer = QuantizedLinear.quantize(torch.randn(48, 128), None, 8, 32)
            again = QuantizedLinear.quantize(torch.randn(48, 128), None, 4, 32, True)
        print("available", native_kernel.available())
        print("kernel", layer.kernel, again.kernel)
        print("warnings", len([w for w in caught if "native" in str(w.message)]))
        print("reason", native_kernel.unavailable_reason())
        print("out", tuple(layer(torch.randn(3, 128)).shape))
        try:
            layer.set_kernel("native")
        except ValueError as error:
            print("error", error)
    """
    off = _run_python(code, B4T_NATIVE_KERNEL="0")
    assert off.returncode == 0, off.stderr
    assert "available False" in off.stdout and "kernel native" not in off.stdout
    assert "warnings 0" in off.stdout  # turned off on purpose: nothing to warn about
    assert "out (3, 48)" in off.stdout
    assert "error QuantizedLinear(128 -> 48): the native kernel is unavailable: turned off" in (
        off.stdout
    )
    broken = _run_python(code, B4T_KERNEL_CACHE=str(tmp_path), CXX=str(tmp_path / "no-cxx"))
    assert broken.returncode == 0, broken.stderr
    assert "available False" in broken.stdout and "warnings 1" in broken.stdout
    assert "reason building quant_matmul.cpp failed" in broken.stdout


@needs_library
def test_input_passes_set_per_model_and_two_passes_are_closer_to_exact():
    from b4t.layers.quantized import QuantizedLinear

    weight = torch.randn(64, 128) * 0.05
    model = torch.nn.Sequential(
        QuantizedLinear.quantize(weight, None, 8, 32, kernel="native"),
        torch.nn.ReLU(),
        QuantizedLinear.quantize(weight[:, :64].t().contiguous(), None, 4, 32, True, "native"),
    )
    assert [m.input_passes for m in (model[0], model[2])] == [native_kernel.INPUT_PASSES] * 2
    x = torch.randn(5, 128)
    exact = F.linear(x, model[0].dequantize())
    with torch.no_grad():
        two = model[0](x)
        assert native_kernel.set_input_passes(model, 1) == 2
        one = model[0](x)
    assert model[2].input_passes == 1
    assert float((two - exact).abs().max()) * 50 < float((one - exact).abs().max())
    with pytest.raises(ValueError, match="input passes must be 1 or 2, got 3"):
        native_kernel.set_input_passes(model, 3)


@needs_library
@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_input_gives_non_finite_outputs_in_its_row_only(simd, bad):
    _skip_unless(simd)
    codes, scales = _codes(48, 128, 4), torch.rand(48, 4)
    packed, tiles = native_kernel.repack_codes(codes, 4), native_kernel.repack_groups(scales)
    x = torch.randn(3, 128)
    clean = native_kernel.matmul(x, packed, tiles, tiles, None, 48, 4, 32, 0, simd)
    x[1, 70] = bad
    got = native_kernel.matmul(x, packed, tiles, tiles, None, 48, 4, 32, 0, simd)
    assert bool(got[1].isnan().all())
    assert torch.equal(got[[0, 2]], clean[[0, 2]])
    assert bool(
        native_kernel.reference_matmul(x, codes, scales, scales, None, 32, 0)[1].isnan().all()
    )
