#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "model/transformer.h"
#include "util/error.h"

namespace retort::train {

namespace {

// Hands out consecutive slices of one buffer; sizes first, then pointers.
template <typename T>
class Carver {
 public:
  explicit Carver(T* base) : base_(base) {}
  T* take(int64_t count) {
    T* p = base_ == nullptr ? nullptr : base_ + used_;
    used_ += static_cast<size_t>(count);
    return p;
  }
  size_t used() const { return used_; }

 private:
  T* base_;
  size_t used_ = 0;
};

}  // namespace

template <typename T>
TrainModel<T>::TrainModel(const ModelConfig& config, int64_t batch, int64_t seq_len, TrainModelOptions options)
    : config_(config), layout_(parameter_layout(config)), B_(batch), T_(seq_len), N_(batch * seq_len),
      options_(options) {
  validate_model_config(config_, "training model");
  require(batch > 0 && seq_len > 0, ErrorKind::InvalidInput, "batch size and sequence length must be positive");
  require(seq_len <= config_.max_positions, ErrorKind::OutOfRange,
          "sequence length {} is over the model's {} positions (max_position_embeddings); use a shorter "
          "seq_len", seq_len, config_.max_positions);
  require(std::is_same_v<T, float> || options_.matmul_precision == MatmulPrecision::f32, ErrorKind::Unsupported,
          "bf16 and f16 matrix products are for float (f32) training models only");
  params_.assign(layout_.total, T(0));
  grads_.assign(layout_.total, T(0));
  w_ = parameter_views(layout_, config_, params_.data());
  dw_ = parameter_views(layout_, config_, grads_.data());

  const int64_t half = config_.head_dim / 2;
  const std::vector<double> inv_freq = rope_inverse_frequencies(config_);
  rope_cos_.resize(static_cast<size_t>(T_ * half));
  rope_sin_.resize(static_cast<size_t>(T_ * half));
  for (int64_t t = 0; t < T_; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(t) * inv_freq[i];
      rope_cos_[t * half + i] = T(std::cos(angle));
      rope_sin_[t * half + i] = T(std::sin(angle));
    }

  const int64_t N = N_, C = config_.hidden_size, F = config_.intermediate_size;
  const int64_t S = config_.q_dim() + 2 * config_.kv_dim(), QD = config_.q_dim(), L = config_.num_layers;
  const int64_t stored_layers = options_.activation_checkpointing ? 1 : L;
  // Two passes over the same carving: the first measures, the second hands out pointers.
  for (int pass = 0; pass < 2; ++pass) {
    Carver<T> carve(pass == 0 ? nullptr : acts_.data());
    layers_.clear();
    for (int64_t l = 0; l < stored_layers; ++l) {
      LayerActivations<T> a;
      a.ln1 = carve.take(N * C);
      a.ln1_rstd = carve.take(N);
      a.qkv = carve.take(N * S);
      a.att = carve.take(B_ * config_.num_heads * T_ * T_);
      a.atty = carve.take(N * QD);
      a.res_mid = carve.take(N * C);
      a.ln2 = carve.take(N * C);
      a.ln2_rstd = carve.take(N);
      a.gate_up = carve.take(N * 2 * F);
      a.swiglu = carve.take(N * F);
      layers_.push_back(a);
    }
    residual_ = carve.take((L + 1) * N * C);
    final_norm_ = carve.take(N * C);
    final_rstd_ = carve.take(N);
    head_in_ = carve.take(options_.lm_head ? N * C : 0);
    losses_ = carve.take(N);
    if (pass == 0) acts_.assign(carve.used(), T(0));
  }
  dacts_.assign(static_cast<size_t>(N * (3 * C + S + QD + 3 * F)), T(0));
  Carver<T> carve(dacts_.data());
  dx_ = carve.take(N * C);
  dln_ = carve.take(N * C);
  dqkv_ = carve.take(N * S);
  datty_ = carve.take(N * QD);
  dswiglu_ = carve.take(N * F);
  dgate_up_ = carve.take(N * 2 * F);
  dhead_in_ = carve.take(N * C);
}

template <typename T>
const LayerActivations<T>& TrainModel<T>::layer_acts(int64_t layer) const {
  return layers_[options_.activation_checkpointing ? 0 : static_cast<size_t>(layer)];
}

template <typename T>
void TrainModel<T>::layer_forward(int64_t l, const LayerActivations<T>& a) {
  const MatmulPrecision mp = options_.matmul_precision;
  const LayerParameters<T>& p = w_.layers[static_cast<size_t>(l)];
  const int64_t N = N_, C = config_.hidden_size, F = config_.intermediate_size;
  const int64_t H = config_.num_heads, KV = config_.num_kv_heads, hd = config_.head_dim;
  const int64_t S = (H + 2 * KV) * hd;
  const T* x = residual_ + l * N * C;
  rmsnorm_forward(a.ln1, a.ln1_rstd, x, p.attn_norm, N, C, config_.rms_norm_eps);
  linear_forward(a.qkv, a.ln1, p.wqkv, p.bqkv, N, C, S, mp);
  rope_forward(a.qkv, rope_cos_.data(), rope_sin_.data(), N, T_, S, H + KV, hd);  // q and k heads
  attention_forward(a.atty, a.att, a.qkv, AttentionDims{B_, T_, H, KV, hd});
  linear_forward(a.res_mid, a.atty, p.wo, static_cast<const T*>(nullptr), N, H * hd, C, mp);
  residual_forward(a.res_mid, a.res_mid, x, N * C);
  rmsnorm_forward(a.ln2, a.ln2_rstd, a.res_mid, p.mlp_norm, N, C, config_.rms_norm_eps);
  linear_forward(a.gate_up, a.ln2, p.wgate_up, static_cast<const T*>(nullptr), N, C, 2 * F, mp);
  swiglu_forward(a.swiglu, a.gate_up, N, F);
  T* out = residual_ + (l + 1) * N * C;
  linear_forward(out, a.swiglu, p.wdown, static_cast<const T*>(nullptr), N, F, C, mp);
  residual_forward(out, out, a.res_mid, N * C);
}

template <typename T>
LossSum TrainModel<T>::forward(const int32_t* inputs, const int32_t* targets) {
  const MatmulPrecision mp = options_.matmul_precision;
  const int64_t N = N_, C = config_.hidden_size, V = config_.vocab_size, L = config_.num_layers;
  inputs_.assign(inputs, inputs + N);
  for (int32_t id : inputs_)
    require(id >= 0 && id < V, ErrorKind::OutOfRange, "token id {} is outside the model's vocabulary 0..{}", id, V - 1);
  targets_.assign(static_cast<size_t>(N), -1);
  if (targets != nullptr) {
    targets_.assign(targets, targets + N);
    for (int32_t id : targets_)
      require(id < V, ErrorKind::OutOfRange, "target id {} is outside the model's vocabulary 0..{}", id, V - 1);
  }
  embedding_forward(residual_, inputs_.data(), w_.wte, N, C);
  for (int64_t l = 0; l < L; ++l) layer_forward(l, layer_acts(l));
  rmsnorm_forward(final_norm_, final_rstd_, residual_ + L * N * C, w_.final_norm, N, C, config_.rms_norm_eps);
  if (!options_.lm_head) return {};
  select_head_rows(targets != nullptr);
  const auto M = static_cast<int64_t>(head_rows_.size());
  if (M < N) gather_rows(head_in_, final_norm_, head_rows_.data(), M, C);
  LossSum loss;
  if (M == 0) return loss;
  // Sized by the rows that need logits, not N: with prompt-masked data that is a fraction of N × V.
  if (logits_storage_.size() < size_t(M * V)) logits_storage_.resize(size_t(M * V));
  logits_ = logits_storage_.data();
  linear_forward(logits_, head_input(), w_.lm_head, static_cast<const T*>(nullptr), M, C, V, mp);
  loss.targets = cross_entropy_forward(losses_, logits_, head_targets_.data(), M, V);
  for (int64_t i = 0; i < M; ++i) loss.sum += double(losses_[i]);
  return loss;
}

template <typename T>
void TrainModel<T>::select_head_rows(bool with_targets) {
  if (with_targets) return rows_with_targets(targets_.data(), N_, head_rows_, head_targets_);
  head_rows_.resize(size_t(N_));
  std::iota(head_rows_.begin(), head_rows_.end(), int64_t(0));
  head_targets_ = targets_;  // all −1: no targets were given
}

template <typename T>
void TrainModel<T>::zero_grad() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <typename T>
void TrainModel<T>::layer_backward(int64_t l, const LayerActivations<T>& a) {
  const MatmulPrecision mp = options_.matmul_precision;
  // On entry dx_ holds the gradient of this layer's output; on exit, of its input.
  const LayerParameters<T>& p = w_.layers[static_cast<size_t>(l)];
  const LayerParameters<T>& dp = dw_.layers[static_cast<size_t>(l)];
  const int64_t N = N_, C = config_.hidden_size, F = config_.intermediate_size;
  const int64_t H = config_.num_heads, KV = config_.num_kv_heads, hd = config_.head_dim;
  const int64_t S = (H + 2 * KV) * hd;
  const T* x = residual_ + l * N * C;
  // MLP: out = res_mid + down(swiglu(gate_up(ln2(res_mid)))); the skip passes dx through unchanged.
  linear_backward(dswiglu_, dp.wdown, static_cast<T*>(nullptr), dx_, a.swiglu, p.wdown, N, F, C, mp);
  swiglu_backward(dgate_up_, dswiglu_, a.gate_up, N, F);
  linear_backward(dln_, dp.wgate_up, static_cast<T*>(nullptr), dgate_up_, a.ln2, p.wgate_up, N, C, 2 * F, mp);
  rmsnorm_backward(dx_, dp.mlp_norm, dln_, a.res_mid, p.mlp_norm, a.ln2_rstd, N, C);
  // Attention: res_mid = x + o_proj(attention(rope(qkv(ln1(x))))).
  linear_backward(datty_, dp.wo, static_cast<T*>(nullptr), dx_, a.atty, p.wo, N, H * hd, C, mp);
  attention_backward(dqkv_, datty_, a.qkv, a.att, AttentionDims{B_, T_, H, KV, hd});
  if (hooks_.attention_gradient) hooks_.attention_gradient(l, dqkv_, a.qkv, a.att);
  rope_backward(dqkv_, rope_cos_.data(), rope_sin_.data(), N, T_, S, H + KV, hd);
  linear_backward(dln_, dp.wqkv, dp.bqkv, dqkv_, a.ln1, p.wqkv, N, C, S, mp);
  rmsnorm_backward(dx_, dp.attn_norm, dln_, x, p.attn_norm, a.ln1_rstd, N, C);
}

template <typename T>
void TrainModel<T>::backward(double loss_scale) {
  const MatmulPrecision mp = options_.matmul_precision;
  const int64_t N = N_, C = config_.hidden_size, V = config_.vocab_size, L = config_.num_layers;
  T* dlogits = logits_;  // the logits are not needed after this point: their gradient replaces them
  require(options_.lm_head, ErrorKind::InvalidInput, "backward needs a model built with lm_head");
  const auto M = static_cast<int64_t>(head_rows_.size());
  if (hooks_.logits_gradient) hooks_.logits_gradient(dlogits);
  else cross_entropy_backward(dlogits, logits_, head_targets_.data(), M, V, loss_scale);
  // Rows without logits feed no loss: their gradient into the final norm is zero.
  T* dhead = M == N ? dln_ : dhead_in_;
  if (M > 0) linear_backward(dhead, dw_.lm_head, static_cast<T*>(nullptr), dlogits, head_input(), w_.lm_head, M, C, V, mp);
  if (M < N) {
    std::fill_n(dln_, N * C, T(0));
    for (int64_t i = 0; i < M; ++i) std::copy_n(dhead_in_ + i * C, C, dln_ + head_rows_[size_t(i)] * C);
  }
  std::fill_n(dx_, N * C, T(0));
  rmsnorm_backward(dx_, dw_.final_norm, dln_, residual_ + L * N * C, w_.final_norm, final_rstd_, N, C);
  if (!config_.tie_word_embeddings) gradients_final(-1, TensorRole::LmHead);  // tied: the embedding's, below
  gradients_final(-1, TensorRole::OutputNorm);
  if (hooks_.hidden_gradient) hooks_.hidden_gradient(L, dx_);
  for (int64_t l = L - 1; l >= 0; --l) {
    if (options_.activation_checkpointing) layer_forward(l, layer_acts(l));  // recompute from the saved input
    layer_backward(l, layer_acts(l));
    gradients_final(int(l));
    if (hooks_.hidden_gradient) hooks_.hidden_gradient(l, dx_);
  }
  embedding_backward(dw_.wte, dx_, inputs_.data(), N, C);
  gradients_final(-1, TensorRole::TokenEmbedding);
}

template <typename T>
void TrainModel<T>::gradients_final(int layer, TensorRole role) {
  if (!gradient_ready_) return;
  for (const ParameterInfo& t : layout_.tensors)
    if (t.layer == layer && (layer >= 0 || t.role == role)) gradient_ready_(t.offset, t.count);
}

template class TrainModel<float>;
template class TrainModel<double>;

}  // namespace retort::train
