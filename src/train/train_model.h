#pragma once
// The Qwen2/Llama decoder for training: a forward that saves what the backward needs, and the
// backward, layer by layer (train/layers.h). Parameters, gradients, activations and activation
// gradients each live in one allocation viewed through structs of named pointers.
#include <cstdint>
#include <functional>
#include <vector>

#include "io/model_config.h"
#include "train/layers.h"
#include "train/parameters.h"

namespace retort::train {

struct TrainModelOptions {
  // Keep only each layer's input (the residual stream) and recompute the layer in backward.
  bool activation_checkpointing = false;
  // false: forward stops at the final norm and no [N, V] logits are held (a distillation teacher
  // computes its logits chunk by chunk from final_hidden()).
  bool lm_head = true;
  // bf16: every linear layer's matrix products, the LM head's included, round their operands to
  // bf16 and sum in f32; weights, gradients, Adam state and activations stay f32 (float only).
  MatmulPrecision matmul_precision = MatmulPrecision::f32;
};

// Extra gradient terms for distillation (train/distill.h), called during backward.
template <typename T>
struct BackwardHooks {
  // If set, replaces cross-entropy's gradient: receives the logits (TrainModel::logits(), one row
  // per logit_rows() entry) and overwrites them, in place, with d loss / d logits.
  std::function<void(T* logits)> logits_gradient;
  // Adds into dx [N, C], the gradient of the residual stream after i layers (called for i = L … 0).
  std::function<void(int64_t i, T* dx)> hidden_gradient;
  // Adds into dqkv [N, S] (rotated q and k, before the inverse RoPE) what reaches them through
  // extra loss terms on layer l's attention probabilities att [B, H, T, T].
  std::function<void(int64_t l, T* dqkv, const T* qkv, const T* att)> attention_gradient;
};

struct LossSum {
  double sum = 0;       // Σ of per-token cross-entropy over counted targets
  int64_t targets = 0;  // how many targets counted (those ≥ 0)
};

template <typename T>
struct LayerActivations {
  T* ln1;        // [N, C]
  T* ln1_rstd;   // [N]
  T* qkv;        // [N, (H+2KV)·hd], q and k after RoPE
  T* att;        // [B, H, T, T] attention probabilities
  T* atty;       // [N, H·hd] attention output before o_proj
  T* res_mid;    // [N, C] residual after attention
  T* ln2;        // [N, C]
  T* ln2_rstd;   // [N]
  T* gate_up;    // [N, 2F]
  T* swiglu;     // [N, F]
};

template <typename T>
class TrainModel {
 public:
  TrainModel(const ModelConfig& config, int64_t batch, int64_t seq_len, TrainModelOptions options = {});

  const ModelConfig& config() const { return config_; }
  const ParameterLayout& layout() const { return layout_; }
  int64_t batch() const { return B_; }
  int64_t seq_len() const { return T_; }
  T* params() { return params_.data(); }
  const T* params() const { return params_.data(); }
  T* grads() { return grads_.data(); }
  const T* grads() const { return grads_.data(); }
  size_t parameter_count() const { return layout_.total; }
  size_t activation_bytes() const { return (acts_.size() + dacts_.size() + logits_storage_.size()) * sizeof(T); }

  // Runs [B, T] inputs (row n at position n % T); with targets (−1 = ignored), returns the summed
  // loss. The logits stay readable until backward() overwrites them with their gradient.
  // With targets, the LM head runs only on the rows that have one (no loss reads the others): for
  // prompt-masked data such as BANKING77's "query → label" that is a few rows in ten, and the head
  // is most of the work with a 151,936-entry vocabulary. Without targets it runs on every row.
  LossSum forward(const int32_t* inputs, const int32_t* targets);
  // [logit_rows().size(), V]: row i holds the logits of position logit_rows()[i] (of 0..N−1).
  const T* logits() const { return logits_; }
  const std::vector<int64_t>& logit_rows() const { return head_rows_; }
  const std::vector<int32_t>& logit_targets() const { return head_targets_; }  // their targets
  // After forward: the residual stream after i layers [N, C] (0: the embeddings; L: before the
  // final norm), the final norm's output [N, C], and layer l's attention probabilities
  // [B, H, T, T] (without activation checkpointing only).
  const T* hidden_state(int64_t i) const { return residual_ + i * N_ * config_.hidden_size; }
  const T* final_hidden() const { return final_norm_; }
  const T* attention_probs(int64_t l) const { return layer_acts(l).att; }
  const ParameterViews<T>& weights() const { return w_; }
  void set_backward_hooks(BackwardHooks<T> hooks) { hooks_ = std::move(hooks); }
  // Called during backward() with each tensor's [offset, offset + count) of grads() once that
  // tensor's gradient is final for this backward: the LM head (when not tied) and the final norm
  // first, then each layer's tensors from the last layer to the first, the embedding last
  // (distributed.bucket_mb sums them over ranks while the backward goes on; train/gradient_buckets.h).
  void set_gradient_ready(std::function<void(size_t offset, size_t count)> ready) { gradient_ready_ = std::move(ready); }

  void zero_grad();
  // Adds this micro-batch's gradients into grads(): d(loss_scale · Σ losses) / dθ.
  void backward(double loss_scale);

 private:
  void layer_forward(int64_t layer, const LayerActivations<T>& a);
  void layer_backward(int64_t layer, const LayerActivations<T>& a);
  void select_head_rows(bool with_targets);
  // The LM head's input: final_norm_ itself when every row has logits, else its gathered rows.
  const T* head_input() const { return head_rows_.size() == size_t(N_) ? final_norm_ : head_in_; }
  const LayerActivations<T>& layer_acts(int64_t layer) const;
  // Hands gradient_ready_ the tensors of `layer` (≥ 0), or outside the layers the one of `role`.
  void gradients_final(int layer, TensorRole role = TensorRole::TokenEmbedding);

  ModelConfig config_;
  ParameterLayout layout_;
  int64_t B_, T_, N_;
  TrainModelOptions options_;
  std::vector<T> params_, grads_;
  ParameterViews<T> w_, dw_;
  std::vector<T> rope_cos_, rope_sin_;  // [T, hd/2]

  std::vector<T> acts_;                      // every forward activation, one allocation
  std::vector<LayerActivations<T>> layers_;  // one per layer, or a single shared one when checkpointing
  T* residual_ = nullptr;                    // [(L+1), N, C] the residual stream at each layer's input
  T* final_norm_ = nullptr;                  // [N, C]
  T* final_rstd_ = nullptr;                  // [N]
  T* head_in_ = nullptr;                     // [N, C] the rows of final_norm_ that get logits, packed
  std::vector<T> logits_storage_;            // grows to the most rows that have needed logits
  T* logits_ = nullptr;                      // [M, V], M = head_rows_.size() ≤ N
  T* losses_ = nullptr;                      // [N]

  std::vector<T> dacts_;  // activation gradients, one allocation
  T* dx_ = nullptr;       // [N, C] gradient of the residual stream
  T* dln_ = nullptr;      // [N, C]
  T* dqkv_ = nullptr;     // [N, (H+2KV)·hd]
  T* datty_ = nullptr;    // [N, H·hd]
  T* dswiglu_ = nullptr;  // [N, F]
  T* dgate_up_ = nullptr; // [N, 2F]
  T* dhead_in_ = nullptr; // [N, C] the packed rows' gradient before it is scattered

  std::vector<int32_t> inputs_, targets_;  // [N] of the last forward
  std::vector<int64_t> head_rows_;         // the positions the LM head ran on, ascending
  std::vector<int32_t> head_targets_;      // their targets
  BackwardHooks<T> hooks_;
  std::function<void(size_t, size_t)> gradient_ready_;
};

}  // namespace retort::train
