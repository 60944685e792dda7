// Weight-only quantized matmul for CPUs: integer dot products over tiles of 16 rows.
//
// Built at first use by b4t/layers/native_kernel.py (torch.utils.cpp_extension); the
// pure-PyTorch reference of the same arithmetic is native_kernel.reference_matmul.
//
// Weights (repacked once, in Python, by native_kernel.repack_codes):
//   8 bits: uint8 [T, K / 4, 16, 4]: byte (t, j, r, i) = code of row 16 t + r at column
//           4 j + i, stored unsigned (code + 128 for int8 codes);
//   4 bits: uint8 [T, K / 8, 16, 4]: byte (t, j, r, i) holds the code of column 8 j + i
//           in its low nibble and of column 8 j + 4 + i in its high nibble.
//   scales (and mins): float32 or float16 [T, G, 16]; G = K / group_size groups per row
//   (float16 where the checkpoint's scales are: GGUF's, read as they are, fewer bytes).
// A weight's value is (code - zero_code) * scale (+ min when mins are given).
//
// Activations are quantized per block of 32 columns to int8 (absmax scale, round to
// nearest even), as llama.cpp does for its Q8_0 dot products, in `levels` passes: pass 2
// quantizes what pass 1 left (x - dx1 * xq1) the same way, so that x is
// dx1 * xq1 + dx2 * xq2 within half a step of pass 2 (about 1/64516 of the block's
// largest value, against 1/254 for one pass). out[r, n] = sum over blocks b of
//   scale[n, g(b)] * (sum over passes l of dx_l * (sum_k code * xq_l - zero_code * sum_k xq_l))
//   (+ min[n, g(b)] * sum over passes l of dx_l * sum_k xq_l).
// The integer sums are exact; the float sums run block by block in order.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define B4T_HAVE_VNNI 1
#else
#define B4T_HAVE_VNNI 0
#endif

namespace {

constexpr int64_t kTile = 16;   // output rows per tile
constexpr int64_t kBlock = 32;  // activation columns per quantization block

// x [R, K] float -> `levels` passes per row, as virtual rows v = r * levels + l:
// xq int8 [R * levels, K], dx float [R * levels, K/32], sx int32 [R * levels, K/32].
void quantize_rows(const float* x, int64_t rows, int64_t cols, int64_t levels, int8_t* xq,
                   float* dx, int32_t* sx) {
  const int64_t blocks = cols / kBlock;
  float left[kBlock];  // what the passes so far have not represented
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      std::memcpy(left, x + r * cols + b * kBlock, sizeof(left));
      for (int64_t l = 0; l < levels; ++l) {
        const int64_t v = r * levels + l;
        float amax = 0.f;
        bool finite = true;
        for (int64_t i = 0; i < kBlock; ++i) {
          finite = finite && std::isfinite(left[i]);
          amax = std::fmax(amax, std::fabs(left[i]));
        }
        // a NaN or an infinity: the block's scale is NaN, so the row's outputs are NaN
        // (as a float product's would be), not the rounding of a meaningless value
        const float d = finite ? amax / 127.f : std::nanf("");
        const float inv = finite && amax > 0.f ? 127.f / amax : 0.f;
        int32_t sum = 0;
        int8_t* dst = xq + v * cols + b * kBlock;
        for (int64_t i = 0; i < kBlock; ++i) {
          const int32_t q = static_cast<int32_t>(std::nearbyint(left[i] * inv));
          dst[i] = static_cast<int8_t>(q);
          sum += q;
          const float represented = d * static_cast<float>(q);
          left[i] = left[i] - represented;
        }
        dx[v * blocks + b] = d;
        sx[v * blocks + b] = sum;
      }
    }
  }
}

struct Problem {
  const uint8_t* w;
  const void* scales;
  const void* mins;  // nullptr: symmetric
  bool half;         // scales and mins are float16 (else float32)
  const float* bias;  // nullptr: none
  const int8_t* xq;
  const float* dx;
  const int32_t* sx;
  float* out;
  int64_t rows, n, k, bits, group_size, zero_code, levels;  // rows: real rows
  int64_t blocks() const { return k / kBlock; }
  int64_t groups() const { return k / group_size; }
  int64_t tile_bytes() const { return k * kTile * bits / 8; }
  // scale (or min) i of the flat [T, G, 16] array
  float value(const void* base, int64_t i) const {
    return half ? static_cast<float>(static_cast<const c10::Half*>(base)[i])
                : static_cast<const float*>(base)[i];
  }
};

// The float epilogue of one block for one activation row (its passes' integer dots,
// dot[l][lane]) and one tile (16 lanes).
inline void block_epilogue(const Problem& p, int64_t t, int64_t r, int64_t b,
                           const int32_t (*dot)[kTile], float* acc) {
  const int64_t g = b * kBlock / p.group_size;
  const int64_t first = (t * p.groups() + g) * kTile;
  float d[2], ds = 0.f;
  int32_t offset[2];
  for (int64_t l = 0; l < p.levels; ++l) {
    const int64_t at = (r * p.levels + l) * p.blocks() + b;
    d[l] = p.dx[at];
    offset[l] = static_cast<int32_t>(p.zero_code) * p.sx[at];
    ds += d[l] * static_cast<float>(p.sx[at]);
  }
  for (int64_t lane = 0; lane < kTile; ++lane) {
    float term = d[0] * static_cast<float>(dot[0][lane] - offset[0]);
    if (p.levels == 2) term += d[1] * static_cast<float>(dot[1][lane] - offset[1]);
    acc[lane] += p.value(p.scales, first + lane) * term;
  }
  if (p.mins)
    for (int64_t lane = 0; lane < kTile; ++lane) acc[lane] += p.value(p.mins, first + lane) * ds;
}

inline void store_tile(const Problem& p, int64_t t, int64_t r, const float* acc) {
  const int64_t first = t * kTile;
  const int64_t count = std::min(kTile, p.n - first);
  float* dst = p.out + r * p.n + first;
  for (int64_t lane = 0; lane < count; ++lane)
    dst[lane] = acc[lane] + (p.bias ? p.bias[first + lane] : 0.f);
}

// Portable path: plain loops over the same layout.
void tiles_scalar(const Problem& p, int64_t t0, int64_t t1) {
  const int64_t quads_per_block = kBlock / 4;
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* tile = p.w + t * p.tile_bytes();
    for (int64_t r = 0; r < p.rows; ++r) {
      float acc[kTile] = {0.f};
      for (int64_t b = 0; b < p.blocks(); ++b) {
        int32_t dot[2][kTile] = {{0}};
        for (int64_t l = 0; l < p.levels; ++l) {
          const int8_t* xq = p.xq + (r * p.levels + l) * p.k;
          for (int64_t j = 0; j < quads_per_block; ++j) {
            const int64_t col = b * kBlock + 4 * j;  // first of the 4 columns
            if (p.bits == 8) {
              const uint8_t* wq = tile + (col / 4) * kTile * 4;
              for (int64_t lane = 0; lane < kTile; ++lane)
                for (int64_t i = 0; i < 4; ++i) dot[l][lane] += wq[lane * 4 + i] * xq[col + i];
            } else {
              const uint8_t* wq = tile + (col / 8) * kTile * 4;
              const int shift = (col / 4) % 2 ? 4 : 0;  // high nibbles hold columns 4..7
              for (int64_t lane = 0; lane < kTile; ++lane)
                for (int64_t i = 0; i < 4; ++i)
                  dot[l][lane] += ((wq[lane * 4 + i] >> shift) & 0x0F) * xq[col + i];
            }
          }
        }
        block_epilogue(p, t, r, b, dot, acc);
      }
      store_tile(p, t, r, acc);
    }
  }
}

#if B4T_HAVE_VNNI
// The integer dot of one block (32 columns) for RB activation rows, 16 lanes each (two
// accumulators per row: two dependency chains).
template <int RB, int BITS>
inline void block_dots(const uint8_t* wblock, const int32_t* const* x32, int64_t quad0,
                       __m512i* dots) {
  __m512i even[RB], odd[RB];
  for (int r = 0; r < RB; ++r) even[r] = odd[r] = _mm512_setzero_si512();
  if (BITS == 8) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j += 2) {
      const __m512i w0 = _mm512_loadu_si512(wblock + j * 64);
      const __m512i w1 = _mm512_loadu_si512(wblock + (j + 1) * 64);
      for (int r = 0; r < RB; ++r) {
        even[r] = _mm512_dpbusd_epi32(even[r], w0, _mm512_set1_epi32(x32[r][quad0 + j]));
        odd[r] = _mm512_dpbusd_epi32(odd[r], w1, _mm512_set1_epi32(x32[r][quad0 + j + 1]));
      }
    }
  } else {
    const __m512i low = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i w = _mm512_loadu_si512(wblock + j * 64);
      const __m512i lo = _mm512_and_si512(w, low);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
      for (int r = 0; r < RB; ++r) {
        even[r] = _mm512_dpbusd_epi32(even[r], lo, _mm512_set1_epi32(x32[r][quad0 + 2 * j]));
        odd[r] = _mm512_dpbusd_epi32(odd[r], hi, _mm512_set1_epi32(x32[r][quad0 + 2 * j + 1]));
      }
    }
  }
  for (int r = 0; r < RB; ++r) dots[r] = _mm512_add_epi32(even[r], odd[r]);
}

// 16 scales (or mins) from a float32 or float16 array.
template <bool HALF>
inline __m512 load_lanes(const void* base, int64_t first) {
  if (HALF)
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const c10::Half*>(base) + first)));
  return _mm512_loadu_ps(static_cast<const float*>(base) + first);
}

// RB activation rows of `L` passes each (RB * L virtual rows) against tile t.
template <int RB, int BITS, bool HALF, int L>
void tile_rows_vnni(const Problem& p, int64_t t, int64_t r0) {
  constexpr int NV = RB * L;
  const uint8_t* tile = p.w + t * p.tile_bytes();
  const int64_t block_bytes = kBlock * kTile * BITS / 8;
  const int32_t* x32[NV];
  for (int v = 0; v < NV; ++v)
    x32[v] = reinterpret_cast<const int32_t*>(p.xq + (r0 * L + v) * p.k);
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  const int64_t blocks = p.blocks();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i dots[NV];
    block_dots<NV, BITS>(tile + b * block_bytes, x32, b * (kBlock / 4), dots);
    const int64_t g = b * kBlock / p.group_size;
    const int64_t first = (t * p.groups() + g) * kTile;
    const __m512 s = load_lanes<HALF>(p.scales, first);
    const __m512 m = p.mins ? load_lanes<HALF>(p.mins, first) : _mm512_setzero_ps();
    for (int r = 0; r < RB; ++r) {
      __m512 term = _mm512_setzero_ps();
      float ds = 0.f;
      for (int l = 0; l < L; ++l) {
        const int64_t at = ((r0 + r) * L + l) * blocks + b;
        const int32_t sum = p.sx[at];
        const __m512i centred = _mm512_sub_epi32(
            dots[r * L + l], _mm512_set1_epi32(static_cast<int32_t>(p.zero_code) * sum));
        const __m512 part = _mm512_mul_ps(_mm512_set1_ps(p.dx[at]), _mm512_cvtepi32_ps(centred));
        term = l == 0 ? part : _mm512_add_ps(term, part);
        ds += p.dx[at] * static_cast<float>(sum);
      }
      acc[r] = _mm512_fmadd_ps(s, term, acc[r]);
      if (p.mins) acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(ds), acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    float lanes[kTile];
    _mm512_storeu_ps(lanes, acc[r]);
    store_tile(p, t, r0 + r, lanes);
  }
}

template <int BITS, bool HALF, int L>
void tiles_vnni(const Problem& p, int64_t t0, int64_t t1) {
  constexpr int kRows = 4;  // activation rows per pass over a tile
  for (int64_t t = t0; t < t1; ++t) {
    int64_t r = 0;
    for (; r + kRows <= p.rows; r += kRows) tile_rows_vnni<kRows, BITS, HALF, L>(p, t, r);
    switch (p.rows - r) {
      case 3: tile_rows_vnni<3, BITS, HALF, L>(p, t, r); break;
      case 2: tile_rows_vnni<2, BITS, HALF, L>(p, t, r); break;
      case 1: tile_rows_vnni<1, BITS, HALF, L>(p, t, r); break;
      default: break;
    }
  }
}

template <int BITS, bool HALF>
void tiles_vnni_levels(const Problem& p, int64_t t0, int64_t t1) {
  if (p.levels == 2) tiles_vnni<BITS, HALF, 2>(p, t0, t1);
  else tiles_vnni<BITS, HALF, 1>(p, t0, t1);
}
#endif

bool simd_available() { return B4T_HAVE_VNNI; }

at::Tensor quant_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                        const std::optional<at::Tensor>& mins,
                        const std::optional<at::Tensor>& bias, int64_t n, int64_t bits,
                        int64_t group_size, int64_t zero_code, int64_t levels, bool simd) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "quant_matmul: x must be a contiguous float32 [rows, in], got ", x.sizes());
  TORCH_CHECK(bits == 8 || bits == 4, "quant_matmul: bits must be 8 or 4, got ", bits);
  TORCH_CHECK(levels == 1 || levels == 2, "quant_matmul: levels must be 1 or 2, got ", levels);
  const int64_t rows = x.size(0), k = x.size(1);
  const int64_t tiles = (n + kTile - 1) / kTile;
  TORCH_CHECK(k % kBlock == 0 && group_size % kBlock == 0 && k % group_size == 0,
              "quant_matmul: in (", k, ") and group_size (", group_size,
              ") must be multiples of 32, group_size dividing in");
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() &&
                  packed.numel() == tiles * kTile * k * bits / 8,
              "quant_matmul: packed codes must be contiguous uint8 of ",
              tiles * kTile * k * bits / 8, " bytes, got ", packed.numel());
  const int64_t groups = k / group_size;
  const bool half = scales.scalar_type() == at::kHalf;
  TORCH_CHECK((half || scales.scalar_type() == at::kFloat) && scales.is_contiguous() &&
                  scales.numel() == tiles * groups * kTile,
              "quant_matmul: scales must be contiguous float32 or float16 [", tiles, ", ",
              groups, ", 16], got ", scales.scalar_type(), " ", scales.sizes());
  if (mins) {
    TORCH_CHECK(mins->scalar_type() == scales.scalar_type() && mins->is_contiguous() &&
                    mins->numel() == scales.numel(),
                "quant_matmul: mins must be laid out as the scales (same dtype), got ",
                mins->scalar_type(), " ", mins->sizes());
  }
  if (bias) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == n,
                "quant_matmul: bias must be contiguous float32 [", n, "], got ", bias->sizes());
  }
  at::Tensor out = x.new_empty({rows, n});
  if (rows == 0) return out;
  const int64_t blocks = k / kBlock;
  std::vector<int8_t> xq(rows * levels * k);
  std::vector<float> dx(rows * levels * blocks);
  std::vector<int32_t> sx(rows * levels * blocks);
  quantize_rows(x.data_ptr<float>(), rows, k, levels, xq.data(), dx.data(), sx.data());

  Problem p{packed.data_ptr<uint8_t>(),
            scales.data_ptr(),
            mins ? mins->data_ptr() : nullptr,
            half,
            bias ? bias->data_ptr<float>() : nullptr,
            xq.data(),
            dx.data(),
            sx.data(),
            out.data_ptr<float>(),
            rows, n, k, bits, group_size, zero_code, levels};
  // about 64 KiB of weights per task: small layers stay on one thread
  const int64_t grain = std::max<int64_t>(1, (64 << 10) / p.tile_bytes());
  at::parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
#if B4T_HAVE_VNNI
    if (simd) {
      if (bits == 8)
        half ? tiles_vnni_levels<8, true>(p, t0, t1) : tiles_vnni_levels<8, false>(p, t0, t1);
      else
        half ? tiles_vnni_levels<4, true>(p, t0, t1) : tiles_vnni_levels<4, false>(p, t0, t1);
      return;
    }
#endif
    tiles_scalar(p, t0, t1);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(b4t_quant, m) {
  m.def("simd_available() -> bool", simd_available);
  m.def(
      "quant_matmul(Tensor x, Tensor packed, Tensor scales, Tensor? mins, Tensor? bias, int n, "
      "int bits, int group_size, int zero_code, int levels, bool simd) -> Tensor",
      quant_matmul);
}
