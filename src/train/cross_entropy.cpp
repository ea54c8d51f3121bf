// Next-token cross-entropy over the vocabulary, forward and backward (declared in train/layers.h).
// With a 151,936-entry vocabulary these passes touch as many values as the LM head's matmuls, so
// the f32 path runs on the vectorised softmax kernels (exp as a polynomial, sums in double); the
// f64 path, used by the gradient checks, stays in plain double arithmetic.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu/softmax_kernels.h"
#include "train/layers.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace {

template <typename Body>
void parallel_rows(int64_t count, Body&& body) {
  thread_pool().parallel_for(static_cast<size_t>(count), 1,
                             [&](size_t begin, size_t end) { body(int64_t(begin), int64_t(end)); });
}

// What the loss and its gradient need from one row: its maximum m, the target's term
// e_t = exp(z_t − m) and the sum of every other term, Σ_{v≠t} exp(z_v − m), in double. Keeping the
// target out of the sum lets 1 − p_t = others / (others + e_t) be computed without cancellation
// when the model is confident (p_t → 1), where p_t − 1 in any precision would round to 0.
struct RowStats {
  double max = 0;
  double target_term = 0;
  double others = 0;
  double log_sum() const { return std::log(others + target_term); }
  // −log p_t: log1p(others / e_t) keeps its digits when the loss is tiny.
  double loss(double target_logit) const {
    const double shifted = target_logit - max;
    return shifted > -30 ? std::log1p(others / target_term) : log_sum() - shifted;
  }
};

RowStats row_stats(const float* row, int64_t V, int32_t t) {
  const auto& k = cpu::active_softmax_kernels();
  const float max = k.row_max(row, V);
  const double others = k.sum_exp(row, t, max) + k.sum_exp(row + t + 1, V - t - 1, max);
  return {max, std::exp(double(row[t]) - double(max)), others};
}

RowStats row_stats(const double* row, int64_t V, int32_t t) {
  const double max = *std::max_element(row, row + V);
  double others = 0;
  for (int64_t v = 0; v < V; ++v)
    if (v != t) others += std::exp(row[v] - max);
  return {max, std::exp(row[t] - max), others};
}

// drow[v] = exp(row[v] − shift) · scale; drow may be row.
void write_probabilities(float* drow, const float* row, int64_t V, double shift, double scale) {
  cpu::active_softmax_kernels().exp_scaled(drow, row, V, float(shift), float(scale));
}

void write_probabilities(double* drow, const double* row, int64_t V, double shift, double scale) {
  for (int64_t v = 0; v < V; ++v) drow[v] = std::exp(row[v] - shift) * scale;
}

}  // namespace

template <typename T>
int64_t cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int64_t N, int64_t V) {
  parallel_rows(N, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      if (targets[n] < 0) {
        losses[n] = 0;
        continue;
      }
      const T* row = logits + n * V;
      const RowStats stats = row_stats(row, V, targets[n]);
      losses[n] = T(stats.loss(double(row[targets[n]])));
    }
  });
  int64_t counted = 0;
  for (int64_t n = 0; n < N; ++n) counted += targets[n] >= 0 ? 1 : 0;
  return counted;
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                            double scale) {
  parallel_rows(N, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* row = logits + n * V;
      T* drow = dlogits + n * V;
      if (targets[n] < 0) {
        std::fill_n(drow, V, T(0));
        continue;
      }
      const int32_t t = targets[n];
      const RowStats stats = row_stats(row, V, t);
      const double target_grad = -stats.others / (stats.others + stats.target_term) * scale;  // p_t − 1
      write_probabilities(drow, row, V, stats.max + stats.log_sum(), scale);
      drow[t] = T(target_grad);
    }
  });
}

template int64_t cross_entropy_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template int64_t cross_entropy_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template void cross_entropy_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t, double);
template void cross_entropy_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t, double);

}  // namespace retort::train
