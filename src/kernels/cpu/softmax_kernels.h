#pragma once
// The three passes of a softmax over a long row (a 151,936-entry vocabulary in training's
// cross-entropy and in distillation's soft labels): the maximum, Σ exp(x − shift) accumulated in
// double, and exp(x − shift) · scale written out. exp is a vectorised polynomial accurate to a few
// f32 ulps (std::exp per element made the loss cost as much as the LM head's matmuls).
#include <cstdint>

namespace retort::cpu {

struct SoftmaxKernels {
  const char* name;
  float (*row_max)(const float* x, int64_t n);                       // n ≥ 1
  double (*sum_exp)(const float* x, int64_t n, float shift);        // Σ exp(x[i] − shift)
  void (*exp_scaled)(float* out, const float* x, int64_t n, float shift, float scale);  // may alias
};

const SoftmaxKernels& scalar_softmax_kernels();
const SoftmaxKernels* avx2_softmax_kernels();    // nullptr when the CPU lacks AVX2+FMA
const SoftmaxKernels* avx512_softmax_kernels();  // nullptr when the CPU lacks AVX-512 F/DQ
// The set matching active_kernels() (RETORT_ISA forces it the same way).
const SoftmaxKernels& active_softmax_kernels();

}  // namespace retort::cpu
