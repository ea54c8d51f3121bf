// The softmax passes behind training's cross-entropy, for every instruction set this CPU runs,
// against plain double arithmetic on awkward row lengths and value ranges.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/softmax_kernels.h"
#include "train/layers.h"

namespace retort {
namespace {

std::vector<const cpu::SoftmaxKernels*> available_sets() {
  std::vector<const cpu::SoftmaxKernels*> sets{&cpu::scalar_softmax_kernels()};
  if (auto* k = cpu::avx2_softmax_kernels()) sets.push_back(k);
  if (auto* k = cpu::avx512_softmax_kernels()) sets.push_back(k);
  return sets;
}

std::vector<float> random_row(int64_t n, float low, float high, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(low, high);
  std::vector<float> row(static_cast<size_t>(n));
  for (float& x : row) x = value(rng);
  return row;
}

TEST(SoftmaxKernels, MatchDoubleOnAwkwardLengthsAndRanges) {
  for (const auto* k : available_sets()) {
    SCOPED_TRACE(k->name);
    uint32_t seed = 1;
    for (int64_t n : {1, 7, 8, 15, 16, 17, 31, 33, 100, 1023, 151936}) {
      // A wide range reaches the underflow cut-off at −87.3; a narrow one keeps every term.
      for (auto [low, high] : {std::pair{-3.0f, 3.0f}, std::pair{-120.0f, 25.0f}}) {
        SCOPED_TRACE(testing::Message() << "n " << n << " range " << low << ".." << high);
        const std::vector<float> row = random_row(n, low, high, seed++);
        const float max = k->row_max(row.data(), n);
        EXPECT_EQ(max, *std::max_element(row.begin(), row.end()));
        for (float in_scale : {1.0f, 0.5f}) {  // 0.5: a softmax at temperature 2
          double want_sum = 0;
          for (float x : row) want_sum += std::exp((double(x) - double(max)) * in_scale);
          EXPECT_NEAR(k->sum_exp(row.data(), n, max, in_scale), want_sum, 1e-6 * want_sum);
        }
        const float shift = max + 0.75f, in_scale = 0.5f, scale = 0.125f;
        auto want = [&](int64_t i) { return std::exp((double(row[i]) - double(shift)) * in_scale) * scale; };
        std::vector<float> out(row.size()), sum(row.size(), 1.0f);
        k->exp_scaled(out.data(), row.data(), n, shift, in_scale, scale);
        k->exp_accumulate(sum.data(), row.data(), n, shift, in_scale, scale);
        for (int64_t i = 0; i < n; ++i) {
          if ((double(row[i]) - shift) * in_scale < -87.3) {
            EXPECT_LE(out[i], 1e-37) << i;  // below f32's normal range: flushed to 0
          } else {
            // The argument itself is an f32: |arg| · 2^-23 of relative error carries into exp.
            const double argument = std::abs((double(row[i]) - shift) * in_scale);
            ASSERT_NEAR(out[i], want(i), (1e-6 + 1.2e-7 * argument) * want(i) + 1e-38) << "element " << i << " of " << n;
          }
          ASSERT_NEAR(sum[i], 1.0 + want(i), 1e-6) << "element " << i << " of " << n;
        }
        const std::vector<float> other = random_row(n, low, high, seed++);
        double want_cross = 0, magnitude = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double e = std::exp((double(row[i]) - double(max)) * in_scale);
          want_cross += e * (double(row[i]) - double(other[i]));
          magnitude += e * std::abs(double(row[i]) - double(other[i]));
        }
        EXPECT_NEAR(k->sum_exp_times_difference(row.data(), other.data(), n, max, in_scale), want_cross,
                    1e-6 * magnitude + 1e-30);
      }
    }
  }
}

TEST(SoftmaxKernels, InPlaceAndNaNPropagates) {
  for (const auto* k : available_sets()) {
    SCOPED_TRACE(k->name);
    std::vector<float> row = random_row(37, -5, 5, 9);
    const std::vector<float> copy = row;
    k->exp_scaled(row.data(), row.data(), 37, 5.0f, 1.0f, 2.0f);
    for (size_t i = 0; i < row.size(); ++i) EXPECT_NEAR(row[i], 2.0 * std::exp(double(copy[i]) - 5.0), 1e-6);
    std::vector<float> bad = random_row(40, -5, 0, 10);
    bad[21] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(k->sum_exp(bad.data(), 40, 0.0f, 1.0f))) << "a NaN logit must not vanish from the loss";
  }
}

// The f32 cross-entropy (on the vectorised kernels) against the f64 one on the same logits.
TEST(SoftmaxKernels, CrossEntropyF32MatchesF64) {
  const int64_t N = 5, V = 1237;
  std::vector<float> logits = random_row(N * V, -12, 12, 3);
  logits[2 * V + 17] = 60;  // a confident row: p ≈ 1 at its target
  std::vector<double> logits64(logits.begin(), logits.end());
  const std::vector<int32_t> targets{3, 1236, 17, -1, 0};
  std::vector<float> loss(N);
  std::vector<double> loss64(N);
  EXPECT_EQ(train::cross_entropy_forward(loss.data(), logits.data(), targets.data(), N, V), 4);
  train::cross_entropy_forward(loss64.data(), logits64.data(), targets.data(), N, V);
  for (int64_t n = 0; n < N; ++n) EXPECT_NEAR(loss[n], loss64[n], 1e-5 * std::max(1.0, loss64[n])) << n;

  std::vector<float> grad(logits.size());
  std::vector<double> grad64(logits.size());
  train::cross_entropy_backward(grad.data(), logits.data(), targets.data(), N, V, 0.25);
  train::cross_entropy_backward(grad64.data(), logits64.data(), targets.data(), N, V, 0.25);
  for (size_t i = 0; i < grad.size(); ++i)
    ASSERT_NEAR(grad[i], grad64[i], 2e-6 * std::abs(grad64[i]) + 1e-12) << "element " << i;
  // The confident row's target: p − 1 is tiny and must not be lost to cancellation.
  EXPECT_LT(grad[2 * V + 17], 0.0f);
  EXPECT_NEAR(grad[2 * V + 17], grad64[2 * V + 17], 1e-3 * std::abs(grad64[2 * V + 17]));
}

}  // namespace
}  // namespace retort
