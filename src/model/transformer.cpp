#include "model/transformer.h"

#include <cmath>
#include <numbers>

#include "util/error.h"

namespace retort {

// Activations of one forward call, reused across calls so steady-state decode allocates nothing.
struct Transformer::Scratch {
  int64_t tokens = 0;
  std::vector<int32_t> ids;              // [T]
  std::vector<int64_t> positions;        // [T]
  std::vector<int64_t> slots;            // [T] KV-cache slot of each token
  std::vector<AttentionQuery> queries;   // [T]
  std::vector<float> rope_cos, rope_sin; // [T × head_dim/2]
  std::vector<int64_t> logit_rows;       // which tokens produce logits
  std::vector<float> x;                  // [T × hidden] residual stream
  std::vector<float> normed;             // [T × hidden]
  std::vector<float> q, k, v;            // [T × q_dim], [T × kv_dim] ×2
  std::vector<float> attn;               // [T × q_dim]
  std::vector<float> proj;               // [T × hidden]
  std::vector<float> gate, up;           // [T × ffn]
  std::vector<float> last_normed;        // [rows × hidden]
};

std::vector<double> rope_inverse_frequencies(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0 / std::pow(config.rope.theta, static_cast<double>(2 * i) / config.head_dim);
  }
  if (!config.rope.freq_factors.empty()) {  // given per dimension (GGUF rope_freqs)
    require(static_cast<int64_t>(config.rope.freq_factors.size()) == half, ErrorKind::InvalidInput,
            "rope frequency factors: {} given, the head needs {}", config.rope.freq_factors.size(), half);
    for (int64_t i = 0; i < half; ++i) inv_freq[i] /= static_cast<double>(config.rope.freq_factors[i]);
    return inv_freq;
  }
  if (config.rope.scaling == RopeScaling::Llama3) {
    const RopeConfig& r = config.rope;
    const double low_wavelen = r.original_max_positions / r.low_freq_factor;
    const double high_wavelen = r.original_max_positions / r.high_freq_factor;
    for (double& f : inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen < high_wavelen) continue;  // high frequencies unchanged
      if (wavelen > low_wavelen) {
        f /= r.factor;
      } else {  // smooth interpolation between the two regimes
        const double smooth = (r.original_max_positions / wavelen - r.low_freq_factor) /
                              (r.high_freq_factor - r.low_freq_factor);
        f = (1.0 - smooth) * f / r.factor + smooth * f;
      }
    }
  }
  return inv_freq;
}

Transformer::Transformer(ModelConfig config, ModelWeights weights, Backend& backend)
    : config_(std::move(config)), weights_(std::move(weights)), backend_(backend),
      scratch_(std::make_unique<Scratch>()) {
  require(!config_.use_sliding_window, ErrorKind::Unsupported,
          "this config enables sliding-window attention (use_sliding_window: true), which retort does not "
          "implement; the DeepSeek-R1-Distill checkpoints leave it off");
  for (double f : rope_inverse_frequencies(config_)) inv_freq_.push_back(static_cast<float>(f));
}

Transformer::~Transformer() = default;

void Transformer::prepare_batch(std::span<const SequenceChunk> batch, const KvCache& cache, Scratch& s) {
  s.tokens = 0;
  for (const auto& chunk : batch) s.tokens += static_cast<int64_t>(chunk.tokens.size());
  s.ids.clear(); s.positions.clear(); s.slots.clear(); s.queries.clear(); s.logit_rows.clear();
  for (const auto& chunk : batch) {
    const KvSequence& seq = *chunk.sequence;
    const auto n = static_cast<int64_t>(chunk.tokens.size());
    require(n > 0, ErrorKind::InvalidInput, "a sequence chunk in the batch has no tokens");
    require(seq.length + n <= config_.max_positions, ErrorKind::OutOfRange,
            "sequence would reach {} positions but the model supports {}", seq.length + n, config_.max_positions);
    require(cache.blocks_needed(seq, seq.length + n) == 0, ErrorKind::Internal,
            "KV cache space was not reserved before the forward pass");
    for (int64_t i = 0; i < n; ++i) {
      const int64_t position = seq.length + i;
      const int32_t id = chunk.tokens[static_cast<size_t>(i)];
      require(id >= 0 && id < config_.vocab_size, ErrorKind::OutOfRange,
              "token id {} is out of range: the model's vocabulary has ids 0..{}", id, config_.vocab_size - 1);
      s.ids.push_back(id);
      s.positions.push_back(position);
      s.slots.push_back(cache.slot(seq, position));
      s.queries.push_back({KvBlockTable{seq.blocks.data(), static_cast<int64_t>(seq.blocks.size())}, position + 1});
      const bool wanted = chunk.logits == LogitsWanted::All || (chunk.logits == LogitsWanted::Last && i == n - 1);
      if (wanted) s.logit_rows.push_back(static_cast<int64_t>(s.ids.size()) - 1);
    }
  }
  const int64_t half = config_.head_dim / 2;
  s.rope_cos.resize(static_cast<size_t>(s.tokens * half));
  s.rope_sin.resize(static_cast<size_t>(s.tokens * half));
  for (int64_t t = 0; t < s.tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // The angle in double: positions reach 10^5 and f32 would lose the low bits of the phase.
      const double angle = static_cast<double>(s.positions[t]) * static_cast<double>(inv_freq_[i]);
      s.rope_cos[t * half + i] = static_cast<float>(std::cos(angle));
      s.rope_sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  const auto T = static_cast<size_t>(s.tokens);
  s.x.resize(T * config_.hidden_size);
  s.normed.resize(T * config_.hidden_size);
  s.q.resize(T * config_.q_dim());
  s.k.resize(T * config_.kv_dim());
  s.v.resize(T * config_.kv_dim());
  s.attn.resize(T * config_.q_dim());
  s.proj.resize(T * config_.hidden_size);
  s.gate.resize(T * config_.intermediate_size);
  s.up.resize(T * config_.intermediate_size);
}

void Transformer::attention_block(int64_t layer, Scratch& s, KvCache& cache) {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t T = s.tokens;
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  backend_.rmsnorm(s.normed.data(), s.x.data(), w.attn_norm.data(), T, config_.hidden_size, eps);
  const MatmulTarget qkv[] = {{s.q.data(), w.wq}, {s.k.data(), w.wk}, {s.v.data(), w.wv}};
  backend_.matmuls(s.normed.data(), T, qkv);
  if (!w.bq.empty()) {
    backend_.add_bias(s.q.data(), w.bq.data(), T, config_.q_dim());
    backend_.add_bias(s.k.data(), w.bk.data(), T, config_.kv_dim());
    backend_.add_bias(s.v.data(), w.bv.data(), T, config_.kv_dim());
  }
  const RopeLayout rope_layout = weights_.rope_layout;
  backend_.rope(s.q.data(), s.rope_cos.data(), s.rope_sin.data(), T, config_.num_heads, config_.head_dim, rope_layout);
  backend_.rope(s.k.data(), s.rope_cos.data(), s.rope_sin.data(), T, config_.num_kv_heads, config_.head_dim,
                rope_layout);
  const KvCacheLayout layout = cache.layer(layer);
  backend_.kv_write(layout, s.k.data(), s.v.data(), s.slots.data(), T);
  const AttentionShape shape{config_.num_heads, config_.num_kv_heads, config_.head_dim,
                             static_cast<float>(1.0 / std::sqrt(static_cast<double>(config_.head_dim)))};
  backend_.attention(s.attn.data(), s.q.data(), s.queries.data(), T, layout, shape);
  backend_.matmul(s.proj.data(), s.attn.data(), w.wo, T);
  backend_.add(s.x.data(), s.proj.data(), T * config_.hidden_size);
}

void Transformer::mlp_block(int64_t layer, Scratch& s) {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t T = s.tokens;
  backend_.rmsnorm(s.normed.data(), s.x.data(), w.mlp_norm.data(), T, config_.hidden_size,
                   static_cast<float>(config_.rms_norm_eps));
  const MatmulTarget gate_up[] = {{s.gate.data(), w.w_gate}, {s.up.data(), w.w_up}};
  backend_.matmuls(s.normed.data(), T, gate_up);
  backend_.silu_mul(s.gate.data(), s.gate.data(), s.up.data(), T * config_.intermediate_size);
  backend_.matmul(s.proj.data(), s.gate.data(), w.w_down, T);
  backend_.add(s.x.data(), s.proj.data(), T * config_.hidden_size);
}

int64_t Transformer::forward(std::span<const SequenceChunk> batch, KvCache& cache, std::vector<float>& logits) {
  Scratch& s = *scratch_;
  prepare_batch(batch, cache, s);
  backend_.embed(s.x.data(), weights_.token_embedding, s.ids.data(), s.tokens);
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    attention_block(layer, s, cache);
    mlp_block(layer, s);
  }
  for (const auto& chunk : batch) chunk.sequence->length += static_cast<int64_t>(chunk.tokens.size());

  // Only the rows whose logits were asked for go through the final norm and the LM head.
  const auto rows = static_cast<int64_t>(s.logit_rows.size());
  const int64_t hidden = config_.hidden_size;
  s.last_normed.resize(static_cast<size_t>(rows * hidden));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(s.x.data() + s.logit_rows[r] * hidden, hidden, s.last_normed.data() + r * hidden);
  }
  backend_.rmsnorm(s.last_normed.data(), s.last_normed.data(), weights_.output_norm.data(), rows, hidden,
                   static_cast<float>(config_.rms_norm_eps));
  logits.resize(static_cast<size_t>(rows * config_.vocab_size));
  if (rows > 0) backend_.matmul(logits.data(), s.last_normed.data(), weights_.lm_head, rows);
  return rows;
}

}  // namespace retort
