// The integer-dot quantized matmuls (activations quantized to 8-bit blocks on the fly) against
// f64 on the same dequantized weights and dequantized activations, for every integer kernel set
// this CPU has, on awkward shapes and row ranges; and the activation quantizer's error bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernel_reference.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/weight_repack.h"
#include "tensor/quant_blocks.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

using cpu::IntegerDotKernels;
using cpu::QuantizedActivations;

std::vector<const IntegerDotKernels*> available_integer_kernels() {
  std::vector<const IntegerDotKernels*> sets;
  if (auto* k = cpu::avx2_integer_kernels()) sets.push_back(k);
  if (auto* k = cpu::vnni_integer_kernels()) sets.push_back(k);
  return sets;
}

std::vector<double> dequantized_activations(const QuantizedActivations& act) {
  std::vector<double> values(act.quants.size());
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<double>(act.scales[i / cpu::kActivationBlock]) * act.quants[i];
  return values;
}

struct QuantizedWeights {
  std::vector<uint8_t> packed;
  std::vector<double> exact;  // the dequantized values
};

QuantizedWeights quantize_weights(BlockType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  auto values = test::random_floats(static_cast<size_t>(rows * cols), rng);
  QuantizedWeights w;
  w.packed.resize(static_cast<size_t>(quantized_row_bytes(type, cols) * rows));
  quantize_rows(type, values.data(), w.packed.data(), rows, cols);
  if (type == BlockType::Q8_0)  // −128, which quantize_rows never writes but a file may hold: every 5th block
    for (size_t block = 0; block * 34 < w.packed.size(); block += 5) w.packed[block * 34 + 2 + block % 32] = 0x80;
  std::vector<float> dequantized(values.size());
  dequantize_rows(type, w.packed.data(), dequantized.data(), rows, cols);
  w.exact.assign(dequantized.begin(), dequantized.end());
  return w;
}

DType dtype_of_block(BlockType type) {
  switch (type) {
    case BlockType::Q8_0: return DType::Q8_0;
    case BlockType::Q4_0: return DType::Q4_0;
    case BlockType::Q4_K: return DType::Q4_K;
    default: return DType::Q6_K;
  }
}

cpu::QuantMatmulFn kernel_for(const IntegerDotKernels& set, BlockType type) {
  switch (type) {
    case BlockType::Q8_0: return set.matmul_q8_0;
    case BlockType::Q4_0: return set.matmul_q4_0;
    case BlockType::Q4_K: return set.matmul_q4_k;
    default: return set.matmul_q6_k;
  }
}

class IntegerDot : public ::testing::TestWithParam<const IntegerDotKernels*> {};

cpu::QuantMatmulFn interleaved_kernel_for(const IntegerDotKernels& set, BlockType type) {
  switch (type) {
    case BlockType::Q8_0: return set.matmul_q8_0_x8;
    case BlockType::Q4_0: return set.matmul_q4_0_x8;
    case BlockType::Q4_K: return set.matmul_q4_k_x8;
    default: return set.matmul_q6_k_x8;
  }
}

// Every type, 1, 3 and 7 blocks per row and 1–7 tokens: rows [first_row, rows) through `kernel`
// against f64 on the same dequantized weights and activations; rows before first_row untouched.
// `interleaved` repacks the weights first (rows then in groups of 8 or 16), `line_offset` bytes
// past a 64-byte line (the layout places d by the address).
// `long_rows`: instead, rows whose groups pass kPairedGroupBytes, which one token reads in pairs.
void check_against_f64(const IntegerDotKernels& set, bool interleaved, int64_t rows, int64_t first_row, uint32_t seed,
                       size_t line_offset = 0, bool long_rows = false) {
  std::mt19937 rng(seed);
  for (BlockType type : {BlockType::Q8_0, BlockType::Q4_0, BlockType::Q4_K, BlockType::Q6_K}) {
    const cpu::QuantMatmulFn kernel = interleaved ? interleaved_kernel_for(set, type) : kernel_for(set, type);
    const int64_t paired_blocks = cpu::kPairedGroupBytes / (block_format(type).block_bytes * set.group_rows) + 2;
    const std::vector<int64_t> block_counts = long_rows ? std::vector<int64_t>{paired_blocks} : std::vector<int64_t>{1, 3, 7};
    const std::vector<int64_t> token_counts = long_rows ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 2, 3, 4, 5, 7};
    for (int64_t blocks : block_counts) {
      for (int64_t tokens : token_counts) {
        const int64_t cols = blocks * block_format(type).block_elements;
        auto w = quantize_weights(type, rows, cols, rng);
        std::vector<uint8_t> storage(w.packed.size() + 64 + line_offset);
        uint8_t* weights = w.packed.data();
        if (interleaved) {
          ASSERT_TRUE(cpu::has_interleaved_form(dtype_of_block(type), rows));
          weights = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) / 64 * 64) + line_offset;
          std::memcpy(weights, w.packed.data(), w.packed.size());
          cpu::repack_interleaved(dtype_of_block(type), weights, rows, cols, set.interleaved_form());
        }
        const auto in = test::random_floats(static_cast<size_t>(tokens * cols), rng, 3.0f);
        QuantizedActivations act;
        cpu::quantize_activations(in.data(), tokens, cols, act);
        const auto act_exact = dequantized_activations(act);
        std::vector<float> act_as_float(act_exact.begin(), act_exact.end());
        const auto want = test::reference_matmul(act_as_float, w.exact, tokens, rows, cols);
        std::vector<float> out(static_cast<size_t>(tokens * rows), -7.0f);
        kernel(out.data(), rows, act, weights, first_row, rows);
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            const size_t i = static_cast<size_t>(t * rows + r);
            if (r < first_row) {
              ASSERT_EQ(out[i], -7.0f) << "row outside the range was written";
              continue;
            }
            double magnitude = 0;
            for (int64_t k = 0; k < cols; ++k)
              magnitude += std::fabs(act_exact[static_cast<size_t>(t * cols + k)] * w.exact[static_cast<size_t>(r * cols + k)]);
            ASSERT_NEAR(out[i], want[i], 2e-6 * magnitude + 1e-6)
                << block_format(type).name << " cols=" << cols << " tokens=" << tokens << " row=" << r;
          }
      }
    }
  }
}

// Rows [2, 13): a range that starts inside the matrix and is not a multiple of the tile.
TEST_P(IntegerDot, MatchesF64OnDequantizedWeightsAndActivations) { check_against_f64(*GetParam(), false, 13, 2, 2024); }

// The Interleaved layout: 5 groups of 8 rows, the range starting at the third (one group of 16
// for the 512-bit kernels, then 8 rows left over); then 7 groups of 8 from the first (three of
// 16 and 8 rows left over); then 2 groups from the second (ranges may start at any group of 8
// where the groups are of 8).
// Each at 0, 16 and 32 bytes into a cache line, so blocks of every group size store d both ways.
TEST_P(IntegerDot, InterleavedMatchesF64OnDequantizedWeightsAndActivations) {
  for (size_t line_offset : {0, 16, 32}) {
    check_against_f64(*GetParam(), true, 40, 16, 77, line_offset);
    check_against_f64(*GetParam(), true, 56, 0, 78, line_offset);
    if (GetParam()->group_rows == 8) check_against_f64(*GetParam(), true, 16, 8, 79, line_offset);
  }
}

// Rows long enough that one token's kernel reads the groups in pairs: 88 rows from the 16th (pairs,
// then a lone group, and for 16-row groups 8 rows left over), 56 from the first.
TEST_P(IntegerDot, InterleavedLongRowsMatchF64) {
  for (size_t line_offset : {0, 32}) {
    check_against_f64(*GetParam(), true, 88, 16, 80, line_offset, true);
    check_against_f64(*GetParam(), true, 56, 0, 81, line_offset, true);
  }
}

// The largest 4-bit products (every nibble 15, every activation 127) through the interleaved Q4_0
// and Q4_K kernels: the AVX2 form adds 8 of them in int16 lanes before widening, which must not
// wrap. Q4_0: w = 15 − 8 = 7 everywhere; Q4_K: d = 1, every 6-bit scale 63, mins 0, so w = 945.
TEST_P(IntegerDot, InterleavedNibbleExtremesDoNotWrap) {
  const uint16_t one = f32_to_f16(1.0f);
  for (BlockType type : {BlockType::Q4_0, BlockType::Q4_K}) {
    const BlockFormat& format = block_format(type);
    const int64_t rows = 24, cols = 2 * format.block_elements;  // a pair of groups and one more
    std::vector<uint8_t> bytes(static_cast<size_t>(quantized_row_bytes(type, cols) * rows));
    for (int64_t b = 0; b < rows * cols / format.block_elements; ++b) {
      uint8_t* block = bytes.data() + b * format.block_bytes;
      std::fill_n(block, format.block_bytes, uint8_t{0xFF});
      std::memcpy(block, &one, 2);
      if (type == BlockType::Q4_K) {
        std::memset(block + 2, 0, 2);     // dmin 0
        std::memset(block + 8, 0, 4);     // mins 0–3 and the top bits of mins 4–7
        std::memset(block + 12, 0x0F, 4); // scales 4–7: low 4 bits 15 (top 2 bits in bytes 4–7: 3); mins 4–7: 0
      }
    }
    const double weight = type == BlockType::Q4_0 ? 7.0 : 945.0;
    const DType dtype = dtype_of_block(type);
    cpu::repack_interleaved(dtype, bytes.data(), rows, cols, GetParam()->interleaved_form());
    std::vector<float> in(static_cast<size_t>(cols), 1.0f);
    QuantizedActivations act;
    cpu::quantize_activations(in.data(), 1, cols, act);
    std::vector<float> out(rows);
    interleaved_kernel_for(*GetParam(), type)(out.data(), rows, act, bytes.data(), 0, rows);
    const double want = weight * 127.0 * act.scales[0] * cols;
    for (float got : out) EXPECT_NEAR(got, want, 1e-5 * want) << format.name;
  }
}

// The SIMD activation quantizer writes the portable loop's bytes, ties included.
TEST_P(IntegerDot, SimdQuantizerGivesThePortableBytes) {
  std::mt19937 rng(5);
  const int64_t tokens = 5, cols = 160;
  auto in = test::random_floats(static_cast<size_t>(tokens * cols), rng, 2.0f);
  for (size_t i = 0; i < 32; ++i) in[i] = (static_cast<float>(i % 9) - 4.0f) * 0.5f;  // exact halves of a step
  std::fill(in.begin() + 64, in.begin() + 96, 0.0f);
  QuantizedActivations want, got;
  cpu::quantize_activations(in.data(), tokens, cols, want);
  cpu::size_activations(tokens, cols, got);
  GetParam()->quantize_rows(in.data(), 0, tokens, got);
  EXPECT_EQ(got.quants, want.quants);
  EXPECT_EQ(got.scales, want.scales);
  EXPECT_EQ(got.sums, want.sums);
  EXPECT_EQ(got.half_sums, want.half_sums);
}

// A Q8_0 block holding −128 (a legal int8 that llama.cpp's quantizer never writes) against
// activations at ±127: the AVX2 form multiplies into int16 pairs and must not saturate.
TEST_P(IntegerDot, Q8_0ExtremesDoNotSaturate) {
  const int64_t cols = 64;
  std::vector<uint8_t> row(2 * 34);
  for (int b = 0; b < 2; ++b) {
    const uint16_t one = f32_to_f16(1.0f);
    std::memcpy(row.data() + b * 34, &one, 2);
    for (int i = 0; i < 32; ++i) row[static_cast<size_t>(b * 34 + 2 + i)] = (i % 3 == 0) ? 0x80 : 0x81;  // −128, −127
  }
  std::vector<float> in(static_cast<size_t>(cols), -1.0f);
  QuantizedActivations act;
  cpu::quantize_activations(in.data(), 1, cols, act);
  double want = 0;
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 32; ++i) want += (i % 3 == 0 ? -128.0 : -127.0) * act.scales[0] * act.quants[static_cast<size_t>(i)];
  float out = 0;
  GetParam()->matmul_q8_0(&out, 1, act, row.data(), 0, 1);
  EXPECT_NEAR(out, want, 1e-5 * std::fabs(want));
}

INSTANTIATE_TEST_SUITE_P(AllIntegerSets, IntegerDot, ::testing::ValuesIn(available_integer_kernels()),
                         [](const auto& info) { return std::string(info.param->name); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(IntegerDot);

TEST(QuantizeActivations, EachValueWithinHalfAStepAndSumsMatch) {
  std::mt19937 rng(9);
  const int64_t tokens = 3, cols = 96;
  auto in = test::random_floats(static_cast<size_t>(tokens * cols), rng, 5.0f);
  std::fill(in.begin() + 32, in.begin() + 64, 0.0f);  // an all-zero block gets scale 0
  QuantizedActivations act;
  cpu::quantize_activations(in.data(), tokens, cols, act);
  ASSERT_EQ(act.scales.size(), 9u);
  EXPECT_EQ(act.scales[1], 0.0f);
  for (size_t b = 0; b < act.scales.size(); ++b) {
    int32_t sum = 0;
    for (size_t i = b * 32; i < (b + 1) * 32; ++i) {
      ASSERT_LE(std::abs(static_cast<int>(act.quants[i])), 127);
      EXPECT_LE(std::fabs(in[i] - act.scales[b] * act.quants[i]), 0.5f * act.scales[b] * 1.0001f + 1e-7f);
      sum += act.quants[i];
    }
    EXPECT_EQ(act.sums[b], sum);
    int32_t first_half = 0;
    for (size_t i = b * 32; i < b * 32 + 16; ++i) first_half += act.quants[i];
    EXPECT_EQ(act.half_sums[2 * b], first_half);
    EXPECT_EQ(act.half_sums[2 * b + 1], sum - first_half);
  }
}

// Through the backend: a few tokens on Q8_0/Q4_0/Q4_K/Q6_K take the integer path, whose only error
// beyond f32 rounding is the activations' quantization: |Σ w·(x − x̂)| ≤ Σ |w|·d/2 per block.
// Enough rows that the thread pool splits them (every worker must see the same activations).
TEST(IntegerDotBackend, ErrorAgainstUnquantizedActivationsWithinTheQuantizationBound) {
  set_thread_count(3);
  CpuBackend backend;
  std::mt19937 rng(31);
  for (BlockType type : {BlockType::Q8_0, BlockType::Q4_0, BlockType::Q4_K, BlockType::Q6_K}) {
    const int64_t rows = 997, cols = 512, tokens = 3;
    const auto w = quantize_weights(type, rows, cols, rng);
    const auto in = test::random_floats(static_cast<size_t>(tokens * cols), rng);
    QuantizedActivations act;
    cpu::quantize_activations(in.data(), tokens, cols, act);
    const DType dtype = dtype_of_block(type);
    std::vector<float> out(static_cast<size_t>(tokens * rows));
    backend.matmul(out.data(), in.data(), WeightMatrix{dtype, w.packed.data(), rows, cols}, tokens);
    const auto want = test::reference_matmul(in, w.exact, tokens, rows, cols);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double bound = 1e-4;
        for (int64_t k = 0; k < cols; ++k)
          bound += std::fabs(w.exact[static_cast<size_t>(r * cols + k)]) * 0.5 * act.scales[static_cast<size_t>((t * cols + k) / 32)];
        const size_t i = static_cast<size_t>(t * rows + r);
        ASSERT_LE(std::fabs(out[i] - want[i]), bound) << block_format(type).name << " token " << t << " row " << r;
      }
  }
  set_thread_count(default_thread_count());
}

// Backend::repack rewrites block-quantized matrices whose rows come in groups of 8, and the product
// of the repacked matrix equals the row layout's within f32 summation order; a matrix whose rows
// do not fill groups of 8 is left alone. Several threads, so pieces of whole 8-row groups are split across workers.
TEST(IntegerDotBackend, RepackedMatricesGiveTheRowLayoutsProducts) {
  set_thread_count(3);
  CpuBackend backend;
  std::mt19937 rng(41);
  for (BlockType type : {BlockType::Q8_0, BlockType::Q4_0, BlockType::Q4_K, BlockType::Q6_K}) {
    for (int64_t tokens : {1, 4, 9}) {
      const int64_t rows = 1000, cols = 256;
      auto w = quantize_weights(type, rows, cols, rng);
      const auto in = test::random_floats(static_cast<size_t>(tokens * cols), rng);
      WeightMatrix plain{dtype_of_block(type), w.packed.data(), rows, cols};
      std::vector<float> want(static_cast<size_t>(tokens * rows)), got(want.size());
      backend.matmul(want.data(), in.data(), plain, tokens);
      std::vector<uint8_t> bytes = w.packed;
      WeightMatrix repacked{plain.dtype, bytes.data(), rows, cols};
      const bool changed = backend.repack(repacked, bytes.data());
      ASSERT_TRUE(changed) << block_format(type).name;
      ASSERT_EQ(repacked.layout, WeightLayout::Interleaved);
      backend.matmul(got.data(), in.data(), repacked, tokens);
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-4 * (1.0 + std::fabs(want[i]))) << block_format(type).name << " at " << i;
    }
  }
  WeightMatrix odd_rows{DType::Q8_0, nullptr, 12, 32};
  EXPECT_FALSE(backend.repack(odd_rows, nullptr));
  set_thread_count(default_thread_count());
}

}  // namespace
}  // namespace retort
