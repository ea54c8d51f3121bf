#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensor/dtype.h"

namespace retort {
namespace {

TEST(DType, Bf16RoundTripsExactlyRepresentableValues) {
  for (uint32_t bits = 0; bits < 0x10000u; bits += 7) {
    float value = bf16_to_f32(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    EXPECT_EQ(f32_to_bf16(value), bits);
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
}

TEST(DType, F16MatchesReferenceOnEveryBitPattern) {
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    uint32_t exponent = (bits >> 10) & 0x1f;
    uint32_t mantissa = bits & 0x3ff;
    double expected;
    if (exponent == 0) expected = std::ldexp(static_cast<double>(mantissa), -24);
    else if (exponent == 31) expected = mantissa ? NAN : INFINITY;
    else expected = std::ldexp(1.0 + mantissa / 1024.0, static_cast<int>(exponent) - 15);
    if (bits & 0x8000) expected = -expected;
    float got = f16_to_f32(static_cast<uint16_t>(bits));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    ASSERT_EQ(got, static_cast<float>(expected)) << bits;
    EXPECT_EQ(f32_to_f16(got), bits) << bits;
  }
}

TEST(DType, F16RoundingIsNearest) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  for (int i = 0; i < 10000; ++i) {
    float value = dist(rng) * std::pow(10.0f, static_cast<float>(i % 9) - 6);
    float rounded = f16_to_f32(f32_to_f16(value));
    if (std::fabs(value) > 65504.0f) continue;
    uint16_t bits = f32_to_f16(value);
    // No other f16 neighbour is strictly closer.
    for (int delta : {-1, 1}) {
      float neighbour = f16_to_f32(static_cast<uint16_t>(bits + delta));
      if (std::isnan(neighbour) || std::isinf(neighbour)) continue;
      EXPECT_LE(std::fabs(rounded - value), std::fabs(neighbour - value)) << value;
    }
  }
}

}  // namespace
}  // namespace retort
