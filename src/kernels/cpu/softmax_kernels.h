#pragma once
// The passes of a softmax over a long row (a 151,936-entry vocabulary in training's cross-entropy
// and in distillation's soft labels): the maximum, sums of exponentials accumulated in double, and
// scaled exponentials written or added out. exp is a vectorised polynomial accurate to a few
// f32 ulps (std::exp per element made the loss cost as much as the LM head's matmuls).
#include <cstdint>

namespace retort::cpu {

// Every exp is of (x − shift) · in_scale with x ≤ shift and in_scale > 0 (in_scale = 1/T applies a
// softmax temperature), so the argument is ≤ 0; sums are accumulated in double.
struct SoftmaxKernels {
  const char* name;
  float (*row_max)(const float* x, int64_t n);  // n ≥ 1
  // Σ exp((x[i] − shift) · in_scale)
  double (*sum_exp)(const float* x, int64_t n, float shift, float in_scale);
  // out[i] = out_scale · exp((x[i] − shift) · in_scale); out may be x
  void (*exp_scaled)(float* out, const float* x, int64_t n, float shift, float in_scale, float out_scale);
  // out[i] += out_scale · exp((x[i] − shift) · in_scale)
  void (*exp_accumulate)(float* out, const float* x, int64_t n, float shift, float in_scale, float out_scale);
  // Σ exp((a[i] − shift) · in_scale) · (a[i] − b[i]): the cross term of a KL divergence
  double (*sum_exp_times_difference)(const float* a, const float* b, int64_t n, float shift, float in_scale);
  // x[i] = exp(x[i] − shift), returning Σ of the values written (attention's unnormalised weights)
  double (*exp_in_place)(float* x, int64_t n, float shift);
  // out[i] = silu(gate[i]) · up[i] (the SwiGLU MLP's product, on the same exp); out may be gate
  void (*silu_mul)(float* out, const float* gate, const float* up, int64_t n);
};

const SoftmaxKernels& scalar_softmax_kernels();
const SoftmaxKernels* avx2_softmax_kernels();    // nullptr when the CPU lacks AVX2+FMA
const SoftmaxKernels* avx512_softmax_kernels();  // nullptr when the CPU lacks AVX-512 F/DQ
struct IsaKernels;
// The set of the same instruction set as `kernels`.
const SoftmaxKernels& softmax_kernels_for(const IsaKernels& kernels);
// The set matching active_kernels() (RETORT_ISA forces it the same way).
const SoftmaxKernels& active_softmax_kernels();

}  // namespace retort::cpu
