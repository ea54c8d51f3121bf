// The bf16 GEMM tile for AVX2 + FMA CPUs (and AVX-512 ones without the BF16 extension): each
// packed pair of bf16 is widened to two f32 vectors and multiplied with FMAs.
#include <immintrin.h>

#include "kernels/cpu/bf16_gemm.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

constexpr int64_t kRows = kBf16TileRows, kCols = kBf16TileCols;

// Eight columns of the tile at a time: 8 rows × 1 vector of accumulators, with the even-k and
// odd-k halves of the packed B pairs split by shifting (bf16 is the upper half of an f32).
void avx2_tile(int64_t k_pairs, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc, bool accumulate) {
  const __m256i high_half = _mm256_set1_epi32(int(0xffff0000u));
  for (int64_t j = 0; j < kCols; j += 8) {
    __m256 acc[kRows];
    for (int64_t i = 0; i < kRows; ++i) acc[i] = accumulate ? _mm256_loadu_ps(c + i * ldc + j) : _mm256_setzero_ps();
    for (int64_t p = 0; p < k_pairs; ++p) {
      const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + p * kCols * 2 + 2 * j));
      const __m256 b_even = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
      const __m256 b_odd = _mm256_castsi256_ps(_mm256_and_si256(pairs, high_half));
      const uint16_t* ap = a + p * kRows * 2;
      for (int64_t i = 0; i < kRows; ++i) {
        const __m256 a_even = _mm256_castsi256_ps(_mm256_set1_epi32(int(uint32_t(ap[2 * i]) << 16)));
        const __m256 a_odd = _mm256_castsi256_ps(_mm256_set1_epi32(int(uint32_t(ap[2 * i + 1]) << 16)));
        acc[i] = _mm256_fmadd_ps(a_odd, b_odd, _mm256_fmadd_ps(a_even, b_even, acc[i]));
      }
    }
    for (int64_t i = 0; i < kRows; ++i) _mm256_storeu_ps(c + i * ldc + j, acc[i]);
  }
}

}  // namespace

const Bf16GemmKernel* avx2_bf16_gemm_kernel() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx2 && cpu.fma)) return nullptr;
  static const Bf16GemmKernel kernel{"avx2", avx2_tile};
  return &kernel;
}

}  // namespace retort::cpu
