#include "kernels/cpu/bf16_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kernels/cpu/isa_kernels.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::cpu {

namespace {

constexpr int64_t kRows = kBf16TileRows, kCols = kBf16TileCols;
// K is walked in chunks so the packed operands of one chunk stay small (a 32-column B panel of
// 256 k is 16 KiB, an 8-row A panel 4 KiB: both sit in L1 while a tile runs).
constexpr int64_t kChunkK = 256;
// A thread's unit of work: a block of 128 rows × 256 columns of C, column panels outermost so the
// B panel stays in L1 while every A panel of the block passes by.
constexpr int64_t kBlockRows = 128, kBlockCols = 256;

void scalar_tile(int64_t k_pairs, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc, bool accumulate) {
  float acc[kRows][kCols];
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t j = 0; j < kCols; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
  for (int64_t p = 0; p < k_pairs; ++p) {
    const uint16_t* ap = a + p * kRows * 2;
    const uint16_t* bp = b + p * kCols * 2;
    for (int64_t i = 0; i < kRows; ++i) {
      const float a0 = bf16_to_f32(ap[2 * i]), a1 = bf16_to_f32(ap[2 * i + 1]);
      for (int64_t j = 0; j < kCols; ++j)
        acc[i][j] = std::fma(a1, bf16_to_f32(bp[2 * j + 1]), std::fma(a0, bf16_to_f32(bp[2 * j]), acc[i][j]));
    }
  }
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t j = 0; j < kCols; ++j) c[i * ldc + j] = acc[i][j];
}

// f32 → bf16 bits, round to nearest even (NaN stays NaN), without branches so packing loops
// vectorise.
inline uint32_t bf16_bits(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  const uint32_t rounded = (word + 0x7fffu + ((word >> 16) & 1u)) >> 16;
  return (word & 0x7fffffffu) > 0x7f800000u ? ((word >> 16) | 0x40u) : rounded;
}

// Packs `count` (≤ width) rows i of a panel over k in [k0, k0 + kc) as bf16 pairs, one 32-bit
// word per (pair, row): dst[p][i] = bf16 x(i0 + i, k0 + 2p) | bf16 x(i0 + i, k0 + 2p + 1) << 16.
// Missing rows and the odd k's partner are zero. Element (i, k) is src[k·ld + i] when k_major,
// else src[i·ld + k].
void pack_panel(const float* src, int64_t ld, bool k_major, int64_t i0, int64_t count, int64_t k0, int64_t kc,
                int64_t width, uint16_t* dst) {
  const int64_t k_pairs = (kc + 1) / 2, full_pairs = kc / 2;
  // One pair is one 32-bit word; stored with memcpy since the buffer's type is uint16_t.
  auto store = [](uint16_t* at, uint32_t pair) { std::memcpy(at, &pair, sizeof pair); };
  if (count < width) std::fill_n(dst, k_pairs * width * 2, uint16_t(0));
  if (k_major) {
    for (int64_t p = 0; p < k_pairs; ++p) {
      const float* even = src + (k0 + 2 * p) * ld + i0;
      const float* odd = 2 * p + 1 < kc ? even + ld : nullptr;
      uint16_t* out = dst + p * width * 2;
      if (odd != nullptr)
        for (int64_t i = 0; i < count; ++i) store(out + 2 * i, bf16_bits(even[i]) | bf16_bits(odd[i]) << 16);
      else
        for (int64_t i = 0; i < count; ++i) store(out + 2 * i, bf16_bits(even[i]));
    }
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const float* row = src + (i0 + i) * ld + k0;
      uint16_t* out = dst + 2 * i;
      for (int64_t p = 0; p < full_pairs; ++p)
        store(out + p * width * 2, bf16_bits(row[2 * p]) | bf16_bits(row[2 * p + 1]) << 16);
      if (k_pairs > full_pairs) store(out + full_pairs * width * 2, bf16_bits(row[kc - 1]));
    }
  }
}

// One tile of C at (i0, j0), through a full-size scratch tile where C's edge cuts it short.
void run_tile(const Bf16GemmKernel& kernel, int64_t k_pairs, const uint16_t* a, const uint16_t* b, float* C,
              int64_t ldc, int64_t i0, int64_t j0, int64_t M, int64_t N, bool accumulate) {
  const int64_t rows = std::min(kRows, M - i0), cols = std::min(kCols, N - j0);
  float* c = C + i0 * ldc + j0;
  if (rows == kRows && cols == kCols) {
    kernel.tile(k_pairs, a, b, c, ldc, accumulate);
    return;
  }
  float scratch[kRows * kCols] = {};
  if (accumulate)
    for (int64_t i = 0; i < rows; ++i) std::copy_n(c + i * ldc, cols, scratch + i * kCols);
  kernel.tile(k_pairs, a, b, scratch, kCols, accumulate);
  for (int64_t i = 0; i < rows; ++i) std::copy_n(scratch + i * kCols, cols, c + i * ldc);
}

}  // namespace

const Bf16GemmKernel& scalar_bf16_gemm_kernel() {
  static const Bf16GemmKernel kernel{"scalar", scalar_tile};
  return kernel;
}

std::vector<const Bf16GemmKernel*> available_bf16_gemm_kernels() {
  std::vector<const Bf16GemmKernel*> kernels{&scalar_bf16_gemm_kernel()};
  if (const Bf16GemmKernel* k = avx2_bf16_gemm_kernel()) kernels.push_back(k);
  if (const Bf16GemmKernel* k = avx512bf16_gemm_kernel()) kernels.push_back(k);
  return kernels;
}

const Bf16GemmKernel& active_bf16_gemm_kernel() {
  static const Bf16GemmKernel& chosen = [&]() -> const Bf16GemmKernel& {
    // Follow the float kernels' choice (which honours RETORT_ISA), then add vdpbf16ps on top of
    // AVX-512 where the CPU has it.
    const std::string_view isa = active_kernels().name;
    if (isa == "scalar") return scalar_bf16_gemm_kernel();
    if (isa == "avx512")
      if (const Bf16GemmKernel* k = avx512bf16_gemm_kernel()) return *k;
    if (const Bf16GemmKernel* k = avx2_bf16_gemm_kernel()) return *k;
    return scalar_bf16_gemm_kernel();
  }();
  return chosen;
}

void gemm_bf16(const Bf16GemmKernel& kernel, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               const float* A, int64_t lda, const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  require(M >= 0 && N >= 0 && K >= 0, ErrorKind::InvalidInput, "gemm_bf16: negative size {}×{}×{}", M, N, K);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill_n(C + i * ldc, N, 0.0f);
    return;
  }
  const int64_t a_panels = (M + kRows - 1) / kRows, b_panels = (N + kCols - 1) / kCols;
  const int64_t pair_cap = (std::min(K, kChunkK) + 1) / 2;
  const int64_t a_panel_size = pair_cap * kRows * 2, b_panel_size = pair_cap * kCols * 2;
  thread_local std::vector<uint16_t> packed;
  packed.resize(static_cast<size_t>(a_panels * a_panel_size + b_panels * b_panel_size));
  uint16_t* packed_a = packed.data();
  uint16_t* packed_b = packed_a + a_panels * a_panel_size;
  const int64_t row_blocks = (M + kBlockRows - 1) / kBlockRows, col_blocks = (N + kBlockCols - 1) / kBlockCols;
  ThreadPool& pool = thread_pool();

  for (int64_t k0 = 0; k0 < K; k0 += kChunkK) {
    const int64_t kc = std::min(kChunkK, K - k0), k_pairs = (kc + 1) / 2;
    pool.parallel_for(size_t(a_panels + b_panels), 4, [&](size_t begin, size_t end) {
      for (int64_t p = int64_t(begin); p < int64_t(end); ++p) {
        if (p < a_panels) {
          pack_panel(A, lda, trans_a, p * kRows, std::min(kRows, M - p * kRows), k0, kc, kRows,
                     packed_a + p * a_panel_size);
        } else {
          const int64_t q = p - a_panels;
          pack_panel(B, ldb, !trans_b, q * kCols, std::min(kCols, N - q * kCols), k0, kc, kCols,
                     packed_b + q * b_panel_size);
        }
      }
    });
    const bool add = accumulate || k0 > 0;
    pool.parallel_for(size_t(row_blocks * col_blocks), 1, [&](size_t begin, size_t end) {
      for (int64_t task = int64_t(begin); task < int64_t(end); ++task) {
        const int64_t i_begin = (task % row_blocks) * kBlockRows, j_begin = (task / row_blocks) * kBlockCols;
        const int64_t i_end = std::min(M, i_begin + kBlockRows), j_end = std::min(N, j_begin + kBlockCols);
        for (int64_t j0 = j_begin; j0 < j_end; j0 += kCols) {
          const uint16_t* b = packed_b + (j0 / kCols) * b_panel_size;
          for (int64_t i0 = i_begin; i0 < i_end; i0 += kRows)
            run_tile(kernel, k_pairs, packed_a + (i0 / kRows) * a_panel_size, b, C, ldc, i0, j0, M, N, add);
        }
      }
    });
  }
}

}  // namespace retort::cpu
