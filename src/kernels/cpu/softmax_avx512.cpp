// AVX-512 instantiation of the softmax passes (softmax_simd.inc); compiled with -mavx512f/dq.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/softmax_kernels.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct Avx512Softmax {
  using reg = __m512;
  using dreg = __m512d;
  static constexpr int width = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg broadcast(float a) { return _mm512_set1_ps(a); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg negative_abs(reg a) { return _mm512_or_ps(a, _mm512_set1_ps(-0.0f)); }
  // where x ≥ 0: a, else b
  static reg select_nonnegative(reg x, reg a, reg b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
  }
  static reg floor(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static reg pow2(reg n) {
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(bits);
  }
  static reg zero_below(reg v, reg x, float limit) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(limit), _CMP_NLT_UQ), v);
  }
  static float reduce_max(reg v) { return _mm512_reduce_max_ps(v); }
  static dreg dzero() { return _mm512_setzero_pd(); }
  static void accumulate(dreg& acc, reg v) {
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  static double reduce_double(dreg v) { return _mm512_reduce_add_pd(v); }
};

#include "kernels/cpu/softmax_simd.inc"

}  // namespace

const SoftmaxKernels* avx512_softmax_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512f && cpu.avx512dq && cpu.fma)) return nullptr;
  static const SoftmaxKernels kernels = make_softmax_kernels<Avx512Softmax>("avx512");
  return &kernels;
}

}  // namespace retort::cpu
