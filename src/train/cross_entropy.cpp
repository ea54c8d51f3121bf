// Next-token cross-entropy over the vocabulary, forward and backward (declared in train/layers.h).
// With a 151,936-entry vocabulary these passes touch as many values as the LM head's matmuls, so
// the f32 path runs on the vectorised softmax kernels (exp as a polynomial, sums in double); the
// f64 path, used by the gradient checks, stays in plain double arithmetic.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu/softmax_kernels.h"
#include "train/layers.h"
#include "train/softmax_rows.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace {

template <typename Body>
void parallel_rows(int64_t count, Body&& body) {
  thread_pool().parallel_for(static_cast<size_t>(count), 1,
                             [&](size_t begin, size_t end) { body(int64_t(begin), int64_t(end)); });
}

// drow[v] = exp(row[v] − shift) · scale; drow may be row.
void write_probabilities(float* drow, const float* row, int64_t V, double shift, double scale) {
  cpu::active_softmax_kernels().exp_scaled(drow, row, V, float(shift), 1.0f, float(scale));
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
      const TargetRowStats stats = target_row_stats(row, V, targets[n]);
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
      const TargetRowStats stats = target_row_stats(row, V, t);
      const double target_grad = stats.target_probability_minus_one() * scale;
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
