#pragma once
// The CPU backend: SIMD loops from isa_kernels.h, split over the thread pool. Every batch size
// goes through the register-tiled loops: converting weight panels to f32 for OpenBLAS sgemm was
// slower at every size measured, 8 to 512 tokens (docs/performance.md).
#include <string_view>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/isa_kernels.h"

namespace retort {

// What the activations are rounded to where they meet bf16 weights. F32: not at all (exact, for
// comparing logits with other engines). Bf16: rounded to bf16 once per input where the CPU
// multiplies bf16 pairs (AVX512-BF16's vdpbf16ps), as llama.cpp does for bf16 files: twice the
// multiply-adds per instruction, judged like quantized weights by KL and top-1 against f32
// (docs/performance.md). Quantized weights always meet activations quantized to 8 bits.
enum class ActivationPrecision : uint8_t { F32, Bf16 };
// "f32" or "bf16" (the --act-type flag); anything else is a clear error.
ActivationPrecision activation_precision(std::string_view name);

class CpuBackend final : public Backend {
 public:
  // The best instruction set this CPU has.
  explicit CpuBackend(ActivationPrecision precision = ActivationPrecision::F32);
  explicit CpuBackend(const cpu::IsaKernels& kernels, ActivationPrecision precision = ActivationPrecision::F32);
  std::string name() const override;

  void matmul(float* out, const float* in, const WeightMatrix& w, int64_t tokens) override;
  void matmuls(const float* in, int64_t tokens, std::span<const MatmulTarget> targets) override;
  bool repack(WeightMatrix& w, void* bytes) override;
  void rmsnorm(float* out, const float* x, const float* weight, int64_t tokens, int64_t dim, float eps) override;
  void rope(float* x, const float* cos, const float* sin, int64_t tokens, int64_t heads,
            int64_t head_dim, RopeLayout layout) override;
  void silu_mul(float* out, const float* gate, const float* up, int64_t count) override;
  void kv_write(const KvCacheLayout& cache, const float* keys, const float* values, const int64_t* slots,
                int64_t tokens) override;
  void attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                 const KvCacheLayout& cache, const AttentionShape& shape) override;
  void embed(float* out, const WeightMatrix& table, const int32_t* ids, int64_t tokens) override;
  void add(float* x, const float* y, int64_t count) override;
  void add_bias(float* x, const float* bias, int64_t tokens, int64_t dim) override;


 private:
  void quantize_for_integer_kernels(const float* in, int64_t tokens, int64_t cols, cpu::QuantizedActivations& out);
  void round_for_bf16_kernels(const float* in, int64_t count, std::vector<uint16_t>& out);
  void dequantize_and_dot(float* out, const float* in, const WeightMatrix& w, int64_t tokens, int64_t row_begin,
                          int64_t row_end);
  const cpu::IsaKernels& kernels_;
  const cpu::IntegerDotKernels* integer_kernels_;  // nullptr: quantized weights go through f32
  const cpu::Bf16DotKernels* bf16_kernels_;        // nullptr: bf16 weights meet f32 activations
};

// Converts `count` values of a float storage type to f32 with the active SIMD loops.
void convert_to_f32(float* out, const void* in, DType dtype, int64_t count);

}  // namespace retort
