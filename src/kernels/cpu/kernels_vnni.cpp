// AVX512-VNNI instantiation of the integer dot products (256-bit vpdpbusd through AVX512-VL);
// compiled with -mavx512vnni in a unit of its own, since some AVX-512 CPUs lack VNNI.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct VnniIntegerDot {
  static constexpr int kTileRows = 4;  // 4 rows × 4 tokens of accumulators, of 32 registers
  static __m256i dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static __m256i nibble_dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static __m256i nibble_total(__m256i acc) { return acc; }
};

#include "kernels/cpu/quant_matmul.inc"

}  // namespace

const IntegerDotKernels* vnni_integer_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512_vnni && cpu.avx512vl && cpu.avx512bw && cpu.avx512f && cpu.f16c)) return nullptr;
  static const IntegerDotKernels kernels = make_integer_kernels<VnniIntegerDot>("vnni");
  return &kernels;
}

}  // namespace retort::cpu
