#include "tensor/scale_search.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "tensor/quant_k.h"
#include "util/cpu_features.h"

namespace retort::quant_detail {
namespace {

constexpr int kSearchSteps = 10;         // candidates on each side of the plain grid
constexpr float kSearchStepSize = 0.1f;  // in levels
constexpr int kCandidates = 1 + (2 * kSearchSteps + 1);  // lane 0 the plain grid, then steps -10..10


// One value per candidate, as W-lane vectors (a GCC/Clang extension) for the passes over the
// values and as floats for the per-candidate steps between them.
template <int W>
union CandidateValues {
  typedef float Lanes __attribute__((vector_size(4 * W)));
  static constexpr int kGroups = (kCandidates + W - 1) / W;
  static constexpr int kLanes = kGroups * W;
  Lanes group[kGroups];
  float lane[kLanes];
};

// The grid size, in levels, of candidate `lane` around a plain grid of `levels` (lanes past the
// last candidate repeat it, so every lane holds finite numbers).
float candidate_levels(float levels, int lane) {
  return levels + kSearchStepSize * static_cast<float>(std::min(lane, kCandidates - 1) - 1 - kSearchSteps);
}

// Round to nearest (ties to even) after clamping to integer bounds, in every lane: adding and
// subtracting 1.5 · 2^23 leaves exactly that rounding in f32, which the compiler may not fold
// away without -ffast-math (the file is also built with -ffp-contract=off, so no ISA fuses it).
template <class Lanes>
[[gnu::always_inline]] inline Lanes round_clamped(Lanes values, float lowest, float highest) {
  constexpr float kShifter = 12582912.0f;  // 1.5 · 2^23
  values = values < lowest ? Lanes{} + lowest : values;
  values = values > highest ? Lanes{} + highest : values;
  return (values + kShifter) - kShifter;
}

// The first candidate with the least error: lane 0, the plain grid, wins ties.
int least_error_candidate(const float* errors, const bool* usable) {
  int best = 0;
  for (int lane = 1; lane < kCandidates; ++lane) {
    if (usable[lane] && errors[lane] < errors[best]) best = lane;
  }
  return best;
}

// Least-squares scale and offset for the levels one candidate grid gave, the offset kept <= 0
// (the format can only subtract, so a sub-block of positive values still starts at level 0).
bool fit_affine(double n, double sum_l, double sum_ll, double sum_x, double sum_lx, AffineFit& fit) {
  const double determinant = n * sum_ll - sum_l * sum_l;
  if (determinant <= 0.0) return false;  // one level for every value: no slope to fit
  double scale = (n * sum_lx - sum_l * sum_x) / determinant;
  double offset = (sum_ll * sum_x - sum_l * sum_lx) / determinant;
  if (offset > 0.0) {
    offset = 0.0;
    scale = sum_lx / sum_ll;
  }
  if (!(scale > 0.0)) return false;
  fit = {static_cast<float>(scale), static_cast<float>(-offset)};
  return true;
}

// One Q4_K sub-block: the grids span [min(0, lowest), highest] with 15 ± 0.1·k steps.
template <int W, int N>
[[gnu::always_inline]] inline AffineFit fit_affine_levels(const float* x, int max_level) {
  using Values = CandidateValues<W>;
  float lowest = 0.0f, highest = x[0];
  double sum_x = 0.0;
  for (int i = 0; i < N; ++i) {
    lowest = std::min(lowest, x[i]);
    highest = std::max(highest, x[i]);
    sum_x += x[i];
  }
  if (highest <= lowest) return {0.0f, -lowest};  // constant, non-positive: the offset is exact
  const float range = highest - lowest, top = static_cast<float>(max_level);
  Values inverse_step;
  for (int lane = 0; lane < Values::kLanes; ++lane) inverse_step.lane[lane] = candidate_levels(top, lane) / range;
  Values sum_l{}, sum_ll{}, sum_lx{};
  for (int i = 0; i < N; ++i) {
    for (int g = 0; g < Values::kGroups; ++g) {
      const auto level = round_clamped((x[i] - lowest) * inverse_step.group[g], 0.0f, top);
      sum_l.group[g] += level;
      sum_ll.group[g] += level * level;
      sum_lx.group[g] += level * x[i];
    }
  }
  AffineFit fits[kCandidates];
  bool usable[kCandidates];
  fits[0] = {range / top, -lowest};
  usable[0] = true;
  for (int lane = 1; lane < kCandidates; ++lane) {
    usable[lane] = fit_affine(N, sum_l.lane[lane], sum_ll.lane[lane], sum_x, sum_lx.lane[lane], fits[lane]);
  }
  Values scale{}, min{}, inverse_scale{};
  for (int lane = 0; lane < kCandidates; ++lane) {
    scale.lane[lane] = fits[lane].scale;
    min.lane[lane] = fits[lane].min;
    inverse_scale.lane[lane] = fits[lane].scale > 0.0f ? 1.0f / fits[lane].scale : 0.0f;
  }
  Values errors{};
  for (int i = 0; i < N; ++i) {
    for (int g = 0; g < Values::kGroups; ++g) {
      const auto level = round_clamped((x[i] + min.group[g]) * inverse_scale.group[g], 0.0f, top);
      const auto residual = scale.group[g] * level - min.group[g] - x[i];
      errors.group[g] += residual * residual;
    }
  }
  return fits[least_error_candidate(errors.lane, usable)];
}

// One Q6_K sub-block: the grids map the extreme value onto -(32 ± 0.1·k).
template <int W, int N>
[[gnu::always_inline]] inline float fit_symmetric_scale(const float* x) {
  using Values = CandidateValues<W>;
  const float extreme = signed_extreme(x, N);
  if (extreme == 0.0f) return 0.0f;
  const auto lowest = static_cast<float>(kQ6KLowestLevel), highest = static_cast<float>(kQ6KHighestLevel);
  Values inverse_step;
  for (int lane = 0; lane < Values::kLanes; ++lane) inverse_step.lane[lane] = -candidate_levels(-lowest, lane) / extreme;
  Values sum_ll{}, sum_lx{};
  for (int i = 0; i < N; ++i) {
    for (int g = 0; g < Values::kGroups; ++g) {
      const auto level = round_clamped(x[i] * inverse_step.group[g], lowest, highest);
      sum_ll.group[g] += level * level;
      sum_lx.group[g] += level * x[i];
    }
  }
  Values scale, inverse_scale;
  bool usable[kCandidates];
  for (int lane = 0; lane < Values::kLanes; ++lane) {
    const bool fitted = lane > 0 && lane < kCandidates && sum_ll.lane[lane] != 0.0f && sum_lx.lane[lane] != 0.0f;
    if (lane < kCandidates) usable[lane] = lane == 0 || fitted;
    scale.lane[lane] = lane == 0 ? extreme / lowest : fitted ? sum_lx.lane[lane] / sum_ll.lane[lane] : 1.0f;
    inverse_scale.lane[lane] = 1.0f / scale.lane[lane];
  }
  Values errors{};
  for (int i = 0; i < N; ++i) {
    for (int g = 0; g < Values::kGroups; ++g) {
      const auto level = round_clamped(x[i] * inverse_scale.group[g], lowest, highest);
      const auto residual = scale.group[g] * level - x[i];
      errors.group[g] += residual * residual;
    }
  }
  return scale.lane[least_error_candidate(errors.lane, usable)];
}

template <int W>
[[gnu::always_inline]] inline void fit_q4_k_with(const float* values, AffineFit* fits) {
  for (int s = 0; s < kQ4KSubBlocks; ++s) {
    fits[s] = fit_affine_levels<W, kQ4KSubBlockElements>(values + s * kQ4KSubBlockElements, kQ4KMaxLevel);
  }
}

template <int W>
[[gnu::always_inline]] inline void fit_q6_k_with(const float* values, float* scales) {
  for (int s = 0; s < kQ6KSubBlocks; ++s) {
    scales[s] = fit_symmetric_scale<W, kQ6KSubBlockElements>(values + s * kQ6KSubBlockElements);
  }
}

// Each width compiled for the instruction set that makes it one register wide; the functions
// above are inlined into these, so they take the same instruction set.
void fit_q4_k_lanes4(const float* values, AffineFit* fits) { fit_q4_k_with<4>(values, fits); }
void fit_q6_k_lanes4(const float* values, float* scales) { fit_q6_k_with<4>(values, scales); }
[[gnu::target("avx2")]] void fit_q4_k_lanes8(const float* values, AffineFit* fits) { fit_q4_k_with<8>(values, fits); }
[[gnu::target("avx2")]] void fit_q6_k_lanes8(const float* values, float* scales) { fit_q6_k_with<8>(values, scales); }
[[gnu::target("avx512f")]] void fit_q4_k_lanes16(const float* values, AffineFit* fits) {
  fit_q4_k_with<16>(values, fits);
}
[[gnu::target("avx512f")]] void fit_q6_k_lanes16(const float* values, float* scales) {
  fit_q6_k_with<16>(values, scales);
}

SearchWidth choose_search_width() {
  const char* forced = std::getenv("RETORT_ISA");  // as the kernels read it; they report bad values
  const std::string_view want = forced ? forced : "";
  if (want == "scalar") return SearchWidth::Lanes4;
  if (want != "avx2" && search_width_supported(SearchWidth::Lanes16)) return SearchWidth::Lanes16;
  return search_width_supported(SearchWidth::Lanes8) ? SearchWidth::Lanes8 : SearchWidth::Lanes4;
}

}  // namespace

bool search_width_supported(SearchWidth width) {
  const CpuFeatures& cpu = cpu_features();
  switch (width) {
    case SearchWidth::Lanes4: return true;
    case SearchWidth::Lanes8: return cpu.avx2;
    case SearchWidth::Lanes16: return cpu.avx512f;
  }
  return false;
}

SearchWidth search_width() {
  static const SearchWidth width = choose_search_width();
  return width;
}

void fit_q4_k_sub_blocks(const float* values, AffineFit* fits, SearchWidth width) {
  switch (width) {
    case SearchWidth::Lanes16: return fit_q4_k_lanes16(values, fits);
    case SearchWidth::Lanes8: return fit_q4_k_lanes8(values, fits);
    case SearchWidth::Lanes4: return fit_q4_k_lanes4(values, fits);
  }
}

void fit_q6_k_sub_blocks(const float* values, float* scales, SearchWidth width) {
  switch (width) {
    case SearchWidth::Lanes16: return fit_q6_k_lanes16(values, scales);
    case SearchWidth::Lanes8: return fit_q6_k_lanes8(values, scales);
    case SearchWidth::Lanes4: return fit_q6_k_lanes4(values, scales);
  }
}

}  // namespace retort::quant_detail
