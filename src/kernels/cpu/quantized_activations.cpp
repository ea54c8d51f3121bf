#include "kernels/cpu/quantized_activations.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace retort::cpu {

void size_activations(int64_t tokens, int64_t cols, QuantizedActivations& out) {
  require(cols % kActivationBlock == 0, ErrorKind::Internal, "activation rows of {} values are not whole blocks of {}",
          cols, kActivationBlock);
  out.tokens = tokens;
  out.cols = cols;
  const int64_t blocks = tokens * (cols / kActivationBlock);
  out.quants.resize(static_cast<size_t>(tokens * cols));
  out.scales.resize(static_cast<size_t>(blocks));
  out.sums.resize(static_cast<size_t>(blocks));
  out.half_sums.resize(static_cast<size_t>(2 * blocks));
}

void quantize_activation_rows(const float* in, int64_t row_begin, int64_t row_end, QuantizedActivations& out) {
  const int64_t per_row = out.blocks_per_row();
  for (int64_t b = row_begin * per_row; b < row_end * per_row; ++b) {
    const float* x = in + b * kActivationBlock;
    int8_t* q = out.quants.data() + b * kActivationBlock;
    float amax = 0.0f;
    for (int64_t i = 0; i < kActivationBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
    int32_t half_sums[2] = {0, 0};
    for (int64_t i = 0; i < kActivationBlock; ++i) {
      q[i] = static_cast<int8_t>(std::nearbyint(x[i] * inverse));
      half_sums[i / (kActivationBlock / 2)] += q[i];
    }
    out.scales[static_cast<size_t>(b)] = d;
    out.sums[static_cast<size_t>(b)] = half_sums[0] + half_sums[1];
    out.half_sums[static_cast<size_t>(2 * b)] = half_sums[0];
    out.half_sums[static_cast<size_t>(2 * b + 1)] = half_sums[1];
  }
}

void quantize_activations(const float* in, int64_t tokens, int64_t cols, QuantizedActivations& out) {
  size_activations(tokens, cols, out);
  quantize_activation_rows(in, 0, tokens, out);
}

}  // namespace retort::cpu
