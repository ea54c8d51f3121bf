#pragma once
// The innermost loops, one set per instruction set. Each set is compiled in its own translation
// unit with its own -m flags (kernels_<isa>.cpp) and picked at run time from what the CPU has, so
// one binary runs everywhere and uses AVX-512 where it exists.
#include <cstdint>

#include "kernels/cpu/quantized_activations.h"
#include "kernels/cpu/weight_repack.h"

namespace retort::cpu {

// out[t * out_stride + r] = Σ_k in[t * in_stride + k] · W[r * cols + k]
// for rows r in [row_begin, row_end) and tokens t in [0, tokens).
using MatmulTileFn = void (*)(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                              const void* weights, int64_t cols, int64_t row_begin, int64_t row_end,
                              int64_t tokens);
using DotFn = float (*)(const float* a, const float* b, int64_t n);
using AxpyFn = void (*)(float* y, float a, const float* x, int64_t n);  // y += a·x
using ScaleFn = void (*)(float* y, float a, int64_t n);                 // y *= a
using ToF32Fn = void (*)(float* out, const void* in, int64_t n);        // storage type → f32
using FromF32Fn = void (*)(void* out, const float* in, int64_t n);      // f32 → storage type
// One block of n cached positions of one KV head, rows `stride` elements apart (f32 or f16):
// scores[g · score_stride + p] = scale · q_g · K_p for the `group` query heads q_g = q + g·head_dim.
using AttentionScoresFn = void (*)(float* scores, int64_t score_stride, const float* q, int64_t group,
                                   const void* keys, int64_t stride, int64_t n, int64_t head_dim, float scale);
// out_g += Σ_p probs[g · prob_stride + p] · V_p, out_g = out + g·head_dim.
using AttentionValuesFn = void (*)(float* out, const float* probs, int64_t prob_stride, int64_t group,
                                   const void* values, int64_t stride, int64_t n, int64_t head_dim);

struct IsaKernels {
  const char* name;
  MatmulTileFn matmul_f32;
  MatmulTileFn matmul_f16;
  MatmulTileFn matmul_bf16;
  MatmulTileFn matmul_q8_0;  // GGUF Q8_0 rows (cols a multiple of 32)
  DotFn dot;
  AxpyFn axpy;
  ScaleFn scale;
  ToF32Fn f16_to_f32;
  ToF32Fn bf16_to_f32;
  FromF32Fn f32_to_f16;  // round to nearest even, as F16C does
  AttentionScoresFn attention_scores_f32;
  AttentionScoresFn attention_scores_f16;
  AttentionScoresFn attention_scores_i8;  // unscaled int8 rows: the caller applies the row scales
  AttentionValuesFn attention_values_f32;
  AttentionValuesFn attention_values_f16;
  AttentionValuesFn attention_values_i8;
};

// out[t * out_stride + r] = Σ_k a[t, k] · W[r, k] for rows [row_begin, row_end) and all of the
// activations' tokens, W block-quantized with activations.cols columns, as integer dot products.
using QuantMatmulFn = void (*)(float* out, int64_t out_stride, const QuantizedActivations& activations,
                               const void* weights, int64_t row_begin, int64_t row_end);

// Integer dot products for block-quantized weights, chosen apart from the float loops because
// VNNI is an extension some AVX-512 CPUs lack (and AVX2-only CPUs have the maddubs form).
struct IntegerDotKernels {
  const char* name;
  QuantizeRowsFn quantize_rows;  // the activations' quantizer these kernels are fed by
  QuantMatmulFn matmul_q8_0;
  QuantMatmulFn matmul_q4_0;
  QuantMatmulFn matmul_q4_k;
  QuantMatmulFn matmul_q6_k;
  // The same for weights in the Interleaved layout (weight_repack.h) with groups of group_rows
  // (8 or 16), Q8_0 quants stored plus 128 where unsigned_q8_0; row ranges start at a multiple of
  // group_rows.
  int64_t group_rows;
  bool unsigned_q8_0;
  QuantMatmulFn matmul_q8_0_x8;
  QuantMatmulFn matmul_q4_0_x8;
  QuantMatmulFn matmul_q4_k_x8;
  QuantMatmulFn matmul_q6_k_x8;

  InterleavedForm interleaved_form() const { return {group_rows, unsigned_q8_0}; }
};

// bf16 weights (the file's rows) against activations rounded to bf16 once per input, products
// summed in f32: out[t · out_stride + r] = Σ_k in[t · cols + k] · W[r · cols + k] for rows
// [row_begin, row_end) and every token. A reduced-precision path (the activations lose their low
// 16 bits), so CpuBackend takes it only when asked (MatmulPrecision::Fast).
using Bf16MatmulFn = void (*)(float* out, int64_t out_stride, const uint16_t* in, int64_t tokens,
                              const void* weights, int64_t cols, int64_t row_begin, int64_t row_end);
using RoundToBf16Fn = void (*)(uint16_t* out, const float* in, int64_t n);  // round to nearest even

struct Bf16DotKernels {
  const char* name;
  RoundToBf16Fn round_to_bf16;
  Bf16MatmulFn matmul_bf16;
};

const IsaKernels& scalar_kernels();
const IsaKernels* avx2_kernels();    // nullptr when the CPU lacks AVX2+FMA+F16C
const IsaKernels* avx512_kernels();  // nullptr when the CPU lacks AVX-512 F/BW/VL
const IntegerDotKernels* avx2_integer_kernels();  // nullptr without AVX2 (maddubs + madd)
const IntegerDotKernels* vnni_integer_kernels();  // nullptr without AVX512-VNNI/VL (dpbusd)
const Bf16DotKernels* avx512bf16_dot_kernels();    // nullptr without AVX512-BF16 (vdpbf16ps)
// The best integer set to pair with a float set: none for scalar, VNNI beside AVX-512 where the
// CPU has it, else the AVX2 form.
const IntegerDotKernels* integer_kernels_for(const IsaKernels& kernels);
// vdpbf16ps beside the AVX-512 set where the CPU has it; none beside the others.
const Bf16DotKernels* bf16_dot_kernels_for(const IsaKernels& kernels);
// The best set this CPU runs; RETORT_ISA=scalar|avx2|avx512 forces one (for tests and benchmarks).
const IsaKernels& active_kernels();

}  // namespace retort::cpu
