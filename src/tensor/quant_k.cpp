// Q4_K and Q6_K: 256-value super-blocks whose sub-block scales are themselves quantized against
// one f16 scale per super-block.
//
// How the quantizers choose scales (retort's own choice; any choice gives valid blocks):
//  1. Each sub-block gets the best scale (and, for Q4_K, offset) that a small search finds
//     (scale_search.h): for 21 level grids spanning the sub-block's range with 14.0, 14.1, ...,
//     16.0 steps (Q4_K) or its largest magnitude with 31.0 ... 33.0 steps (Q6_K), round the
//     values onto the grid, fit the scale (and offset) to those levels by least squares,
//     re-round the values with the fitted scale, and keep the candidate (or the plain grid)
//     with the least squared error (unweighted).
//  2. The super-block scale is the largest sub-block scale over 63 (Q4_K, 6-bit unsigned) or
//     over -128 (Q6_K, int8; the negative sign lets the largest scale use the extra level -128).
//  3. Sub-block scales are rounded to that unit, and the values are re-rounded to levels using
//     the scales exactly as a reader will reconstruct them (f16 super-scale times the 6/8-bit
//     sub-scale), so the stored levels are the nearest ones for the stored scales.
#include "tensor/quant_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/dtype.h"
#include "tensor/scale_search.h"

namespace retort::quant_detail {
namespace {

// Round to nearest, ties to even, of a value clamped to integer bounds far below 2^22: adding and
// subtracting 1.5 · 2^23 leaves exactly that rounding in f32 (the default rounding mode), and
// inlines where std::nearbyint is a library call (no SSE4.1 in the baseline ISA). Clamping first gives the same result as rounding first, the bounds being integers.
float round_clamped(float value, float lowest, float highest) {
  constexpr float kShifter = 12582912.0f;  // 1.5 · 2^23
  // (Without -ffast-math the compiler may not fold (x + c) − c back into x.)
  const float shifted = std::clamp(value, lowest, highest) + kShifter;
  return shifted - kShifter;
}

// ---- Q4_K ------------------------------------------------------------------------------------

constexpr int kQ4KMaxSubScale = 63;  // 6 bits
constexpr int kQ4KScalesOffset = 4;
constexpr int kQ4KNibblesOffset = 16;

// Six-bit scales and mins of the 8 sub-blocks in 12 bytes: sub-blocks 0..3 keep theirs in the
// low 6 bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 keep their low 4 bits in
// bytes 8..11 (scale in the low nibble, min in the high one) and their top 2 bits in the spare
// top bits of bytes 0..3 (scale) and 4..7 (min).
void pack_q4_k_scales(const uint8_t* scales, const uint8_t* mins, uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(scales[j] | ((scales[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>(mins[j] | ((mins[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4));
  }
}

void unpack_q4_k_scale(const uint8_t* packed, int sub_block, int& scale, int& min) {
  if (sub_block < 4) {
    scale = packed[sub_block] & 63;
    min = packed[sub_block + 4] & 63;
  } else {
    scale = (packed[sub_block + 4] & 0x0F) | ((packed[sub_block - 4] >> 6) << 4);
    min = (packed[sub_block + 4] >> 4) | ((packed[sub_block] >> 6) << 4);
  }
}

uint8_t quantize_sub_scale(float value, float unit, int highest) {
  if (!(unit > 0.0f)) return 0;
  return static_cast<uint8_t>(round_clamped(value / unit, 0.0f, static_cast<float>(highest)));
}

// ---- Q6_K ------------------------------------------------------------------------------------

constexpr int kQ6KQhOffset = 128;
constexpr int kQ6KScalesOffset = 192;
constexpr int kQ6KScaleOffset = 208;

// 6-bit levels (0..63, stored biased by 32) of 256 values into ql/qh. Each 128-value half uses
// 64 ql bytes and 32 qh bytes: ql[l] holds values l (low nibble) and l+64 (high nibble),
// ql[l+32] holds values l+32 and l+96, and qh[l] holds the top 2 bits of values l, l+32, l+64,
// l+96 in bit pairs 0-1, 2-3, 4-5, 6-7.
void pack_q6_k_levels(const uint8_t* levels, uint8_t* block) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* q = levels + 128 * half;
    uint8_t* ql = block + 64 * half;
    uint8_t* qh = block + kQ6KQhOffset + 32 * half;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((q[l] & 0x0F) | ((q[l + 64] & 0x0F) << 4));
      ql[l + 32] = static_cast<uint8_t>((q[l + 32] & 0x0F) | ((q[l + 96] & 0x0F) << 4));
      qh[l] = static_cast<uint8_t>((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                   ((q[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace

void quantize_block_q4_k(const float* values, uint8_t* block) {
  AffineFit fits[kQ4KSubBlocks];
  fit_q4_k_sub_blocks(values, fits);
  float largest_scale = 0.0f;
  float largest_min = 0.0f;
  for (int s = 0; s < kQ4KSubBlocks; ++s) {
    largest_scale = std::max(largest_scale, fits[s].scale);
    largest_min = std::max(largest_min, fits[s].min);
  }
  const uint16_t d_bits = f32_to_f16(largest_scale / kQ4KMaxSubScale);
  const uint16_t dmin_bits = f32_to_f16(largest_min / kQ4KMaxSubScale);
  store_u16(block, d_bits);
  store_u16(block + 2, dmin_bits);
  const float d = f16_to_f32(d_bits);
  const float dmin = f16_to_f32(dmin_bits);

  uint8_t sub_scales[kQ4KSubBlocks];
  uint8_t sub_mins[kQ4KSubBlocks];
  uint8_t levels[kSuperBlockElements];
  for (int s = 0; s < kQ4KSubBlocks; ++s) {
    sub_scales[s] = quantize_sub_scale(fits[s].scale, d, kQ4KMaxSubScale);
    sub_mins[s] = quantize_sub_scale(fits[s].min, dmin, kQ4KMaxSubScale);
    const float scale = d * sub_scales[s];
    const float min = dmin * sub_mins[s];
    const float inverse_scale = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < kQ4KSubBlockElements; ++i) {
      const int index = s * kQ4KSubBlockElements + i;
      levels[index] = static_cast<uint8_t>(
          round_clamped((values[index] + min) * inverse_scale, 0.0f, static_cast<float>(kQ4KMaxLevel)));
    }
  }
  pack_q4_k_scales(sub_scales, sub_mins, block + kQ4KScalesOffset);
  uint8_t* nibbles = block + kQ4KNibblesOffset;
  for (int pair = 0; pair < kQ4KSubBlocks / 2; ++pair) {
    const uint8_t* first = levels + pair * 2 * kQ4KSubBlockElements;
    const uint8_t* second = first + kQ4KSubBlockElements;
    for (int l = 0; l < kQ4KSubBlockElements; ++l) {
      nibbles[pair * kQ4KSubBlockElements + l] = static_cast<uint8_t>(first[l] | (second[l] << 4));
    }
  }
}

void dequantize_block_q4_k(const uint8_t* block, float* values) {
  const float d = f16_to_f32(load_u16(block));
  const float dmin = f16_to_f32(load_u16(block + 2));
  const uint8_t* packed_scales = block + kQ4KScalesOffset;
  const uint8_t* nibbles = block + kQ4KNibblesOffset;
  for (int pair = 0; pair < kQ4KSubBlocks / 2; ++pair) {
    int low_scale, low_min, high_scale, high_min;
    unpack_q4_k_scale(packed_scales, 2 * pair, low_scale, low_min);
    unpack_q4_k_scale(packed_scales, 2 * pair + 1, high_scale, high_min);
    // Same operation order as ggml's dequantizer, so both give identical floats.
    const float low_step = d * low_scale, low_offset = dmin * low_min;
    const float high_step = d * high_scale, high_offset = dmin * high_min;
    const uint8_t* bytes = nibbles + pair * kQ4KSubBlockElements;
    float* first = values + pair * 2 * kQ4KSubBlockElements;
    float* second = first + kQ4KSubBlockElements;
    for (int l = 0; l < kQ4KSubBlockElements; ++l) {
      first[l] = low_step * (bytes[l] & 0x0F) - low_offset;
      second[l] = high_step * (bytes[l] >> 4) - high_offset;
    }
  }
}

void quantize_block_q6_k(const float* values, uint8_t* block) {
  float sub_scales[kQ6KSubBlocks];
  fit_q6_k_sub_blocks(values, sub_scales);
  const float extreme_scale = signed_extreme(sub_scales, kQ6KSubBlocks);
  const uint16_t d_bits = f32_to_f16(extreme_scale / -128.0f);
  store_u16(block + kQ6KScaleOffset, d_bits);
  const float d = f16_to_f32(d_bits);
  if (d == 0.0f) {  // all zeros (or too small for f16): all-zero bytes, as llama.cpp writes them
    std::memset(block, 0, kQ6KBlockBytes);
    return;
  }

  uint8_t levels[kSuperBlockElements];
  for (int s = 0; s < kQ6KSubBlocks; ++s) {
    const float sub_scale = round_clamped(sub_scales[s] / d, -128.0f, 127.0f);
    block[kQ6KScalesOffset + s] = static_cast<uint8_t>(static_cast<int8_t>(sub_scale));
    const float scale = d * sub_scale;
    for (int i = 0; i < kQ6KSubBlockElements; ++i) {
      const int index = s * kQ6KSubBlockElements + i;
      const float level = scale != 0.0f ? round_clamped(values[index] / scale, kQ6KLowestLevel,
                                                        kQ6KHighestLevel)
                                        : 0.0f;
      levels[index] = static_cast<uint8_t>(static_cast<int>(level) - kQ6KLowestLevel);
    }
  }
  pack_q6_k_levels(levels, block);
}

void dequantize_block_q6_k(const uint8_t* block, float* values) {
  const float d = f16_to_f32(load_u16(block + kQ6KScaleOffset));
  const auto* sub_scales = reinterpret_cast<const int8_t*>(block + kQ6KScalesOffset);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = block + 64 * half;
    const uint8_t* qh = block + kQ6KQhOffset + 32 * half;
    const int8_t* scales = sub_scales + 8 * half;
    float* out = values + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int sub = l / 16;  // scales[sub + 2k] covers out[l + 32k]: 16 values per scale
      const int q0 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) + kQ6KLowestLevel;
      const int q1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) + kQ6KLowestLevel;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) + kQ6KLowestLevel;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) + kQ6KLowestLevel;
      // (d * scale) * q in float, as ggml's dequantizer computes it.
      out[l] = d * scales[sub] * q0;
      out[l + 32] = d * scales[sub + 2] * q1;
      out[l + 64] = d * scales[sub + 4] * q2;
      out[l + 96] = d * scales[sub + 6] * q3;
    }
  }
}

}  // namespace retort::quant_detail
