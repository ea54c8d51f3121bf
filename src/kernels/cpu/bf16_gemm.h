#pragma once
// bf16 mixed-precision GEMM for training: C[M×N] = op(A)·op(B) (+ C), row-major, where every
// element of A and B is rounded to bf16 (round to nearest even) and the products are summed in
// f32. Debian's OpenBLAS has no cblas_sbgemm, so this is our own: both operands are packed into
// bf16 panels once per K chunk, then a register tile per instruction set multiplies them
// (AVX512-BF16 vdpbf16ps where the CPU has it; elsewhere bf16 → f32 and FMA, the same result up
// to the order of the sums).
//
// The sums for one output element run over K in a fixed order whatever the thread count, so
// results are reproducible across runs and thread counts. bf16 subnormals (|x| < 1.2e-38) are
// flushed to zero by vdpbf16ps and kept by the other kernels.
#include <cstdint>
#include <vector>

namespace retort::cpu {

// The register tile all kernels share: kBf16TileRows × kBf16TileCols outputs. Packed panels hold
// pairs of consecutive k for each row (A) or column (B): panel[p][i][2] = x(i, 2p + {0, 1}).
inline constexpr int64_t kBf16TileRows = 8;
inline constexpr int64_t kBf16TileCols = 32;

// c[i·ldc + j] = (accumulate ? c[i·ldc + j] : 0) + Σ_k a(i, k)·b(k, j) over a full tile, with
// k_pairs pairs of k in the packed panels a [k_pairs][rows][2] and b [k_pairs][cols][2].
using Bf16TileFn = void (*)(int64_t k_pairs, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                            bool accumulate);

struct Bf16GemmKernel {
  const char* name;
  Bf16TileFn tile;
};

const Bf16GemmKernel& scalar_bf16_gemm_kernel();
const Bf16GemmKernel* avx2_bf16_gemm_kernel();       // nullptr without AVX2 + FMA
const Bf16GemmKernel* avx512bf16_gemm_kernel();      // nullptr without AVX512-BF16 (+ F/BW/VL)
// Every kernel this CPU runs, best last (for tests and benchmarks).
std::vector<const Bf16GemmKernel*> available_bf16_gemm_kernels();
// The best one, following RETORT_ISA like the other kernels (scalar / avx2 force those; avx512
// takes vdpbf16ps where the CPU has it).
const Bf16GemmKernel& active_bf16_gemm_kernel();

// C[M×N] = op(A)[M×K] · op(B)[K×N] (+ C when accumulate), operands rounded to bf16, split over the
// thread pool. op(A)(i, k) = trans_a ? A[k·lda + i] : A[i·lda + k]; likewise B.
void gemm_bf16(const Bf16GemmKernel& kernel, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               const float* A, int64_t lda, const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc);
inline void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  gemm_bf16(active_bf16_gemm_kernel(), trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
}

}  // namespace retort::cpu
