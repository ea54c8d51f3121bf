// The bf16 mixed-precision GEMM (kernels/cpu/bf16_gemm.h), for every kernel this CPU runs, against
// an f64 product of the same bf16-rounded operands on random, awkward sizes and all transposes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernel_reference.h"
#include "kernels/cpu/bf16_gemm.h"
#include "tensor/dtype.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

struct Operands {
  std::vector<float> a, b, c;  // row-major with padded leading dimensions
  int64_t lda, ldb, ldc;
};

// op(X)(i, k) for a matrix stored with leading dimension ld.
float element(const std::vector<float>& x, int64_t ld, bool trans, int64_t row, int64_t col) {
  return trans ? x[size_t(col * ld + row)] : x[size_t(row * ld + col)];
}

double rounded(float value) { return double(bf16_to_f32(f32_to_bf16(value))); }

Operands random_operands(bool ta, bool tb, int64_t M, int64_t N, int64_t K, std::mt19937& rng) {
  Operands o;
  // Stored shapes: A is M×K (K×M if transposed), B is K×N (N×K); each row padded by a few floats.
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  o.lda = a_cols + 3;
  o.ldb = b_cols + 5;
  o.ldc = N + 2;
  o.a = test::random_floats(size_t(a_rows * o.lda), rng);
  o.b = test::random_floats(size_t(b_rows * o.ldb), rng, 0.5f);
  o.c = test::random_floats(size_t(M * o.ldc), rng);
  return o;
}

void expect_matches_reference(const cpu::Bf16GemmKernel& kernel, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                              bool accumulate, std::mt19937& rng) {
  Operands o = random_operands(ta, tb, M, N, K, rng);
  const std::vector<float> before = o.c;
  cpu::gemm_bf16(kernel, ta, tb, M, N, K, o.a.data(), o.lda, o.b.data(), o.ldb, accumulate, o.c.data(), o.ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double want = accumulate ? double(before[size_t(i * o.ldc + j)]) : 0.0, magnitude = std::fabs(want);
      for (int64_t k = 0; k < K; ++k) {
        const double p = rounded(element(o.a, o.lda, ta, i, k)) * rounded(element(o.b, o.ldb, tb, k, j));
        want += p;
        magnitude += std::fabs(p);
      }
      // f32 summation of K + 1 terms: each addition rounds once (products of bf16 are exact).
      const double tolerance = double(K + 2) * std::ldexp(1.0, -24) * magnitude + 1e-30;
      ASSERT_NEAR(o.c[size_t(i * o.ldc + j)], want, tolerance)
          << kernel.name << " M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb
          << " accumulate=" << accumulate << " at (" << i << ", " << j << ")";
    }
    // Padding between rows of C is never written.
    for (int64_t j = N; j < o.ldc; ++j) ASSERT_EQ(o.c[size_t(i * o.ldc + j)], before[size_t(i * o.ldc + j)]);
  }
}

class Bf16Gemm : public ::testing::TestWithParam<const cpu::Bf16GemmKernel*> {};

TEST_P(Bf16Gemm, MatchesF64ReferenceOnBf16RoundedInputsForAwkwardShapesAndTransposes) {
  std::mt19937 rng(77);
  // Sizes off every multiple: the 8 × 32 tile, the 256-k chunk, the 128 × 256 thread block.
  const int64_t shapes[][3] = {{1, 1, 1},    {1, 33, 2},   {9, 1, 31},    {7, 31, 33},   {17, 65, 255},
                               {130, 40, 257}, {3, 259, 97}, {45, 70, 513}, {129, 257, 63}};
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t)
      expect_matches_reference(*GetParam(), t & 1, t & 2, s[0], s[1], s[2], t == 1 || t == 2, rng);
}

TEST_P(Bf16Gemm, RandomSizesWithAccumulation) {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> size(1, 300);
  for (int trial = 0; trial < 12; ++trial)
    expect_matches_reference(*GetParam(), trial & 1, (trial >> 1) & 1, size(rng), size(rng), size(rng), trial % 3 == 0,
                             rng);
}

TEST_P(Bf16Gemm, RoundsOperandsToNearestEven) {
  // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 → 1 (even); 1 + 3·2^-8 is halfway between
  // 1 + 2^-7 and 1 + 2^-6 → 1 + 2^-6 (even). Truncation would give 1 and 1 + 2^-7.
  const float a[2] = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8)};
  const float b[2] = {1.0f, 1.0f};
  float c = 0;
  cpu::gemm_bf16(*GetParam(), false, false, 1, 1, 2, a, 2, b, 1, false, &c, 1);
  EXPECT_EQ(c, 2.0f + std::ldexp(1.0f, -6));
}

TEST_P(Bf16Gemm, ResultDoesNotDependOnThreadCount) {
  std::mt19937 rng(5);
  const int64_t M = 300, N = 530, K = 700;
  Operands o = random_operands(true, false, M, N, K, rng);
  std::vector<float> one = o.c, two = o.c;
  set_thread_count(1);
  cpu::gemm_bf16(*GetParam(), true, false, M, N, K, o.a.data(), o.lda, o.b.data(), o.ldb, true, one.data(), o.ldc);
  set_thread_count(2);
  cpu::gemm_bf16(*GetParam(), true, false, M, N, K, o.a.data(), o.lda, o.b.data(), o.ldb, true, two.data(), o.ldc);
  set_thread_count(default_thread_count());
  EXPECT_EQ(one, two);
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, Bf16Gemm, ::testing::ValuesIn(cpu::available_bf16_gemm_kernels()),
                         [](const auto& info) { return std::string(info.param->name); });

TEST(Bf16GemmDispatch, ThisCpuGetsItsBestKernel) {
  const auto kernels = cpu::available_bf16_gemm_kernels();
  ASSERT_FALSE(kernels.empty());
  const char* isa = std::getenv("RETORT_ISA");
  if (isa == nullptr) EXPECT_EQ(&cpu::active_bf16_gemm_kernel(), kernels.back());
}

}  // namespace
}  // namespace retort
