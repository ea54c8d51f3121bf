// AVX2 + FMA + F16C instantiation of the SIMD loops; compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/weight_repack.h"
#include "tensor/dtype.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int width = 8;
  static constexpr int kTileRows = 2;  // 2 rows × 6 tokens = 12 accumulators of 16 registers
  static constexpr int kScoreHeads = 2;  // 2 heads × 4 positions = 8 accumulators
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg load_bf16(const uint16_t* p) {
    __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
  static reg load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void store_f16(uint16_t* p, reg v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static reg load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static reg load_q8(const int8_t* p, float scale) { return _mm256_mul_ps(load_i8(p), _mm256_set1_ps(scale)); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg broadcast(float a) { return _mm256_set1_ps(a); }
  static float reduce(reg v) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    return _mm_cvtss_f32(sum);
  }
  static __m128 reduce4(reg a, reg b, reg c, reg d) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));  // per 128-bit half
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
  }
};

#include "kernels/cpu/kernels_simd.inc"

struct Avx2IntegerDot {
  static constexpr int kTileRows = 2;  // 2 rows × 4 tokens of accumulators, of 16 registers
  static constexpr bool kWholeBytes = false;  // 255 · 127 · 2 would saturate maddubs's int16 pair sums
  // u8·s8 pairs summed to int16 (no saturation: the activations stay within ±127 and the weights
  // are either |q8| ≤ 128 or 4-bit), then pairs of int16 to int32.
  static __m256i dot(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
  // 4-bit weights: up to 8 of these add up in int16 lanes (8 · 2 · 15 · 127 < 2^15), so the
  // widening to int32 comes once per 8 instead of once per product (interleaved_matmul.inc).
  static __m256i nibble_dot(__m256i acc16, __m256i u, __m256i s) {
    return _mm256_add_epi16(acc16, _mm256_maddubs_epi16(u, s));
  }
  static __m256i nibble_total(__m256i acc16) { return _mm256_madd_epi16(acc16, _mm256_set1_epi16(1)); }
};

#include "kernels/cpu/quant_matmul.inc"

}  // namespace

const IsaKernels* avx2_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx2 && cpu.fma && cpu.f16c)) return nullptr;
  static const IsaKernels kernels = make_kernels<Avx2>("avx2");
  return &kernels;
}

const IntegerDotKernels* avx2_integer_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx2 && cpu.fma && cpu.f16c)) return nullptr;
  static const IntegerDotKernels kernels = make_integer_kernels<Avx2IntegerDot>("avx2");
  return &kernels;
}

}  // namespace retort::cpu
