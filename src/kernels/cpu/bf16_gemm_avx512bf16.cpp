// The bf16 GEMM tile with AVX512-BF16's vdpbf16ps: one instruction multiplies 16 columns × a pair
// of k and adds both products into f32 accumulators. Compiled with -mavx512bf16 in a unit of its
// own, since many AVX-512 CPUs lack the extension.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/bf16_gemm.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

constexpr int64_t kRows = kBf16TileRows, kCols = kBf16TileCols;
static_assert(kCols == 32, "the tile holds two 16-lane vectors per row");

// 8 rows × 2 vectors = 16 accumulators of 32 registers; per pair of k: two B loads, one
// broadcast of each row's A pair, 16 vdpbf16ps.
void avx512bf16_tile(int64_t k_pairs, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[kRows][2];
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t h = 0; h < 2; ++h)
      acc[i][h] = accumulate ? _mm512_loadu_ps(c + i * ldc + 16 * h) : _mm512_setzero_ps();
  for (int64_t p = 0; p < k_pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * kCols * 2);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * kCols * 2 + 32);
    const uint16_t* ap = a + p * kRows * 2;
    for (int64_t i = 0; i < kRows; ++i) {
      int32_t pair;
      std::memcpy(&pair, ap + 2 * i, sizeof pair);
      const __m512bh a_pair = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a_pair, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a_pair, b1);
    }
  }
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t h = 0; h < 2; ++h) _mm512_storeu_ps(c + i * ldc + 16 * h, acc[i][h]);
}

}  // namespace

const Bf16GemmKernel* avx512bf16_gemm_kernel() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512_bf16 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl)) return nullptr;
  static const Bf16GemmKernel kernel{"avx512bf16", avx512bf16_tile};
  return &kernel;
}

}  // namespace retort::cpu
