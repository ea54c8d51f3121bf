#pragma once
// Forward/backward pairs for every layer of the Qwen2/Llama decoder, for training. Each function
// takes its outputs first, then saved state, inputs, weights and dimensions; shapes are in the
// comments, row-major, N = B·T rows (B sequences of T tokens each).
//
// THE GRADIENT RULE: parameter gradients accumulate (+=), so micro-batches and the tied embedding
// sum into them; activation gradients are written (=). The one exception is rmsnorm_backward,
// which adds (+=) into dinp: its input is the residual stream, whose gradient also flows straight
// through the skip connection.
//
// Instantiated for float (training) and double (the finite-difference tests). These are the
// backward ops of DESIGN's kernel list, kept here as standalone functions until the Backend
// interface grows training ops.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace retort::train {

// Row-major C[M×N] = alpha·op(A)·op(B) + beta·C, split across the thread pool along M or N so
// each output element is computed by one thread in a fixed order (results do not depend on
// scheduling).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <typename T>
void embedding_forward(T* out,               // [N, C]
                       const int32_t* tokens,  // [N]
                       const T* wte,         // [V, C]
                       int64_t N, int64_t C);
template <typename T>
void embedding_backward(T* dwte,             // [V, C] +=
                        const T* dout,       // [N, C]
                        const int32_t* tokens, int64_t N, int64_t C);

template <typename T>
void rmsnorm_forward(T* out,        // [N, C]
                     T* rstd,       // [N] saved 1/sqrt(mean(x²)+eps)
                     const T* inp,  // [N, C]
                     const T* weight,  // [C]
                     int64_t N, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dinp,      // [N, C] += (residual stream)
                      T* dweight,   // [C] +=
                      const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N, int64_t C);

// How the linear layers' matrix products treat their operands. bf16: both operands of each product
// (forward X·Wᵀ, backward dY·W and dYᵀ·X) are rounded to bf16 and summed in f32
// (kernels/cpu/bf16_gemm.h); the tensors themselves, weights included, stay f32. f16: rounded to
// IEEE half instead (the Ascend 910A's and older GPUs' type: 10-bit mantissa but a range of only
// 6e-8 … 65504, so small gradients flush to zero and large values overflow to inf, which is what
// dynamic loss scaling is for), summed in f32 as those units accumulate. float only.
enum class MatmulPrecision { f32, bf16, f16 };

// out = inp · weightᵀ + bias
template <typename T>
void linear_forward(T* out,           // [N, OC]
                    const T* inp,     // [N, C]
                    const T* weight,  // [OC, C]
                    const T* bias,    // [OC] or null
                    int64_t N, int64_t C, int64_t OC, MatmulPrecision precision = MatmulPrecision::f32);
template <typename T>
void linear_backward(T* dinp,         // [N, C] =
                     T* dweight,      // [OC, C] +=
                     T* dbias,        // [OC] += or null
                     const T* dout,   // [N, OC]
                     const T* inp, const T* weight, int64_t N, int64_t C, int64_t OC,
                     MatmulPrecision precision = MatmulPrecision::f32);

// Rotates, in place, the first `heads` heads of each row (rotate-half pairing, as HF): row n is at
// position n % seq_len. cos/sin are [seq_len, head_dim/2].
template <typename T>
void rope_forward(T* x,  // [N, row_stride], heads·head_dim of it rotated
                  const T* cos, const T* sin, int64_t N, int64_t seq_len, int64_t row_stride, int64_t heads,
                  int64_t head_dim);
// The inverse rotation applied to the gradient, in place (rotation is orthogonal).
template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t N, int64_t seq_len, int64_t row_stride,
                   int64_t heads, int64_t head_dim);

// Causal grouped-query attention. qkv rows hold [q heads H | k heads KV | v heads KV] × head_dim
// (q and k already rotated); query head h reads kv head h / (H / KV).
struct AttentionDims {
  int64_t B, T, H, KV, head_dim;
  int64_t qkv_stride() const { return (H + 2 * KV) * head_dim; }
};
template <typename T>
void attention_forward(T* out,        // [N, H·hd]
                       T* att,        // [B, H, T, T] saved probabilities (zero above the diagonal)
                       const T* qkv,  // [N, (H+2KV)·hd]
                       const AttentionDims& d);
template <typename T>
void attention_backward(T* dqkv,        // [N, (H+2KV)·hd] =
                        const T* dout,  // [N, H·hd]
                        const T* qkv, const T* att, const AttentionDims& d);

// out = silu(gate) · up, with gate_up rows [gate F | up F].
template <typename T>
void swiglu_forward(T* out,            // [N, F]
                    const T* gate_up,  // [N, 2F]
                    int64_t N, int64_t F);
template <typename T>
void swiglu_backward(T* dgate_up,  // [N, 2F] =
                     const T* dout, const T* gate_up, int64_t N, int64_t F);

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n);  // out = a + b

// losses[n] = −log softmax(logits[n])[targets[n]]; rows with target < 0 are ignored (loss 0).
// Returns the number of counted rows.
template <typename T>
int64_t cross_entropy_forward(T* losses,  // [N]
                              const T* logits, const int32_t* targets, int64_t N, int64_t V);
// dlogits = scale · (softmax(logits) − onehot(target)), zero on ignored rows; dlogits may alias
// logits (computed in place).
template <typename T>
void cross_entropy_backward(T* dlogits,  // [N, V] =
                            const T* logits, const int32_t* targets, int64_t N, int64_t V, double scale);

// The positions n < N with targets[n] ≥ 0 and their targets: the rows a loss reads (the LM head
// runs on those only).
void rows_with_targets(const int32_t* targets, int64_t N, std::vector<int64_t>& rows,
                       std::vector<int32_t>& row_targets);

// dst[i] = src[rows[i]] for `count` rows of C values.
template <typename T>
void gather_rows(T* dst, const T* src, const int64_t* rows, int64_t count, int64_t C) {
  for (int64_t i = 0; i < count; ++i) std::copy_n(src + rows[i] * C, C, dst + i * C);
}

}  // namespace retort::train
