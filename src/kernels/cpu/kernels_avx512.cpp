// AVX-512 (F/BW/VL) instantiation of the SIMD loops; compiled with -mavx512f -mavx512bw -mavx512vl.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "tensor/dtype.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int width = 16;
  static constexpr int kTileRows = 4;  // 4 rows × 6 tokens = 24 accumulators of 32 registers
  // 6 heads × 4 positions = 24 accumulators: the 6 query heads of a Qwen2 1.5B KV head (7B: 7,
  // Llama 8B: 4) read each converted key vector once.
  static constexpr int kScoreHeads = 6;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg load_bf16(const uint16_t* p) {
    __m512i widened = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(widened, 16));
  }
  static reg load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void store_f16(uint16_t* p, reg v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static reg load_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static reg load_q8(const int8_t* p, float scale) { return _mm512_mul_ps(load_i8(p), _mm512_set1_ps(scale)); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg broadcast(float a) { return _mm512_set1_ps(a); }
  static float reduce(reg v) { return _mm512_reduce_add_ps(v); }
  static __m256 fold(reg v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)); }
  static __m128 reduce4(reg a, reg b, reg c, reg d) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)), _mm256_hadd_ps(fold(c), fold(d)));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
  }
};

#include "kernels/cpu/kernels_simd.inc"

}  // namespace

const IsaKernels* avx512_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq && cpu.fma)) return nullptr;
  static const IsaKernels kernels = make_kernels<Avx512>("avx512");
  return &kernels;
}

}  // namespace retort::cpu
