// The k-quant scale search (tensor/scale_search.h): every vector width gives the same fits, bit
// for bit, and the fit it keeps is as good, in f64, as the best candidate of a plain f64 search
// written from the description (grids of 15 ± 0.1·k or 32 ± 0.1·k levels, least-squares refit,
// squared error after re-rounding). The reference puts values on a candidate grid with the same
// f32 product as the quantizer: that rounding defines the candidate (a value a hair from a level
// boundary lands on one side or the other), everything after it is f64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/quant_k.h"
#include "tensor/scale_search.h"

namespace retort::quant_detail {
namespace {

constexpr SearchWidth kWidths[] = {SearchWidth::Lanes4, SearchWidth::Lanes8, SearchWidth::Lanes16};

// Super-blocks of awkward sub-blocks: normal, heavy-tailed, all positive, all negative, one
// outlier, constant, zero, tiny, huge.
std::vector<float> awkward_values(int blocks, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.5f);
  std::vector<float> values(static_cast<size_t>(blocks) * kSuperBlockElements);
  for (size_t start = 0; start < values.size(); start += 16) {
    const int kind = static_cast<int>(rng() % 9);
    const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 30);
    for (size_t i = start; i < start + 16; ++i) {
      float v = normal(rng);
      if (kind == 1) v = heavy(rng);
      if (kind == 2) v = std::fabs(v) + 0.5f;
      if (kind == 3) v = -std::fabs(v) - 0.5f;
      if (kind == 4) v = i == start + 3 ? 40.0f : 0.01f * v;
      if (kind == 5) v = 0.75f;
      if (kind == 6) v = 0.0f;
      values[i] = v * (kind == 7 ? 1e-7f : kind == 8 ? 1e15f : scale);
    }
  }
  return values;
}

TEST(ScaleSearch, EveryVectorWidthGivesTheSameFits) {
  const std::vector<float> values = awkward_values(400, 3);
  for (SearchWidth width : kWidths) {
    if (!search_width_supported(width)) {
      std::printf("search width %d not supported by this CPU: not compared\n", static_cast<int>(width));
      continue;
    }
    for (size_t block = 0; block < values.size(); block += kSuperBlockElements) {
      AffineFit expected[kQ4KSubBlocks], got[kQ4KSubBlocks];
      fit_q4_k_sub_blocks(&values[block], expected, SearchWidth::Lanes4);
      fit_q4_k_sub_blocks(&values[block], got, width);
      ASSERT_EQ(std::memcmp(expected, got, sizeof got), 0) << "q4_k block " << block / kSuperBlockElements;
      float expected_scales[kQ6KSubBlocks], got_scales[kQ6KSubBlocks];
      fit_q6_k_sub_blocks(&values[block], expected_scales, SearchWidth::Lanes4);
      fit_q6_k_sub_blocks(&values[block], got_scales, width);
      ASSERT_EQ(std::memcmp(expected_scales, got_scales, sizeof got_scales), 0) << "q6_k block " << block / kSuperBlockElements;
    }
  }
}

// ---- the f64 reference ------------------------------------------------------------------------

double affine_error(const float* x, int n, double scale, double min) {
  double error = 0.0;
  for (int i = 0; i < n; ++i) {
    const double level = scale > 0.0 ? std::clamp(std::nearbyint((x[i] + min) / scale), 0.0, 15.0) : 0.0;
    error += std::pow(scale * level - min - x[i], 2);
  }
  return error;
}

// The least error of the plain grid and the 21 refitted ones.
double best_affine_error(const float* x, int n) {
  double lowest = 0.0, highest = x[0];
  for (int i = 0; i < n; ++i) lowest = std::min<double>(lowest, x[i]), highest = std::max<double>(highest, x[i]);
  if (highest <= lowest) return 0.0;
  double best = affine_error(x, n, (highest - lowest) / 15.0, -lowest);
  for (int step = -10; step <= 10; ++step) {
    const float inverse_step = (15.0f + 0.1f * step) / static_cast<float>(highest - lowest);
    double sl = 0, sll = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      const double level = std::clamp(std::nearbyint((x[i] - static_cast<float>(lowest)) * inverse_step), 0.0f, 15.0f);
      sl += level, sll += level * level, sx += x[i], slx += level * x[i];
    }
    const double determinant = n * sll - sl * sl;
    if (determinant <= 0.0) continue;
    double scale = (n * slx - sl * sx) / determinant, offset = (sll * sx - sl * slx) / determinant;
    if (offset > 0.0) offset = 0.0, scale = slx / sll;
    if (scale > 0.0) best = std::min(best, affine_error(x, n, scale, -offset));
  }
  return best;
}

double symmetric_error(const float* x, int n, double scale) {
  double error = 0.0;
  for (int i = 0; i < n; ++i) {
    const double level = std::clamp(std::nearbyint(x[i] / scale), -32.0, 31.0);
    error += std::pow(scale * level - x[i], 2);
  }
  return error;
}

double best_symmetric_error(const float* x, int n) {
  double extreme = 0.0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
  if (extreme == 0.0) return 0.0;
  double best = symmetric_error(x, n, extreme / -32.0);
  for (int step = -10; step <= 10; ++step) {
    const float inverse_step = -(32.0f + 0.1f * step) / static_cast<float>(extreme);
    double sll = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      const double level = std::clamp(std::nearbyint(x[i] * inverse_step), -32.0f, 31.0f);
      sll += level * level, slx += level * x[i];
    }
    if (sll != 0.0 && slx != 0.0) best = std::min(best, symmetric_error(x, n, slx / sll));
  }
  return best;
}

// f32 grids and sums may pick a neighbouring candidate when two are within rounding of each other,
// and an exact fit in f64 leaves f32 rounding in f32: the kept fit's f64 error may exceed the
// reference's best by a hair of that error or of the sub-block's energy, never more.
double allowed_error(double reference, const float* x, int n) {
  double energy = 0.0;
  for (int i = 0; i < n; ++i) energy += static_cast<double>(x[i]) * x[i];
  return reference * (1 + 1e-4) + 1e-7 * energy;
}

TEST(ScaleSearch, KeptFitIsAsGoodAsTheBestCandidateOfAnF64Search) {
  const std::vector<float> values = awkward_values(300, 5);
  for (size_t block = 0; block < values.size(); block += kSuperBlockElements) {
    AffineFit fits[kQ4KSubBlocks];
    fit_q4_k_sub_blocks(&values[block], fits);
    for (int s = 0; s < kQ4KSubBlocks; ++s) {
      const float* x = &values[block + s * kQ4KSubBlockElements];
      const double reference = best_affine_error(x, kQ4KSubBlockElements);
      const double kept = affine_error(x, kQ4KSubBlockElements, fits[s].scale, fits[s].min);
      EXPECT_LE(kept, allowed_error(reference, x, kQ4KSubBlockElements))
          << "q4_k block " << block / kSuperBlockElements << " sub-block " << s;
    }
    float scales[kQ6KSubBlocks];
    fit_q6_k_sub_blocks(&values[block], scales);
    for (int s = 0; s < kQ6KSubBlocks; ++s) {
      const float* x = &values[block + s * kQ6KSubBlockElements];
      const double reference = best_symmetric_error(x, kQ6KSubBlockElements);
      const double kept = scales[s] == 0.0f ? 0.0 : symmetric_error(x, kQ6KSubBlockElements, scales[s]);
      EXPECT_LE(kept, allowed_error(reference, x, kQ6KSubBlockElements))
          << "q6_k block " << block / kSuperBlockElements << " sub-block " << s;
    }
  }
}

}  // namespace
}  // namespace retort::quant_detail
