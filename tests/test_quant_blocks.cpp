// GGUF block formats: byte layouts against decoders written from the format description (kept
// apart from the library's so that a layout slip in either shows up as a mismatch), hand-made
// blocks, round-trip error bounds, exactly representable inputs, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

constexpr BlockType kAllTypes[] = {BlockType::Q8_0, BlockType::Q4_0, BlockType::Q4_K, BlockType::Q6_K};

float f16_at(const uint8_t* bytes) { return f16_to_f32(static_cast<uint16_t>(bytes[0] | (bytes[1] << 8))); }

void put_f16(uint8_t* bytes, float value) {
  uint16_t bits = f32_to_f16(value);
  bytes[0] = static_cast<uint8_t>(bits & 0xFF);
  bytes[1] = static_cast<uint8_t>(bits >> 8);
}

// ---- decoders from the format description ----------------------------------------------------

void spec_dequantize_q8_0(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<int8_t>(block[2 + j]) * d;
}

void spec_dequantize_q4_0(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((block[2 + j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((block[2 + j] >> 4) - 8) * d;
  }
}

void spec_scale_min_k4(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// d (2 bytes), dmin (2), scales (12), nibbles (128).
void spec_dequantize_q4_k(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  const float dmin = f16_at(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* q = block + 16;
  for (int sub = 0; sub < 8; sub += 2) {
    int sc1, m1, sc2, m2;
    spec_scale_min_k4(sub, scales, sc1, m1);
    spec_scale_min_k4(sub + 1, scales, sc2, m2);
    const float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - min1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - min2;
    q += 32;
  }
}

// ql (128 bytes), qh (64), int8 scales (16), d (2).
void spec_dequantize_q6_k(const uint8_t* block, float* y) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(block + 192);
  const float d = f16_at(block + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void spec_dequantize_block(BlockType type, const uint8_t* block, float* y) {
  switch (type) {
    case BlockType::Q8_0: return spec_dequantize_q8_0(block, y);
    case BlockType::Q4_0: return spec_dequantize_q4_0(block, y);
    case BlockType::Q4_K: return spec_dequantize_q4_k(block, y);
    case BlockType::Q6_K: return spec_dequantize_q6_k(block, y);
  }
}

// Byte offsets of the f16 scales in each format (random bytes there could be inf/NaN).
std::vector<int> f16_field_offsets(BlockType type) {
  switch (type) {
    case BlockType::Q8_0:
    case BlockType::Q4_0: return {0};
    case BlockType::Q4_K: return {0, 2};
    case BlockType::Q6_K: return {208};
  }
  return {};
}

// ---- helpers -----------------------------------------------------------------------------------

// Gaussian rows, each with its own magnitude (1e-3 .. 10), and a few outliers, as weights have.
std::vector<float> weight_like_values(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-3.0f, 1.0f);
  std::uniform_int_distribution<int> outlier_chance(0, 199);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float magnitude = std::pow(10.0f, exponent(rng));
    for (int64_t c = 0; c < cols; ++c) {
      float value = normal(rng) * magnitude;
      if (outlier_chance(rng) == 0) value *= 6.0f;
      values[static_cast<size_t>(r * cols + c)] = value;
    }
  }
  return values;
}

std::vector<uint8_t> quantize(BlockType type, const std::vector<float>& values, int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * quantized_row_bytes(type, cols)));
  quantize_rows(type, values.data(), bytes.data(), rows, cols);
  return bytes;
}

std::vector<float> dequantize(BlockType type, const std::vector<uint8_t>& bytes, int64_t rows, int64_t cols) {
  std::vector<float> values(static_cast<size_t>(rows * cols));
  dequantize_rows(type, bytes.data(), values.data(), rows, cols);
  return values;
}

std::vector<int64_t> column_counts(BlockType type) {
  const int64_t block = block_format(type).block_elements;
  return {block, 3 * block, 4096};  // 4096: a hidden size the distilled models use
}

// ---- format table ------------------------------------------------------------------------------

TEST(QuantBlocks, FormatTableMatchesGgml) {
  EXPECT_STREQ(block_format(BlockType::Q8_0).name, "q8_0");
  EXPECT_EQ(block_format(BlockType::Q8_0).block_elements, 32);
  EXPECT_EQ(block_format(BlockType::Q8_0).block_bytes, 34);
  EXPECT_STREQ(block_format(BlockType::Q4_0).name, "q4_0");
  EXPECT_EQ(block_format(BlockType::Q4_0).block_elements, 32);
  EXPECT_EQ(block_format(BlockType::Q4_0).block_bytes, 18);
  EXPECT_STREQ(block_format(BlockType::Q4_K).name, "q4_k");
  EXPECT_EQ(block_format(BlockType::Q4_K).block_elements, 256);
  EXPECT_EQ(block_format(BlockType::Q4_K).block_bytes, 144);
  EXPECT_STREQ(block_format(BlockType::Q6_K).name, "q6_k");
  EXPECT_EQ(block_format(BlockType::Q6_K).block_elements, 256);
  EXPECT_EQ(block_format(BlockType::Q6_K).block_bytes, 210);
  EXPECT_EQ(quantized_row_bytes(BlockType::Q4_K, 4096), 16 * 144);
  for (BlockType type : kAllTypes) EXPECT_EQ(block_format(type).type, type);
}

// ---- byte layout -------------------------------------------------------------------------------

TEST(QuantBlocks, RandomBytesDecodeAsTheFormatDescriptionSays) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> scale(0.0f, 0.05f);
  for (BlockType type : kAllTypes) {
    const BlockFormat& format = block_format(type);
    const int64_t blocks = 5;
    std::vector<uint8_t> bytes(static_cast<size_t>(blocks * format.block_bytes));
    for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
    for (int64_t block = 0; block < blocks; ++block) {
      for (int offset : f16_field_offsets(type)) put_f16(&bytes[block * format.block_bytes + offset], scale(rng));
    }
    std::vector<float> expected(static_cast<size_t>(blocks * format.block_elements));
    for (int64_t block = 0; block < blocks; ++block) {
      spec_dequantize_block(type, &bytes[block * format.block_bytes], &expected[block * format.block_elements]);
    }
    // Identical floats: same layout and the same order of float operations as ggml's dequantizers.
    EXPECT_EQ(dequantize(type, bytes, 1, blocks * format.block_elements), expected) << format.name;
  }
}

TEST(QuantBlocks, HandMadeQ8_0Block) {
  uint8_t block[34];
  put_f16(block, 0.25f);
  for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(8 * j - 127));
  float values[32];
  dequantize_rows(BlockType::Q8_0, block, values, 1, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(values[j], 0.25f * static_cast<float>(8 * j - 127)) << j;
}

TEST(QuantBlocks, HandMadeQ4_0BlockElementOrder) {
  uint8_t block[18];
  put_f16(block, 0.5f);
  // Byte j: low nibble j (element j), high nibble 15 - j (element j + 16).
  for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float values[32];
  dequantize_rows(BlockType::Q4_0, block, values, 1, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(values[j], 0.5f * (j - 8)) << j;
    EXPECT_EQ(values[j + 16], 0.5f * (7 - j)) << j;
  }
}

TEST(QuantBlocks, HandMadeQ4_KBlockWithPackedScales) {
  const int scales[8] = {1, 2, 3, 63, 17, 33, 48, 63};
  const int mins[8] = {0, 5, 63, 9, 16, 31, 47, 62};
  uint8_t block[144] = {};
  put_f16(block, 1.0f);
  put_f16(block + 2, 0.5f);
  // Packed by hand: bytes 0-3 scale[j] | top bits of scale[j+4] << 6; bytes 4-7 min[j] | top bits
  // of min[j+4] << 6; bytes 8-11 low nibbles of scale[j+4] and min[j+4].
  const uint8_t packed[12] = {1 | 1 << 6, 2 | 2 << 6, 3 | 3 << 6, 63 | 3 << 6,  //
                              0 | 1 << 6, 5 | 1 << 6, 63 | 2 << 6, 9 | 3 << 6,  //
                              0x01, 0xF1, 0xF0, 0xEF};
  std::memcpy(block + 4, packed, 12);
  auto low_level = [](int pair, int l) { return (l + pair) & 15; };
  auto high_level = [](int pair, int l) { return (3 * l + pair) & 15; };
  for (int pair = 0; pair < 4; ++pair) {
    for (int l = 0; l < 32; ++l) block[16 + 32 * pair + l] = static_cast<uint8_t>(low_level(pair, l) | high_level(pair, l) << 4);
  }
  float values[256];
  dequantize_rows(BlockType::Q4_K, block, values, 1, 256);
  for (int element = 0; element < 256; ++element) {
    const int sub = element / 32, pair = sub / 2, l = element % 32;
    const int level = sub % 2 == 0 ? low_level(pair, l) : high_level(pair, l);
    EXPECT_EQ(values[element], 1.0f * scales[sub] * level - 0.5f * mins[sub]) << element;
  }
}

TEST(QuantBlocks, HandMadeQ6_KBlockWithChosenBits) {
  uint8_t block[210] = {};
  auto* scales = reinterpret_cast<int8_t*>(block + 192);
  for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>(s - 8);
  scales[15] = -128;
  put_f16(block + 208, 0.5f);
  std::vector<int> expected_level(256, 0);  // all-zero bits: level 0, value -32
  block[0] = 0x21;                           // element 0: low 1, element 64: high 2
  expected_level[0] = 1;
  expected_level[64] = 2;
  block[32 + 5] = 0x43;  // element 37: low 3, element 101: high 4 ...
  block[128 + 5] = 0xE4;  // ... top bits of elements 5, 37, 69, 101: 0, 1, 2, 3
  expected_level[5] = 0;
  expected_level[37] = 3 + (1 << 4);
  expected_level[69] = 2 << 4;
  expected_level[101] = 4 + (3 << 4);
  block[64 + 31] = 0xFF;       // second half, l = 31: elements 128+31 and 128+95 low bits all set
  block[128 + 32 + 31] = 0xC3; // top bits of 159, 191, 223, 255: 3, 0, 0, 3
  expected_level[159] = 63;
  expected_level[223] = 15;
  expected_level[255] = 3 << 4;
  float values[256];
  dequantize_rows(BlockType::Q6_K, block, values, 1, 256);
  for (int element = 0; element < 256; ++element) {
    EXPECT_EQ(values[element], 0.5f * scales[element / 16] * (expected_level[element] - 32)) << element;
  }
}

// ---- exactly representable inputs --------------------------------------------------------------

TEST(QuantBlocks, Q8_0IntegerMultiplesOfTheScaleComeBackExactly) {
  std::vector<float> values(64);
  for (int j = 0; j < 64; ++j) values[j] = 0.5f * static_cast<float>((j * 37) % 255 - 127);
  values[3] = 0.5f * 127;  // amax/127 = 0.5 exactly in both blocks
  values[40] = -0.5f * 127;
  auto bytes = quantize(BlockType::Q8_0, values, 1, 64);
  EXPECT_EQ(f16_at(&bytes[0]), 0.5f);
  EXPECT_EQ(dequantize(BlockType::Q8_0, bytes, 1, 64), values);
}

// Halfway values round away from zero (roundf, as ggml's q8_0 quantizer rounds), and values a
// hair below halfway round down: 0.49999997 is where adding 0.5 and truncating goes wrong.
TEST(QuantBlocks, Q8_0RoundsHalfwayAwayFromZeroLikeRoundf) {
  std::vector<float> values(256);
  for (int j = 0; j < 256; ++j) {
    const float whole = static_cast<float>(j % 126 - 63);
    values[j] = j % 4 == 0 ? whole + 0.5f : j % 4 == 1 ? whole - 0.5f : j % 4 == 2 ? whole + 0.49999997f : -whole - 0.49999997f;
  }
  for (int block = 0; block < 8; ++block) values[block * 32] = 127.0f;  // scale exactly 1
  auto bytes = quantize(BlockType::Q8_0, values, 1, 256);
  for (int j = 0; j < 256; ++j) {
    EXPECT_EQ(static_cast<int8_t>(bytes[(j / 32) * 34 + 2 + j % 32]), static_cast<int8_t>(std::round(values[j])))
        << "value " << values[j];
  }
}

TEST(QuantBlocks, Q4_0LevelsComeBackExactlyWithEitherSignOfTheExtreme) {
  for (float d : {0.25f, -0.25f}) {
    std::vector<float> values(32);
    for (int j = 0; j < 32; ++j) values[j] = d * static_cast<float>((j * 5) % 16 - 8);
    auto bytes = quantize(BlockType::Q4_0, values, 1, 32);
    EXPECT_EQ(f16_at(&bytes[0]), d);  // d = extreme / -8
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(bytes[2 + j] & 0xF, (j * 5) % 16) << j;
      EXPECT_EQ(bytes[2 + j] >> 4, ((j + 16) * 5) % 16) << j;
    }
    EXPECT_EQ(dequantize(BlockType::Q4_0, bytes, 1, 32), values);
  }
}

TEST(QuantBlocks, Q4_KValuesOnTheGridComeBackExactly) {
  // Sub-block s: scale (s+56)/64 and min (8s+7)/64, so d = 63/64/63 and dmin = 63/64/63 are exact
  // in f16; every sub-block uses levels 0 and 15 so its range pins the grid.
  std::vector<float> values(256);
  for (int s = 0; s < 8; ++s) {
    const float scale = static_cast<float>(s + 56) / 64, min = static_cast<float>(8 * s + 7) / 64;
    for (int l = 0; l < 32; ++l) values[32 * s + l] = scale * static_cast<float>((l * 7 + s) % 16) - min;
  }
  auto bytes = quantize(BlockType::Q4_K, values, 1, 256);
  EXPECT_EQ(f16_at(&bytes[0]), 1.0f / 64);
  EXPECT_EQ(f16_at(&bytes[2]), 1.0f / 64);
  EXPECT_EQ(dequantize(BlockType::Q4_K, bytes, 1, 256), values);
}

TEST(QuantBlocks, Q6_KValuesOnTheGridComeBackExactly) {
  // Sub-block s: scale k_s/256 with the largest magnitude -128/256, so d = 1/256 is exact; each
  // sub-block holds level -32 (its extreme) and spans the others.
  const int ks[16] = {-128, 1, -1, 127, -127, 64, 0, 3, -90, 45, 12, -7, 100, -100, 2, 77};
  std::vector<float> values(256);
  for (int s = 0; s < 16; ++s) {
    for (int i = 0; i < 16; ++i) {
      const int level = i == 0 ? -32 : (i * 13 + s) % 64 - 32;
      values[16 * s + i] = static_cast<float>(ks[s]) / 256 * static_cast<float>(level);
    }
  }
  auto bytes = quantize(BlockType::Q6_K, values, 1, 256);
  EXPECT_EQ(f16_at(&bytes[208]), 1.0f / 256);
  for (int s = 0; s < 16; ++s) EXPECT_EQ(static_cast<int8_t>(bytes[192 + s]), ks[s]) << s;
  EXPECT_EQ(dequantize(BlockType::Q6_K, bytes, 1, 256), values);
}

TEST(QuantBlocks, ZeroBlocksStayZero) {
  for (BlockType type : kAllTypes) {
    const int64_t cols = block_format(type).block_elements * 2;
    std::vector<float> zeros(static_cast<size_t>(cols), 0.0f);
    auto bytes = quantize(type, zeros, 1, cols);
    for (float value : dequantize(type, bytes, 1, cols)) EXPECT_EQ(value, 0.0f) << block_format(type).name;
    // llama.cpp's bytes for a zero block: d = 0 (q4_0's is -0: 0 / -8) and, for q4_0, every
    // nibble at the middle level 8.
    const uint8_t filler = type == BlockType::Q4_0 ? 0x88 : 0x00;
    for (size_t i = 0; i < bytes.size(); ++i) {
      const bool q4_0_scale = type == BlockType::Q4_0 && i % 18 < 2;
      const uint8_t expected = q4_0_scale ? (i % 18 == 1 ? 0x80 : 0x00) : filler;
      EXPECT_EQ(bytes[i], expected) << block_format(type).name << " byte " << i;
    }
  }
}

// ---- round-trip error ----------------------------------------------------------------------------

// Per element: |x - x'| <= d/2 (+ the f16 rounding of d over up to 127 levels), d = amax/127.
void expect_q8_0_error_bound(const float* x, const float* y) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127, d_stored = f16_to_f32(f32_to_f16(d));
  const float bound = d / 2 + 127 * std::fabs(d - d_stored) + 1e-6f * amax;
  for (int i = 0; i < 32; ++i) ASSERT_LE(std::fabs(x[i] - y[i]), bound) << i;
}

// Per element: |x - x'| <= |d|/2 where x/d <= 7.5; values beyond level 7 (the side opposite the
// extreme, which maps to -8) clamp to 7, so there the bound is |x - 7d| (at most |d|).
void expect_q4_0_error_bound(const float* x, const float* y) {
  float extreme = 0;
  for (int i = 0; i < 32; ++i) if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
  const float d = extreme / -8, d_stored = f16_to_f32(f32_to_f16(d));
  const float slack = 8 * std::fabs(d - d_stored) + 1e-6f * std::fabs(extreme);
  for (int i = 0; i < 32; ++i) {
    const float level = d != 0 ? x[i] / d : 0;
    const float bound = level <= 7.5f ? std::fabs(d) / 2 : std::fabs(x[i] - 7 * d);
    ASSERT_LE(std::fabs(x[i] - y[i]), bound + slack) << i;
  }
}

double rms(const float* x, int64_t count) {
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) sum += static_cast<double>(x[i]) * x[i];
  return std::sqrt(sum / static_cast<double>(count));
}

double rms_difference(const float* x, const float* y, int64_t count) {
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) sum += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
  return std::sqrt(sum / static_cast<double>(count));
}

// Per row: RMS(x - x') / RMS(x). Measured on these rows (all shapes below; mean = RMS over rows,
// worst = worst row): q8_0 0.0073 / 0.0118, q4_0 0.124 / 0.178, q4_k 0.083 / 0.092,
// q6_k 0.021 / 0.026. The bounds leave about 15% margin.
struct RelativeErrorBound {
  double mean;
  double worst;
};

RelativeErrorBound relative_rms_bound(BlockType type) {
  switch (type) {
    case BlockType::Q8_0: return {0.0085, 0.014};
    case BlockType::Q4_0: return {0.14, 0.20};
    case BlockType::Q4_K: return {0.095, 0.105};
    case BlockType::Q6_K: return {0.024, 0.031};
  }
  return {0, 0};
}

TEST(QuantBlocks, RoundTripErrorWithinEachFormatsBound) {
  uint32_t seed = 100;
  for (BlockType type : kAllTypes) {
    const BlockFormat& format = block_format(type);
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t cols : column_counts(type)) {
        SCOPED_TRACE(fmt::format("{} {} x {}", format.name, rows, cols));
        auto x = weight_like_values(rows, cols, ++seed);
        auto bytes = quantize(type, x, rows, cols);
        auto y = dequantize(type, bytes, rows, cols);
        for (int64_t block = 0; block < rows * cols / format.block_elements; ++block) {
          const float* xb = &x[block * format.block_elements];
          const float* yb = &y[block * format.block_elements];
          if (type == BlockType::Q8_0) expect_q8_0_error_bound(xb, yb);
          if (type == BlockType::Q4_0) expect_q4_0_error_bound(xb, yb);
        }
        double worst = 0, sum_squares = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = &x[r * cols];
          const double relative = rms_difference(xr, &y[r * cols], cols) / rms(xr, cols);
          worst = std::max(worst, relative);
          sum_squares += relative * relative;
        }
        EXPECT_LE(std::sqrt(sum_squares / static_cast<double>(rows)), relative_rms_bound(type).mean);
        EXPECT_LE(worst, relative_rms_bound(type).worst);
      }
    }
  }
}

TEST(QuantBlocks, DotProductMatchesDotOfDequantizedRow) {
  for (BlockType type : kAllTypes) {
    const int64_t cols = 3 * block_format(type).block_elements;
    auto w = weight_like_values(1, cols, 7);
    auto x = weight_like_values(1, cols, 8);
    auto bytes = quantize(type, w, 1, cols);
    auto dequantized = dequantize(type, bytes, 1, cols);
    double expected = 0;
    for (int64_t i = 0; i < cols; ++i) expected += static_cast<double>(dequantized[i]) * x[i];
    EXPECT_FLOAT_EQ(dot_block_row_f32(type, bytes.data(), x.data(), cols), static_cast<float>(expected));
  }
}

// ---- determinism and bad input -------------------------------------------------------------------

TEST(QuantBlocks, SameInputGivesIdenticalBytesAtAnyThreadCount) {
  const int64_t rows = 17, cols = 4096;  // enough blocks to split across threads
  auto x = weight_like_values(rows, cols, 3);
  for (BlockType type : kAllTypes) {
    auto first = quantize(type, x, rows, cols);
    EXPECT_EQ(quantize(type, x, rows, cols), first) << block_format(type).name;
    set_thread_count(1);
    EXPECT_EQ(quantize(type, x, rows, cols), first) << block_format(type).name;
    set_thread_count(3);
    EXPECT_EQ(quantize(type, x, rows, cols), first) << block_format(type).name;
    set_thread_count(default_thread_count());
  }
}

TEST(QuantBlocks, ColumnsNotAWholeNumberOfBlocksAreRejected) {
  std::vector<float> values(300 * 2, 1.0f);
  std::vector<uint8_t> bytes(4096);
  try {
    quantize_rows(BlockType::Q4_K, values.data(), bytes.data(), 2, 300, "blk.0.ffn_down.weight");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::InvalidInput);
    const std::string message = error.what();
    EXPECT_NE(message.find("blk.0.ffn_down.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("2 rows x 300 columns"), std::string::npos) << message;
    EXPECT_NE(message.find("256"), std::string::npos) << message;
  }
  EXPECT_THROW(quantize_rows(BlockType::Q8_0, values.data(), bytes.data(), 1, 33), Error);
  EXPECT_THROW(dequantize_rows(BlockType::Q6_K, bytes.data(), values.data(), 1, 128), Error);
  EXPECT_THROW(dot_block_row_f32(BlockType::Q4_0, bytes.data(), values.data(), 48), Error);
  EXPECT_THROW(quantized_row_bytes(BlockType::Q4_0, 31), Error);
  EXPECT_THROW(quantize_rows(BlockType::Q4_0, values.data(), bytes.data(), -1, 32), Error);
}

TEST(QuantBlocks, NonFiniteInputIsRejectedWithItsPosition) {
  for (BlockType type : kAllTypes) {
    const int64_t cols = block_format(type).block_elements * 2;
    std::vector<float> values(static_cast<size_t>(3 * cols), 0.5f);
    values[static_cast<size_t>(2 * cols + 5)] = std::nanf("");
    values[static_cast<size_t>(2 * cols + 9)] = INFINITY;
    std::vector<uint8_t> bytes(static_cast<size_t>(3 * quantized_row_bytes(type, cols)));
    try {
      quantize_rows(type, values.data(), bytes.data(), 3, cols, "token_embd.weight");
      FAIL() << "expected an error";
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("[2, 5]"), std::string::npos) << message;
      EXPECT_NE(message.find("token_embd.weight"), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace retort
