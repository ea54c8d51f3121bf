// AVX512-VNNI instantiation of the integer dot products (vpdpbusd: 256-bit through AVX512-VL for
// the row-major kernels, 512-bit for two interleaved groups at once);
// compiled with -mavx512vnni in a unit of its own, since some AVX-512 CPUs lack VNNI.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/weight_repack.h"
#include "util/cpu_features.h"

namespace retort::cpu {
namespace {

struct VnniIntegerDot {
  static constexpr int kTileRows = 4;  // 4 rows × 4 tokens of accumulators, of 32 registers
  static constexpr bool kWholeBytes = true;  // dpbusd takes unsigned bytes up to 255, sums in int32
  static __m256i dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static __m256i nibble_dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static __m256i nibble_total(__m256i acc) { return acc; }
};

#include "kernels/cpu/quant_matmul.inc"

// Groups of 16 rows in 512 bits (interleaved_matmul.inc): one vpdpbusd does 16 rows × 4 columns
// against the same 4 broadcast activation bytes, and every field of the 16 rows is one load.
struct Lanes16Vnni {
  using ivec = __m512i;
  using fvec = __m512;
  static constexpr int64_t kRows = 16;
  static constexpr bool kWholeBytes = true;  // as VnniIntegerDot
  static __m128i load_16_bytes(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static ivec quants(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static fvec halves(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static ivec byte_field(const uint8_t* field, int k) { return _mm512_cvtepu8_epi32(load_16_bytes(field + 16 * k)); }
  static ivec signed_byte_field(const uint8_t* field) { return _mm512_cvtepi8_epi32(load_16_bytes(field)); }
  // Non-temporal: the weights are read once per call, and a T0 stream pushed the activations, which
  // every 16-row group reads again, out of L1 (ffn_down's 8960-column rows: 80 KB per group against
  // 48 KB of L1). bench_kernels from memory, 3 alternations at a probe of 36–56 GB/s: q4_0 ffn_up
  // 35–37 → 41–47 GB/s, ffn_down 30–36 → 34–41; q8_0 30–36 → 40–54 and 33 → 32–44.
  static void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_NTA); }
  static ivec broadcast4(const int8_t* p) { return _mm512_set1_epi32(load_4_bytes(p)); }
  static ivec dot(ivec acc, ivec u, ivec s) { return _mm512_dpbusd_epi32(acc, u, s); }
  static ivec nibble_dot(ivec acc, ivec u, ivec s) { return _mm512_dpbusd_epi32(acc, u, s); }
  static ivec nibble_total(ivec acc) { return acc; }
  // dot with 4 activation bytes broadcast from memory inside the instruction ({1to16}): one
  // instruction where a separate vpbroadcastd took two, which GCC does not fold for vpdpbusd.
  static ivec dot_broadcast(ivec acc, ivec u, const int8_t* p) {
    asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*reinterpret_cast<const int32_t*>(p)));
    return acc;
  }
  static ivec izero() { return _mm512_setzero_si512(); }
  static ivec bytes(char c) { return _mm512_set1_epi8(c); }
  static ivec int32s(int32_t v) { return _mm512_set1_epi32(v); }
  static ivec and_(ivec a, ivec b) { return _mm512_and_si512(a, b); }
  static ivec andnot_(ivec a, ivec b) { return _mm512_andnot_si512(a, b); }  // ~a & b
  static ivec or_(ivec a, ivec b) { return _mm512_or_si512(a, b); }
  static ivec sub32(ivec a, ivec b) { return _mm512_sub_epi32(a, b); }
  static ivec add32(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
  static ivec srai32(ivec a, int n) { return _mm512_srai_epi32(a, static_cast<unsigned>(n)); }
  static ivec srli16(ivec a, int n) { return _mm512_srli_epi16(a, static_cast<unsigned>(n)); }
  static ivec slli16(ivec a, int n) { return _mm512_slli_epi16(a, static_cast<unsigned>(n)); }
  static ivec srli32(ivec a, int n) { return _mm512_srli_epi32(a, static_cast<unsigned>(n)); }
  static ivec slli32(ivec a, int n) { return _mm512_slli_epi32(a, static_cast<unsigned>(n)); }
  static fvec fzero() { return _mm512_setzero_ps(); }
  static fvec floats(float v) { return _mm512_set1_ps(v); }
  static fvec to_float(ivec a) { return _mm512_cvtepi32_ps(a); }
  static fvec mul(fvec a, fvec b) { return _mm512_mul_ps(a, b); }
  static fvec fmadd(fvec a, fvec b, fvec c) { return _mm512_fmadd_ps(a, b, c); }
  static fvec fnmadd(fvec a, fvec b, fvec c) { return _mm512_fnmadd_ps(a, b, c); }
  static void store(float* p, fvec v) { _mm512_storeu_ps(p, v); }
};

}  // namespace

const IntegerDotKernels* vnni_integer_kernels() {
  // The CPU check comes first: building the table in this unit may already use the
  // instruction set's registers.
  const auto& cpu = cpu_features();
  if (!(cpu.avx512_vnni && cpu.avx512vl && cpu.avx512bw && cpu.avx512f && cpu.f16c)) return nullptr;
  static const IntegerDotKernels kernels = make_integer_kernels<VnniIntegerDot, Lanes16Vnni>("vnni");
  return &kernels;
}

}  // namespace retort::cpu
