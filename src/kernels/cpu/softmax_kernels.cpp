#include "kernels/cpu/softmax_kernels.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "kernels/cpu/isa_kernels.h"

namespace retort::cpu {

namespace {

float scalar_row_max(const float* x, int64_t n) { return *std::max_element(x, x + n); }

double scalar_sum_exp(const float* x, int64_t n, float shift, float in_scale) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += std::exp((double(x[i]) - double(shift)) * in_scale);
  return total;
}

void scalar_exp_scaled(float* out, const float* x, int64_t n, float shift, float in_scale, float out_scale) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(std::exp((double(x[i]) - double(shift)) * in_scale) * out_scale);
}

void scalar_exp_accumulate(float* out, const float* x, int64_t n, float shift, float in_scale, float out_scale) {
  for (int64_t i = 0; i < n; ++i) out[i] += float(std::exp((double(x[i]) - double(shift)) * in_scale) * out_scale);
}

double scalar_sum_exp_times_difference(const float* a, const float* b, int64_t n, float shift, float in_scale) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += std::exp((double(a[i]) - double(shift)) * in_scale) * (double(a[i]) - double(b[i]));
  return total;
}

double scalar_exp_in_place(float* x, int64_t n, float shift) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += (x[i] = float(std::exp(double(x[i]) - double(shift))));
  return total;
}

void scalar_silu_mul(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const SoftmaxKernels& scalar_softmax_kernels() {
  static const SoftmaxKernels kernels{"scalar",          scalar_row_max,         scalar_sum_exp,
                                      scalar_exp_scaled, scalar_exp_accumulate, scalar_sum_exp_times_difference,
                                      scalar_exp_in_place, scalar_silu_mul};
  return kernels;
}

const SoftmaxKernels& softmax_kernels_for(const IsaKernels& kernels) {
  const std::string_view isa = kernels.name;
  if (isa == "avx512")
    if (const SoftmaxKernels* k = avx512_softmax_kernels()) return *k;
  if (isa != "scalar")
    if (const SoftmaxKernels* k = avx2_softmax_kernels()) return *k;
  return scalar_softmax_kernels();
}

const SoftmaxKernels& active_softmax_kernels() {
  static const SoftmaxKernels& chosen = softmax_kernels_for(active_kernels());
  return chosen;
}

}  // namespace retort::cpu
