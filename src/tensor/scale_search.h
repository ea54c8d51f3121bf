#pragma once
// The scale searches of the k-quant quantizers (quant_k.cpp): for each sub-block, the plain grid
// and 21 stretched ones are tried, each refitted by least squares and scored by the squared error
// after re-rounding; the least error wins (the plain grid on ties). Internal to the tensor layer.
//
// The candidates sit in the lanes of short vectors, so one pass over a sub-block's values serves
// all of them, and each candidate's sums add the values one after another, as a scalar loop
// would: every vector width gives the same bytes. The width follows the CPU (AVX-512, AVX2, the
// SSE2 baseline) and RETORT_ISA like the kernels.
#include <cmath>
#include <cstdint>

namespace retort::quant_detail {

// value ≈ scale * level - min, level in [0, max_level], min >= 0 (Q4_K).
struct AffineFit {
  float scale = 0.0f;
  float min = 0.0f;
};

// The first value of largest magnitude, sign kept.
inline float signed_extreme(const float* x, int count) {
  float extreme = 0.0f;
  for (int i = 0; i < count; ++i) {
    if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
  }
  return extreme;
}

// The search's vector width in f32 lanes: 4 (baseline), 8 (AVX2), 16 (AVX-512).
enum class SearchWidth { Lanes4 = 4, Lanes8 = 8, Lanes16 = 16 };

// The widest width this CPU runs (or the one RETORT_ISA asks for), chosen once.
SearchWidth search_width();
bool search_width_supported(SearchWidth width);

// The 8 sub-blocks of 32 values of a Q4_K super-block: scale and offset of each, levels 0..15.
void fit_q4_k_sub_blocks(const float* values /* [256] */, AffineFit* fits /* [8] */,
                         SearchWidth width = search_width());

// The 16 sub-blocks of 16 values of a Q6_K super-block: the scale of each, levels -32..31 (the
// sign of the scale maps the sub-block's extreme value onto -32).
void fit_q6_k_sub_blocks(const float* values /* [256] */, float* scales /* [16] */,
                         SearchWidth width = search_width());

}  // namespace retort::quant_detail
