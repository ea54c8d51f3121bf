// Inference matmuls of bf16 weights with AVX512-BF16's vdpbf16ps: one instruction multiplies 32
// bf16 values of a weight row by 32 of a token's activations and adds them, in pairs, into 16 f32
// lanes. That pairing of consecutive k is exactly the file's row layout, so the weights are read
// as stored, and twice the multiply-adds of an f32 FMA go through per instruction with no
// bf16 → f32 conversion of the weights. The activations are rounded to bf16 once per input
// (llama.cpp does the same for bf16 files); the cost of that rounding is measured against f32 in
// docs/performance.md. Compiled with -mavx512bf16 in a unit of its own.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/isa_kernels.h"
#include "tensor/dtype.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

constexpr int64_t kPairsWidth = 32;  // bf16 values per vector

__m512bh load_bf16(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
// The last, partial vector of a row: the lanes past its end read as zero (and are not touched in memory).
__m512bh load_bf16_tail(const uint16_t* p, __mmask32 mask) { return (__m512bh)_mm512_maskz_loadu_epi16(mask, p); }

__m256 fold_halves(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// The four vectors' lane sums as one __m128 {Σa, Σb, Σc, Σd}: 13 instructions instead of 4 full reductions.
__m128 reduce_four(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m256 ab = _mm256_hadd_ps(fold_halves(a), fold_halves(b));
  const __m256 cd = _mm256_hadd_ps(fold_halves(c), fold_halves(d));
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit half: Σa Σb Σc Σd of that half's lanes
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// R weight rows × T tokens of dot products, the accumulators in registers: per 32 columns, R
// weight loads and T activation loads feed R·T vdpbf16ps.
template <int R, int T>
void bf16_tile(float* out, int64_t out_stride, const uint16_t* in, const uint16_t* weights, int64_t cols,
               int64_t row) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint16_t* w = weights + row * cols;
  int64_t k = 0;
  for (; k + kPairsWidth <= cols; k += kPairsWidth) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_bf16(w + r * cols + k);
    for (int t = 0; t < T; ++t) {
      const __m512bh x = load_bf16(in + t * cols + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], x);
    }
  }
  if (k < cols) {
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (cols - k)) - 1);
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_bf16_tail(w + r * cols + k, mask);
    for (int t = 0; t < T; ++t) {
      const __m512bh x = load_bf16_tail(in + t * cols + k, mask);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], x);
    }
  }
  for (int t = 0; t < T; ++t) {
    float* dst = out + t * out_stride + row;
    int r = 0;
    for (; r + 4 <= R; r += 4)
      _mm_storeu_ps(dst + r, reduce_four(acc[r][t], acc[r + 1][t], acc[r + 2][t], acc[r + 3][t]));
    for (; r < R; ++r) dst[r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

// Prefill tiles: 4 rows × up to 6 tokens = 24 accumulators of the 32 registers.
constexpr int kTileRows = 4;
constexpr int64_t kTileTokens = 6;

template <int R>
void bf16_tile_for_tokens(float* out, int64_t os, const uint16_t* in, const uint16_t* w, int64_t cols, int64_t row,
                          int64_t tokens) {
  switch (tokens) {
    case 1: bf16_tile<R, 1>(out, os, in, w, cols, row); break;
    case 2: bf16_tile<R, 2>(out, os, in, w, cols, row); break;
    case 3: bf16_tile<R, 3>(out, os, in, w, cols, row); break;
    case 4: bf16_tile<R, 4>(out, os, in, w, cols, row); break;
    case 5: bf16_tile<R, 5>(out, os, in, w, cols, row); break;
    default: bf16_tile<R, 6>(out, os, in, w, cols, row); break;
  }
}

// out[t · out_stride + r] for rows [row_begin, row_end) and every token; rows in L2-sized bands
// that every group of 6 tokens passes over, so a prefill reads each weight from memory once.
void bf16_matmul(float* out, int64_t out_stride, const uint16_t* in, int64_t tokens, const void* weight_bytes,
                 int64_t cols, int64_t row_begin, int64_t row_end) {
  const auto* weights = static_cast<const uint16_t*>(weight_bytes);
  if (tokens == 1) {  // decode: 8 rows per tile keeps 8 weight streams in flight
    int64_t row = row_begin;
    for (; row + 8 <= row_end; row += 8) bf16_tile<8, 1>(out, out_stride, in, weights, cols, row);
    for (; row + 4 <= row_end; row += 4) bf16_tile<4, 1>(out, out_stride, in, weights, cols, row);
    for (; row < row_end; ++row) bf16_tile<1, 1>(out, out_stride, in, weights, cols, row);
    return;
  }
  constexpr int64_t kBandBytes = 256 * 1024;
  const int64_t band_rows = std::max<int64_t>(kTileRows, kBandBytes / std::max<int64_t>(2 * cols, 1) / kTileRows * kTileRows);
  for (int64_t band = row_begin; band < row_end; band += band_rows) {
    const int64_t band_end = std::min(row_end, band + band_rows);
    for (int64_t t0 = 0; t0 < tokens; t0 += kTileTokens) {
      const int64_t tile_tokens = std::min(kTileTokens, tokens - t0);
      float* out_t = out + t0 * out_stride;
      const uint16_t* in_t = in + t0 * cols;
      int64_t row = band;
      for (; row + kTileRows <= band_end; row += kTileRows)
        bf16_tile_for_tokens<kTileRows>(out_t, out_stride, in_t, weights, cols, row, tile_tokens);
      for (; row < band_end; ++row) bf16_tile_for_tokens<1>(out_t, out_stride, in_t, weights, cols, row, tile_tokens);
    }
  }
}

// f32 → bf16, round to nearest even, 32 values per instruction (the same bits as f32_to_bf16 for
// every normal value; vcvtne2ps2bf16 flushes subnormals to zero).
void round_to_bf16(uint16_t* out, const float* in, int64_t n) {
  int64_t i = 0;
  for (; i + kPairsWidth <= n; i += kPairsWidth) {
    const __m512bh pairs = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
    _mm512_storeu_si512(out + i, (__m512i)pairs);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}

}  // namespace

const Bf16DotKernels* avx512bf16_dot_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512_bf16 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl)) return nullptr;
  static const Bf16DotKernels kernels{"avx512bf16", round_to_bf16, bf16_matmul};
  return &kernels;
}

}  // namespace retort::cpu
