// Every CPU kernel, for every instruction set this machine has, against the f64 reference on
// random inputs of awkward sizes (not multiples of the SIMD width).
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <thread>
#include <chrono>

#include "kernel_reference.h"
#include "kernels/cpu/cpu_backend.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

using test::random_floats;

std::vector<const cpu::IsaKernels*> available_isas() {
  std::vector<const cpu::IsaKernels*> isas{&cpu::scalar_kernels()};
  if (auto* k = cpu::avx2_kernels()) isas.push_back(k);
  if (auto* k = cpu::avx512_kernels()) isas.push_back(k);
  return isas;
}

bool uses_integer_dot(const cpu::IsaKernels& kernels, DType dtype) {
  return cpu::integer_kernels_for(kernels) != nullptr && is_block_quantized(dtype);
}

std::vector<float> quantized_activation_values(const std::vector<float>& in, int64_t tokens, int64_t cols) {
  cpu::QuantizedActivations act;
  cpu::quantize_activations(in.data(), tokens, cols, act);
  std::vector<float> values(in.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = act.scales[i / cpu::kActivationBlock] * act.quants[i];
  return values;
}

std::vector<float> bf16_rounded(std::vector<float> values) {
  for (float& v : values) v = bf16_to_f32(f32_to_bf16(v));
  return values;
}

class CpuKernels : public ::testing::TestWithParam<const cpu::IsaKernels*> {};

TEST_P(CpuKernels, MatmulMatchesReferenceForEveryDtypeAndAwkwardShape) {
  for (ActivationPrecision precision : {ActivationPrecision::F32, ActivationPrecision::Bf16}) {
    CpuBackend backend(*GetParam(), precision);
    // Where the CPU has vdpbf16ps and Bf16 is asked for, bf16 weights meet activations rounded to bf16.
    const bool rounds_activations =
        precision == ActivationPrecision::Bf16 && cpu::bf16_dot_kernels_for(*GetParam()) != nullptr;
    std::mt19937 rng(1234);
    const int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 3},   {3, 5, 17},   {2, 13, 33},  {5, 9, 100},
                                 {4, 37, 95}, {1, 64, 256}, {7, 31, 129}, {9, 70, 45}, {20, 67, 131}, {33, 130, 96},
                                 {6, 19, 40}, {12, 8, 64}, {7, 11, 1500}, {13, 5, 2101}};  // the last two: column stretches
    for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
      for (const auto& shape : shapes) {
        const int64_t tokens = shape[0], rows = shape[1], cols = shape[2];
        auto in = random_floats(static_cast<size_t>(tokens * cols), rng);
        auto stored = test::store_weights(random_floats(static_cast<size_t>(rows * cols), rng), dtype);
        std::vector<float> out(static_cast<size_t>(tokens * rows), -1.0f);
        backend.matmul(out.data(), in.data(), WeightMatrix{dtype, stored.bytes.data(), rows, cols}, tokens);
        if (dtype == DType::BF16 && rounds_activations) in = bf16_rounded(in);
        auto want = test::reference_matmul(in, stored.exact, tokens, rows, cols);
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], want[i], test::dot_tolerance(cols, 4.0))
              << dtype_name(dtype) << " tokens=" << tokens << " rows=" << rows << " cols=" << cols << " i=" << i
              << " bf16 activations=" << rounds_activations;
        }
      }
    }
  }
}

// Block-quantized weights against f64 on their dequantized values, 1 to 11 tokens, rows not a
// multiple of the tile.
TEST_P(CpuKernels, QuantizedMatmulMatchesDequantizedReference) {
  CpuBackend backend(*GetParam());
  std::mt19937 rng(77);
  const std::pair<DType, BlockType> types[] = {{DType::Q8_0, BlockType::Q8_0}, {DType::Q4_0, BlockType::Q4_0},
                                               {DType::Q4_K, BlockType::Q4_K}, {DType::Q6_K, BlockType::Q6_K}};
  for (auto [dtype, block] : types) {
    const int64_t step = dtype_block_elements(dtype);
    for (int64_t cols : {step, 3 * step}) {
      for (int64_t tokens : {1, 3, 5, 11}) {
        const int64_t rows = 13;
        auto weights = random_floats(static_cast<size_t>(rows * cols), rng);
        std::vector<uint8_t> packed(dtype_row_bytes(dtype, cols) * rows);
        quantize_rows(block, weights.data(), packed.data(), rows, cols);
        std::vector<float> dequantized(weights.size());
        dequantize_rows(block, packed.data(), dequantized.data(), rows, cols);
        std::vector<double> exact(dequantized.begin(), dequantized.end());
        auto in = random_floats(static_cast<size_t>(tokens * cols), rng);
        std::vector<float> out(static_cast<size_t>(tokens * rows));
        backend.matmul(out.data(), in.data(), WeightMatrix{dtype, packed.data(), rows, cols}, tokens);
        // Where an integer kernel runs, it sees the activations quantized to 8-bit blocks
        // (test_quant_matmul.cpp bounds that error); the reference takes the same inputs.
        if (uses_integer_dot(*GetParam(), dtype)) in = quantized_activation_values(in, tokens, cols);
        auto want = test::reference_matmul(in, exact, tokens, rows, cols);
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], want[i], test::dot_tolerance(cols, 4.0)) << dtype_name(dtype) << " cols=" << cols << " tokens=" << tokens;
      }
    }
  }
}

TEST_P(CpuKernels, RmsNormMatchesReference) {
  CpuBackend backend(*GetParam());
  std::mt19937 rng(5);
  for (int64_t dim : {1, 7, 33, 130}) {
    const int64_t tokens = 3;
    auto x = random_floats(static_cast<size_t>(tokens * dim), rng, 3.0f);
    auto weight = random_floats(static_cast<size_t>(dim), rng);
    std::vector<float> out(x.size());
    backend.rmsnorm(out.data(), x.data(), weight.data(), tokens, dim, 1e-6f);
    for (int64_t t = 0; t < tokens; ++t) {
      double ms = 0;
      for (int64_t i = 0; i < dim; ++i) ms += double(x[t * dim + i]) * x[t * dim + i];
      double inv = 1.0 / std::sqrt(ms / dim + 1e-6);
      for (int64_t i = 0; i < dim; ++i) ASSERT_NEAR(out[t * dim + i], x[t * dim + i] * inv * weight[i], 1e-5);
    }
  }
}

TEST_P(CpuKernels, RopeRotatesPairsInBothLayouts) {
  CpuBackend backend(*GetParam());
  std::mt19937 rng(9);
  const int64_t tokens = 3, heads = 5, head_dim = 10, half = head_dim / 2;
  auto x = random_floats(static_cast<size_t>(tokens * heads * head_dim), rng);
  auto angles = random_floats(static_cast<size_t>(tokens * half), rng, 3.0f);
  std::vector<float> cos(angles.size()), sin(angles.size());
  for (size_t i = 0; i < angles.size(); ++i) cos[i] = std::cos(angles[i]), sin[i] = std::sin(angles[i]);
  for (RopeLayout layout : {RopeLayout::RotateHalf, RopeLayout::Interleaved}) {
    auto rotated = x;
    backend.rope(rotated.data(), cos.data(), sin.data(), tokens, heads, head_dim, layout);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t pair = 0; pair < half; ++pair) {
          // Rotate-half pairs (i, i + d/2); interleaved pairs (2i, 2i + 1); both by angle i.
          const int64_t a = layout == RopeLayout::RotateHalf ? pair : 2 * pair;
          const int64_t b = layout == RopeLayout::RotateHalf ? pair + half : 2 * pair + 1;
          const float* v = x.data() + (t * heads + h) * head_dim;
          const float* got = rotated.data() + (t * heads + h) * head_dim;
          const double c = cos[t * half + pair], s = sin[t * half + pair];
          ASSERT_NEAR(got[a], v[a] * c - v[b] * s, 1e-5);
          ASSERT_NEAR(got[b], v[b] * c + v[a] * s, 1e-5);
        }
  }
}

TEST_P(CpuKernels, SiluMulAndAddMatchReference) {
  CpuBackend backend(*GetParam());
  std::mt19937 rng(11);
  const int64_t n = 1001;
  auto gate = random_floats(n, rng, 4.0f), up = random_floats(n, rng);
  for (size_t i : {3u, 17u, 500u}) gate[i] = 100.0f;  // exp's argument is clamped, never overflows
  for (size_t i : {4u, 18u, 501u}) gate[i] = -100.0f;
  gate[5] = 0.0f;
  std::vector<float> out(n);
  backend.silu_mul(out.data(), gate.data(), up.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double want = gate[i] / (1 + std::exp(-double(gate[i]))) * up[i];
    ASSERT_NEAR(out[i], want, 1e-5 * (1 + std::fabs(want))) << "gate " << gate[i];  // a few f32 ulps
  }
  auto sum = gate;
  backend.add(sum.data(), up.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_FLOAT_EQ(sum[i], gate[i] + up[i]);
}

// Attention over a paged cache whose blocks are deliberately out of order, with GQA, against f64 on
// the values the cache holds (f16 keys and values are rounded when written, int8 ones quantized
// per head row: the reference takes levels × scale, after checking each is the nearest level). Head sizes that take
// the vector path (multiples of 8 and 16) and one that does not; groups of 1 to 7 query heads;
// positions that end inside a block. The queries are those of the last `queries_count` positions,
// as in a prefill. The kernel's output goes to *kernel_out when asked for.
void check_attention(CpuBackend& backend, DType kv_type, int64_t heads, int64_t kv_heads, int64_t head_dim,
                     int64_t block_size, int64_t length, uint32_t seed, std::vector<float>* kernel_out = nullptr,
                     int64_t queries_count = 3) {
  std::mt19937 rng(seed);
  const int64_t kv_dim = kv_heads * head_dim;
  const int64_t blocks_used = (length + block_size - 1) / block_size;
  std::vector<int32_t> blocks;
  for (int64_t b = 0; b < blocks_used; ++b) blocks.push_back(static_cast<int32_t>(blocks_used + 1 - b));  // reversed
  std::vector<uint8_t> keys((blocks_used + 2) * block_size * kv_dim * dtype_size(kv_type)), values(keys.size());
  auto k_rows = random_floats(static_cast<size_t>(length * kv_dim), rng);
  auto v_rows = random_floats(static_cast<size_t>(length * kv_dim), rng);
  std::vector<float> key_scales((blocks_used + 2) * block_size * kv_heads), value_scales(key_scales.size());
  KvCacheLayout cache{keys.data(), values.data(), block_size, kv_dim, kv_type, head_dim};
  if (kv_type == DType::I8) cache.key_scales = key_scales.data(), cache.value_scales = value_scales.data();
  std::vector<int64_t> slots;
  for (int64_t p = 0; p < length; ++p) slots.push_back(blocks[p / block_size] * block_size + p % block_size);
  backend.kv_write(cache, k_rows.data(), v_rows.data(), slots.data(), length);
  if (kv_type == DType::F16) {  // the reference sees what the cache holds
    for (auto* rows : {&k_rows, &v_rows})
      for (float& x : *rows) x = f16_to_f32(f32_to_f16(x));
  }
  if (kv_type == DType::I8) {  // int8 levels times the row's scale, each within half a level of the input
    for (int64_t p = 0; p < length; ++p)
      for (int64_t h = 0; h < kv_heads; ++h)
        for (auto [rows, stored, scales] : {std::tuple{&k_rows, &keys, &key_scales}, std::tuple{&v_rows, &values, &value_scales}}) {
          const float row_scale = (*scales)[slots[p] * kv_heads + h];
          for (int64_t d = 0; d < head_dim; ++d) {
            float& x = (*rows)[p * kv_dim + h * head_dim + d];
            const float level = static_cast<float>(static_cast<int8_t>((*stored)[cache.row_offset(slots[p], h) + d]));
            ASSERT_LE(std::fabs(level * row_scale - x), 0.5f * row_scale * 1.0001f) << "position " << p << " head " << h;
            x = level * row_scale;
          }
        }
  }
  auto q = random_floats(static_cast<size_t>(queries_count * heads * head_dim), rng);
  std::vector<AttentionQuery> info;
  for (int64_t i = 0; i < queries_count; ++i)
    info.push_back({{blocks.data(), blocks_used}, length - queries_count + i + 1});
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  backend.attention(out.data(), q.data(), info.data(), queries_count, cache, {heads, kv_heads, head_dim, scale});

  for (int64_t i = 0; i < queries_count; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvh = h / (heads / kv_heads), visible = info[i].visible;
      std::vector<double> p(visible);
      for (int64_t pos = 0; pos < visible; ++pos) {
        double s = 0;
        for (int64_t d = 0; d < head_dim; ++d)
          s += double(q[(i * heads + h) * head_dim + d]) * k_rows[pos * kv_dim + kvh * head_dim + d];
        p[pos] = s * scale;
      }
      double mx = *std::max_element(p.begin(), p.end()), total = 0;
      for (auto& v : p) total += (v = std::exp(v - mx));
      for (int64_t d = 0; d < head_dim; ++d) {
        double want = 0;
        for (int64_t pos = 0; pos < visible; ++pos) want += p[pos] / total * v_rows[pos * kv_dim + kvh * head_dim + d];
        ASSERT_NEAR(out[(i * heads + h) * head_dim + d], want, 2e-5)
            << dtype_name(kv_type) << " heads " << heads << "/" << kv_heads << " head_dim " << head_dim << " length "
            << length << " h " << h << " d " << d;
      }
    }
  if (kernel_out != nullptr) *kernel_out = out;
}

TEST_P(CpuKernels, AttentionMatchesReferenceOverScatteredBlocks) {
  CpuBackend backend(*GetParam());
  for (DType kv_type : {DType::F32, DType::F16, DType::I8}) {
    check_attention(backend, kv_type, 6, 2, 12, 4, 11, 21);    // head_dim off the vector widths
    check_attention(backend, kv_type, 12, 2, 16, 16, 37, 22);  // R1-Qwen's 6:1 groups
    check_attention(backend, kv_type, 7, 1, 32, 16, 70, 23);   // an odd group: pairs and a single head
    check_attention(backend, kv_type, 8, 8, 64, 16, 5, 24);    // no grouping
    check_attention(backend, kv_type, 8, 2, 128, 16, 33, 25);  // R1-Llama's 4:1 and its head size
  }
}

// Contexts long enough to be cut into several chunks (256 positions each) that are merged, the
// last one short, at 1 and 3 threads: each matches f64, and the outputs are bitwise the same at
// both thread counts (the chunks depend on the context alone, so batching cannot change a token).
TEST_P(CpuKernels, LongAttentionMergesChunksTheSameAtAnyThreadCount) {
  CpuBackend backend(*GetParam());
  for (DType kv_type : {DType::F32, DType::F16, DType::I8}) {
    std::vector<std::vector<float>> outputs;
    for (int threads : {1, 3}) {
      set_thread_count(threads);
      check_attention(backend, kv_type, 8, 2, 128, 16, 700, 31, &outputs.emplace_back());
      check_attention(backend, kv_type, 6, 3, 12, 7, 530, 32, &outputs.emplace_back());  // blocks not dividing a chunk
    }
    set_thread_count(default_thread_count());
    EXPECT_EQ(outputs[0], outputs[2]) << dtype_name(kv_type);
    EXPECT_EQ(outputs[1], outputs[3]) << dtype_name(kv_type);
  }
}

// A prefill of 200 queries that each see 3-4 chunks: more chunks than one pass holds, so the
// queries are attended in groups.
TEST_P(CpuKernels, LongPrefillAttentionInGroupsOfQueriesMatchesReference) {
  CpuBackend backend(*GetParam());
  for (DType kv_type : {DType::F32, DType::F16, DType::I8})
    check_attention(backend, kv_type, 4, 2, 8, 16, 900, 33, nullptr, 200);
}

TEST_P(CpuKernels, EmbedConvertsRowsAndRejectsOutOfRangeIds) {
  CpuBackend backend(*GetParam());
  std::mt19937 rng(3);
  auto stored = test::store_weights(random_floats(10 * 19, rng), DType::BF16);
  WeightMatrix table{DType::BF16, stored.bytes.data(), 10, 19};
  std::vector<int32_t> ids{9, 0, 4};
  std::vector<float> out(3 * 19);
  backend.embed(out.data(), table, ids.data(), 3);
  for (int t = 0; t < 3; ++t)
    for (int i = 0; i < 19; ++i) ASSERT_EQ(out[t * 19 + i], float(stored.exact[ids[t] * 19 + i]));
  std::vector<int32_t> bad{10};
  EXPECT_THROW(backend.embed(out.data(), table, bad.data(), 1), Error);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuKernels, ::testing::ValuesIn(available_isas()),
                         [](const auto& info) { return std::string(info.param->name); });

// The activations' rounding for vdpbf16ps gives f32_to_bf16's bits (ties to even) at every length.
TEST(Bf16DotKernels, RoundingGivesTheScalarBitsAtAwkwardLengths) {
  const cpu::Bf16DotKernels* kernels = cpu::avx512bf16_dot_kernels();
  if (kernels == nullptr) GTEST_SKIP() << "this CPU lacks AVX512-BF16";
  std::mt19937 rng(99);
  for (int64_t n : {1, 15, 31, 32, 33, 64, 100, 1543}) {
    auto values = random_floats(static_cast<size_t>(n), rng, 3.0f);
    if (n > 4) {  // exact ties between two bf16 values, both parities, and a NaN-free infinity
      values[0] = bf16_to_f32(0x3f80) + 0x1p-8f;   // 1 + half an ulp: ties down to even 0x3f80
      values[1] = bf16_to_f32(0x3f81) + 0x1p-8f;   // ties up to even 0x3f82
      values[2] = -values[1];
      values[3] = std::numeric_limits<float>::infinity();
    }
    std::vector<uint16_t> got(static_cast<size_t>(n));
    kernels->round_to_bf16(got.data(), values.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], f32_to_bf16(values[i])) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (size_t count : {0u, 1u, 5u, 1000u}) {
    std::vector<std::atomic<int>> hits(count);
    std::atomic<int> short_chunks{0};  // shorter than the grain and not the loop's last
    pool.parallel_for(count, 7, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) hits[i]++;
      if (e - b < 7 && e != count) short_chunks++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    EXPECT_EQ(short_chunks.load(), 0) << count;
  }
}

// Loops back to back (workers still spinning from the last one), loops after the workers have
// gone to sleep, and pools destroyed in either state: every index exactly once, every time.
TEST(ThreadPool, BackToBackAndAfterSleepingLoopsCoverEveryIndex) {
  for (int round = 0; round < 3; ++round) {
    ThreadPool pool(3);
    for (int loop = 0; loop < 2000; ++loop) {
      const size_t count = 1 + static_cast<size_t>(loop % 97);
      std::vector<int> hits(count, 0);
      pool.parallel_for(count, 1, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) hits[i]++;
      });
      for (size_t i = 0; i < count; ++i) ASSERT_EQ(hits[i], 1) << "loop " << loop << " index " << i;
      if (loop % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (round == 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// `retort serve` with several models steps each on its own engine thread, all on the one pool:
// loops started from two threads at once must each cover their own indices exactly once.
TEST(ThreadPool, LoopsFromTwoThreadsAtOnceEachCoverEveryIndex) {
  ThreadPool pool(3);
  auto caller = [&pool](size_t count, std::atomic<bool>& failed) {
    for (int loop = 0; loop < 2000 && !failed; ++loop) {
      std::vector<int> hits(count, 0);
      pool.parallel_for(count, 1, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) hits[i]++;
      });
      if (std::any_of(hits.begin(), hits.end(), [](int h) { return h != 1; })) failed = true;
    }
  };
  std::atomic<bool> failed_a{false}, failed_b{false};
  std::thread a(caller, 61, std::ref(failed_a));
  std::thread b(caller, 89, std::ref(failed_b));
  a.join();
  b.join();
  EXPECT_FALSE(failed_a.load());
  EXPECT_FALSE(failed_b.load());
}

}  // namespace
}  // namespace retort
