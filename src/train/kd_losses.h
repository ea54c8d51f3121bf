#pragma once
// Knowledge-distillation losses, each a forward and an explicit backward (definitions pinned by
// ../shared/fixtures/kd-losses, whose README writes them out). Shapes are row-major; a "row" is a
// position.
//
// THE RULES: every function returns the SUM over its rows of the per-row loss (the caller divides
// by the row count through `scale`, so chunks and micro-batches add up), and ADDS (+=)
// scale · d(returned sum)/d(input) into each non-null gradient output, so terms combine into one
// buffer. Rows whose target is negative (padding) are skipped when `targets` is given.
//
// Instantiated for float (training) and double (the tests).
#include <cstdint>
#include <string>

namespace retort::train {

// −log softmax(z_s)[label] (no temperature).
template <typename T>
double hard_ce_loss(T* dstudent,             // [N, V] += or null
                    const T* student,        // [N, V]
                    const int32_t* labels,   // [N]; < 0 skipped
                    int64_t N, int64_t V, double scale);

enum class SoftLossKind {
  ForwardKL,  // T² · KL(p_t ‖ p_s): the classic soft-label loss
  ReverseKL,  // T² · KL(p_s ‖ p_t)
  JSD,        // T² · [β KL(p_t ‖ m) + (1−β) KL(p_s ‖ m)], m = β p_t + (1−β) p_s
};
SoftLossKind parse_soft_loss_kind(const std::string& name);  // forward_kl, reverse_kl, jsd

struct SoftLossOptions {
  SoftLossKind kind = SoftLossKind::ForwardKL;
  double temperature = 1.0;
  double beta = 0.5;  // JSD only
};

// p = softmax(z / T) for both; the teacher's row may be longer (a larger padded vocabulary): only
// its first V columns take part.
template <typename T>
double soft_loss(T* dstudent,                // [N, V] += or null
                 const T* student,           // [N, V]
                 const T* teacher,           // [N, teacher_stride], teacher_stride ≥ V
                 int64_t teacher_stride, int64_t N, int64_t V, const SoftLossOptions& options,
                 const int32_t* targets,     // [N] or null; rows with a negative target are skipped
                 double scale);

// The k largest of each row's first V logits (ids ascending by rank), for a sparse teacher.
template <typename T>
void top_k_rows(int32_t* ids,        // [N, k]
                T* values,           // [N, k]
                const T* logits, int64_t stride, int64_t N, int64_t V, int64_t k);

// Forward KL against a top-k teacher: p_t is the softmax at temperature T over the k kept logits
// (zero elsewhere); p_s is over all V.
template <typename T>
double soft_loss_top_k(T* dstudent, const T* student, const int32_t* ids, const T* values, int64_t N, int64_t V,
                       int64_t k, double temperature, const int32_t* targets, double scale);

enum class HiddenLossKind { MSE, Cosine };
HiddenLossKind parse_hidden_loss_kind(const std::string& name);  // mse, cosine

// y = h_s Wᵀ + b (the learned projection, "layer adaptation"); per row: MSE = mean over the d_t
// dims of (y − h_t)², cosine = 1 − cos(y, h_t).
template <typename T>
double hidden_loss(T* dhs,            // [N, ds] += or null
                   T* dW,             // [dt, ds] += or null
                   T* db,             // [dt] += or null
                   const T* hs,       // [N, ds]
                   const T* ht,       // [N, dt]
                   const T* W, const T* b, int64_t N, int64_t ds, int64_t dt, HiddenLossKind kind,
                   const int32_t* targets, double scale);

enum class AttentionLossKind { MSE, KL };
AttentionLossKind parse_attention_loss_kind(const std::string& name);  // mse, kl

// For each of B sequences: Ā = mean over heads of the causal attention probabilities (so student
// and teacher head counts may differ), then MSE = mean over the T² entries of (Ā_s − Ā_t)², or
// KL = mean over query rows of Σ_k Ā_t (log Ā_t − log Ā_s) (masked entries contribute 0).
// Returns the sum over sequences.
template <typename T>
double attention_loss(T* datt_s,        // [B, Hs, T, T] += or null
                      const T* att_s,   // [B, Hs, T, T]
                      const T* att_t,   // [B, Ht, T, T]
                      int64_t B, int64_t Hs, int64_t Ht, int64_t Tn, AttentionLossKind kind, double scale);

// Causal softmax over each row of scores [rows, T] (row t keeps columns 0..t), and its backward:
// dscores += probs ⊙ (dprobs − Σ probs·dprobs) on the kept entries.
template <typename T>
void causal_softmax_forward(T* probs, const T* scores, int64_t heads, int64_t Tn);
template <typename T>
void causal_softmax_backward(T* dscores, const T* dprobs, const T* probs, int64_t heads, int64_t Tn);

// The gradient that reaches the rotated q and k of a causal attention layer (layers.h layout,
// dqkv += ...) from a gradient on its probabilities datt [B, H, T, T]: through the softmax and the
// 1/√hd-scaled scores q·k. Query head h reads kv head h / (H / KV).
struct AttentionDims;
template <typename T>
void attention_probs_backward(T* dqkv, const T* datt, const T* qkv, const T* att, const AttentionDims& d);

}  // namespace retort::train
