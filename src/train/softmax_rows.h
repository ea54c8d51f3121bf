#pragma once
// One row of logits against its target, for the cross-entropy of training and distillation's hard
// term: the row's maximum m, the target's term e_t = exp(z_t − m) and every other term's sum,
// Σ_{v≠t} exp(z_v − m), in double. Keeping the target out of the sum lets 1 − p_t = others / (others
// + e_t) be computed without cancellation when the model is confident (p_t → 1), where p_t − 1 in
// any precision would round to 0. f32 rows use the vectorised kernels, f64 rows plain arithmetic.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/softmax_kernels.h"

namespace retort::train {

struct TargetRowStats {
  double max = 0;
  double target_term = 0;
  double others = 0;
  double sum() const { return others + target_term; }
  double log_sum() const { return std::log(sum()); }
  // −log p_t: log1p(others / e_t) keeps its digits when the loss is tiny.
  double loss(double target_logit) const {
    const double shifted = target_logit - max;
    return shifted > -30 ? std::log1p(others / target_term) : log_sum() - shifted;
  }
  double target_probability_minus_one() const { return -others / sum(); }
};

inline TargetRowStats target_row_stats(const float* row, int64_t V, int32_t t) {
  const auto& k = cpu::active_softmax_kernels();
  const float max = k.row_max(row, V);
  const double others = k.sum_exp(row, t, max, 1.0f) + k.sum_exp(row + t + 1, V - t - 1, max, 1.0f);
  return {max, std::exp(double(row[t]) - double(max)), others};
}

inline TargetRowStats target_row_stats(const double* row, int64_t V, int32_t t) {
  const double max = *std::max_element(row, row + V);
  double others = 0;
  for (int64_t v = 0; v < V; ++v)
    if (v != t) others += std::exp(row[v] - max);
  return {max, std::exp(row[t] - max), others};
}

}  // namespace retort::train
