#pragma once
// The Qwen2 / Llama decoder forward pass over a batch of sequences, each at its own position:
// prefill chunks and single decode tokens mix freely in one call (continuous batching), and
// logits are computed only for the rows asked for.
#include <memory>
#include <span>
#include <vector>

#include "io/model_config.h"
#include "kernels/backend.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace retort {

enum class LogitsWanted { None, Last, All };

struct SequenceChunk {
  KvSequence* sequence = nullptr;    // the chunk's tokens go after sequence->length positions
  std::span<const int32_t> tokens;
  LogitsWanted logits = LogitsWanted::Last;
};

class Transformer {
 public:
  Transformer(ModelConfig config, ModelWeights weights, Backend& backend);
  ~Transformer();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() { return backend_; }

  // Runs the batch, appending each chunk's keys/values to its sequence (space must already be
  // reserved in `cache`), and fills `logits` with [rows × vocab_size] in chunk order: one row per
  // token for LogitsWanted::All, one for Last, none for None. Returns the number of rows.
  int64_t forward(std::span<const SequenceChunk> batch, KvCache& cache, std::vector<float>& logits);

 private:
  struct Scratch;
  void attention_block(int64_t layer, Scratch& s, KvCache& cache);
  void mlp_block(int64_t layer, Scratch& s);
  void prepare_batch(std::span<const SequenceChunk> batch, const KvCache& cache, Scratch& s);

  ModelConfig config_;
  ModelWeights weights_;
  Backend& backend_;
  std::vector<float> inv_freq_;  // [head_dim / 2], llama3 scaling applied
  std::unique_ptr<Scratch> scratch_;
};

// Rotary inverse frequencies θ^(−2i/d), with llama3 scaling when configured (as HF computes them).
std::vector<double> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace retort
