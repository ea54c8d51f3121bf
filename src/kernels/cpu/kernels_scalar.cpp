// Portable loops: the fallback on CPUs without AVX2, and readable statements of what the SIMD
// versions compute.
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "tensor/dtype.h"

namespace retort::cpu {
namespace {

inline float load_weight(const float* w, int64_t i) { return w[i]; }
inline float load_weight(const uint16_t* w, int64_t i, bool is_bf16) {
  return is_bf16 ? bf16_to_f32(w[i]) : f16_to_f32(w[i]);
}

template <typename Load>
void matmul_generic(float* out, int64_t out_stride, const float* in, int64_t in_stride, int64_t cols,
                    int64_t row_begin, int64_t row_end, int64_t tokens, Load weight_at) {
  for (int64_t t = 0; t < tokens; ++t) {
    const float* x = in + t * in_stride;
    for (int64_t r = row_begin; r < row_end; ++r) {
      float sum = 0.0f;
      for (int64_t k = 0; k < cols; ++k) sum += x[k] * weight_at(r * cols + k);
      out[t * out_stride + r] = sum;
    }
  }
}

void matmul_f32(float* out, int64_t os, const float* in, int64_t is, const void* w, int64_t cols, int64_t r0,
                int64_t r1, int64_t tokens) {
  const auto* weights = static_cast<const float*>(w);
  matmul_generic(out, os, in, is, cols, r0, r1, tokens, [&](int64_t i) { return load_weight(weights, i); });
}
void matmul_f16(float* out, int64_t os, const float* in, int64_t is, const void* w, int64_t cols, int64_t r0,
                int64_t r1, int64_t tokens) {
  const auto* weights = static_cast<const uint16_t*>(w);
  matmul_generic(out, os, in, is, cols, r0, r1, tokens, [&](int64_t i) { return load_weight(weights, i, false); });
}
void matmul_bf16(float* out, int64_t os, const float* in, int64_t is, const void* w, int64_t cols, int64_t r0,
                 int64_t r1, int64_t tokens) {
  const auto* weights = static_cast<const uint16_t*>(w);
  matmul_generic(out, os, in, is, cols, r0, r1, tokens, [&](int64_t i) { return load_weight(weights, i, true); });
}

void matmul_q8_0(float* out, int64_t os, const float* in, int64_t is, const void* w, int64_t cols, int64_t r0,
                 int64_t r1, int64_t tokens) {
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t row_bytes = cols / 32 * 34;
  matmul_generic(out, os, in, is, cols, r0, r1, tokens, [&](int64_t i) {
    const int64_t r = i / cols, k = i % cols;
    const uint8_t* block = base + r * row_bytes + (k / 32) * 34;
    uint16_t scale;
    std::memcpy(&scale, block, 2);
    return f16_to_f32(scale) * static_cast<float>(static_cast<int8_t>(block[2 + k % 32]));
  });
}

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}
void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}
void scale(float* y, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}
void f16_rows(float* out, const void* in, int64_t n) {
  const auto* src = static_cast<const uint16_t*>(in);
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(src[i]);
}
void bf16_rows(float* out, const void* in, int64_t n) {
  const auto* src = static_cast<const uint16_t*>(in);
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(src[i]);
}

void f32_to_f16_rows(void* out, const float* in, int64_t n) {
  auto* dst = static_cast<uint16_t*>(out);
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(in[i]);
}

inline float kv_value(const float* row, int64_t d) { return row[d]; }
inline float kv_value(const uint16_t* row, int64_t d) { return f16_to_f32(row[d]); }
inline float kv_value(const int8_t* row, int64_t d) { return static_cast<float>(row[d]); }

template <typename E>
void attention_scores(float* scores, int64_t score_stride, const float* q, int64_t group, const void* key_rows,
                      int64_t stride, int64_t n, int64_t head_dim, float scale) {
  const E* keys = static_cast<const E*>(key_rows);
  for (int64_t g = 0; g < group; ++g)
    for (int64_t p = 0; p < n; ++p) {
      float sum = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) sum += q[g * head_dim + d] * kv_value(keys + p * stride, d);
      scores[g * score_stride + p] = sum * scale;
    }
}

template <typename E>
void attention_values(float* out, const float* probs, int64_t prob_stride, int64_t group, const void* value_rows,
                      int64_t stride, int64_t n, int64_t head_dim) {
  const E* values = static_cast<const E*>(value_rows);
  for (int64_t g = 0; g < group; ++g)
    for (int64_t p = 0; p < n; ++p)
      for (int64_t d = 0; d < head_dim; ++d) out[g * head_dim + d] += probs[g * prob_stride + p] * kv_value(values + p * stride, d);
}

}  // namespace

const IsaKernels& scalar_kernels() {
  static const IsaKernels kernels{"scalar",
                                  matmul_f32,
                                  matmul_f16,
                                  matmul_bf16,
                                  matmul_q8_0,
                                  dot,
                                  axpy,
                                  scale,
                                  f16_rows,
                                  bf16_rows,
                                  f32_to_f16_rows,
                                  attention_scores<float>,
                                  attention_scores<uint16_t>,
                                  attention_scores<int8_t>,
                                  attention_values<float>,
                                  attention_values<uint16_t>,
                                  attention_values<int8_t>};
  return kernels;
}

}  // namespace retort::cpu
