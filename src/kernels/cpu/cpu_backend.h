#pragma once
// The CPU backend: SIMD loops from isa_kernels.h, split over the thread pool. Every batch size
// goes through the register-tiled loops: converting weight panels to f32 for OpenBLAS sgemm was
// slower at every size measured, 8 to 512 tokens (docs/performance.md).
#include "kernels/backend.h"
#include "kernels/cpu/isa_kernels.h"

namespace retort {

class CpuBackend final : public Backend {
 public:
  CpuBackend();  // the best instruction set this CPU has
  explicit CpuBackend(const cpu::IsaKernels& kernels);
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
  void dequantize_and_dot(float* out, const float* in, const WeightMatrix& w, int64_t tokens, int64_t row_begin,
                          int64_t row_end);
  const cpu::IsaKernels& kernels_;
  const cpu::IntegerDotKernels* integer_kernels_;  // nullptr: quantized weights go through f32
};

// Converts `count` values of a float storage type to f32 with the active SIMD loops.
void convert_to_f32(float* out, const void* in, DType dtype, int64_t count);

}  // namespace retort
