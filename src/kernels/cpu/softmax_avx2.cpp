// AVX2+FMA instantiation of the softmax passes (softmax_simd.inc).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/softmax_kernels.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct Avx2Softmax {
  using reg = __m256;
  using dreg = __m256d;
  static constexpr int width = 8;
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg broadcast(float a) { return _mm256_set1_ps(a); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg negative_abs(reg a) { return _mm256_or_ps(a, _mm256_set1_ps(-0.0f)); }
  // where x ≥ 0: a, else b
  static reg select_nonnegative(reg x, reg a, reg b) {
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
  }
  static reg floor(reg a) { return _mm256_floor_ps(a); }
  static reg pow2(reg n) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(bits);
  }
  static reg zero_below(reg v, reg x, float limit) {
    return _mm256_and_ps(v, _mm256_cmp_ps(x, _mm256_set1_ps(limit), _CMP_NLT_UQ));
  }
  static float reduce_max(reg v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static dreg dzero() { return _mm256_setzero_pd(); }
  static void accumulate(dreg& acc, reg v) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static double reduce_double(dreg v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

#include "kernels/cpu/softmax_simd.inc"

}  // namespace

const SoftmaxKernels* avx2_softmax_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx2 && cpu.fma)) return nullptr;
  static const SoftmaxKernels kernels = make_softmax_kernels<Avx2Softmax>("avx2");
  return &kernels;
}

}  // namespace retort::cpu
