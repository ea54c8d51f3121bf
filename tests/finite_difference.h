#pragma once
// f64 helpers shared by the backward-pass tests (training layers, KD losses, distillation):
// random vectors and the relative error of an analytic gradient against central differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace retort::test {

using Vec = std::vector<double>;

inline Vec random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

// ‖analytic − numeric‖ / ‖numeric‖, the numeric gradient of loss() with respect to x by central
// differences of step h (x is restored after each probe).
inline double gradient_error(Vec& x, const Vec& analytic, const std::function<double()>& loss, double h = 1e-5) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2 * h);
    diff += (analytic[i] - numeric) * (analytic[i] - numeric);
    norm += numeric * numeric;
  }
  EXPECT_GT(norm, 0.0) << "the gradient is identically zero: the check would prove nothing";
  return std::sqrt(diff / norm);
}

}  // namespace retort::test
