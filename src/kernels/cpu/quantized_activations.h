#pragma once
// Activations quantized on the fly so that matmuls against block-quantized weights (Q8_0, Q4_0,
// Q4_K, Q6_K) run as integer dot products: every row of `cols` values is cut into blocks of 32, each
// stored as int8 values q with one f32 scale d (value ≈ d·q) and the block's Σq, which the Q4
// formats need for their offsets (Q4_0's −8, Q4_K's per-sub-block minimum).
#include <cstdint>
#include <vector>

namespace retort::cpu {

inline constexpr int64_t kActivationBlock = 32;

struct QuantizedActivations {
  int64_t tokens = 0;
  int64_t cols = 0;              // a multiple of kActivationBlock
  std::vector<int8_t> quants;    // [tokens × cols]
  std::vector<float> scales;     // [tokens × cols / 32]
  std::vector<int32_t> sums;     // [tokens × cols / 32], Σ quants of each block
  std::vector<int32_t> half_sums;  // [tokens × cols / 16], Σ quants of each half block (Q6_K's offsets)

  int64_t blocks_per_row() const { return cols / kActivationBlock; }
  const int8_t* row_quants(int64_t t) const { return quants.data() + t * cols; }
  const float* row_scales(int64_t t) const { return scales.data() + t * blocks_per_row(); }
  const int32_t* row_sums(int64_t t) const { return sums.data() + t * blocks_per_row(); }
  const int32_t* row_half_sums(int64_t t) const { return half_sums.data() + t * 2 * blocks_per_row(); }
};

// Sizes `out` for tokens × cols (reusing its storage); `cols` must be a multiple of 32.
void size_activations(int64_t tokens, int64_t cols, QuantizedActivations& out);

// Quantizes rows [row_begin, row_end) of `in` [tokens × out.cols] into `out`, already sized.
// Symmetric, d = max|x| / 127 per block (as ggml's Q8_0 reference), q = x / d rounded to nearest,
// ties to even (what the SIMD conversions do), so every q lies in [−127, 127]: the AVX2 path
// multiplies |w|·q pairs into int16 without saturating. Each integer kernel set has a SIMD version
// of this that gives the same bytes (IntegerDotKernels::quantize_rows).
using QuantizeRowsFn = void (*)(const float* in, int64_t row_begin, int64_t row_end, QuantizedActivations& out);
void quantize_activation_rows(const float* in, int64_t row_begin, int64_t row_end, QuantizedActivations& out);

// size_activations, then every row with the portable loop.
void quantize_activations(const float* in, int64_t tokens, int64_t cols, QuantizedActivations& out);

}  // namespace retort::cpu
