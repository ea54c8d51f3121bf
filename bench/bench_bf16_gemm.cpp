// The bf16 GEMM (kernels/cpu/bf16_gemm.h) against OpenBLAS sgemm on the training model's shapes
// (bench_train's 31 M model at batch 4 × 256: 1024 tokens; hidden 512, FFN 1408, vocab 8192),
// every available bf16 kernel, at the pool's thread count. Prints GFLOP/s and the ratio to sgemm.
//   bench_bf16_gemm [--threads N] [--reps N]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"
#include "train/layers.h"
#include "util/thread_pool.h"

using namespace retort;

int main(int argc, char** argv) {
  int threads = 1, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--threads") threads = std::atoi(argv[i + 1]);
    else if (arg == "--reps") reps = std::atoi(argv[i + 1]);
  }
  set_thread_count(threads);
  openblas_set_num_threads(1);
  struct Shape {
    const char* what;
    bool ta, tb;
    int64_t M, N, K;
  };
  const Shape shapes[] = {
      {"forward X·Wᵀ (gate_up)", false, true, 1024, 2816, 512}, {"backward dY·W (gate_up)", false, false, 1024, 512, 2816},
      {"backward dYᵀ·X (gate_up)", true, false, 2816, 512, 1024}, {"forward X·Wᵀ (down)", false, true, 1024, 512, 1408},
      {"LM head forward", false, true, 1024, 8192, 512},          {"LM head dY·W", false, false, 1024, 512, 8192},
  };
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  auto seconds_of = [&](auto&& run) {
    run();
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
  };
  std::printf("threads %d\n%-26s %10s", threads, "shape", "sgemm");
  std::vector<const cpu::Bf16GemmKernel*> kernels;  // the scalar one is far too slow for these sizes
  for (const auto* k : cpu::available_bf16_gemm_kernels())
    if (std::string(k->name) != "scalar") kernels.push_back(k);
  for (const auto* k : kernels) std::printf(" %16s", k->name);
  std::printf("   (GFLOP/s, ratio to sgemm)\n");
  for (const Shape& s : shapes) {
    std::vector<float> a(size_t(s.M * s.K)), b(size_t(s.K * s.N)), c(size_t(s.M * s.N));
    for (auto& x : a) x = normal(rng);
    for (auto& x : b) x = normal(rng);
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
    const double f32 = seconds_of([&] {
      train::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.N);
    });
    std::printf("%-26s %10.1f", s.what, flops / f32 / 1e9);
    for (const auto* k : kernels) {
      const double t = seconds_of([&] {
        cpu::gemm_bf16(*k, s.ta, s.tb, s.M, s.N, s.K, a.data(), lda, b.data(), ldb, false, c.data(), s.N);
      });
      std::printf(" %9.1f %5.2fx", flops / t / 1e9, f32 / t);
    }
    std::printf("\n");
  }
  return 0;
}
