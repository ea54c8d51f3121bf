#pragma once
// One description of a Qwen2- or Llama-family decoder, whichever file it came from (HF config.json
// now, GGUF metadata later). The model layer computes from this struct alone.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace retort {

enum class Architecture { Qwen2, Llama };

std::string_view architecture_name(Architecture arch);  // "qwen2", "llama"

enum class RopeScaling { None, Llama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::None;
  // llama3 frequency scaling (HF rope_scaling with rope_type "llama3")
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
  // Per-dimension divisors of the inverse frequencies, as GGUF files carry llama3 scaling
  // (rope_freqs.weight); when present they replace the computed scaling.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  Architecture arch = Architecture::Qwen2;
  std::string hf_architecture;   // e.g. "Qwen2ForCausalLM", kept for writing config.json back
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;          // hidden_size / num_heads unless the config says otherwise
  int64_t vocab_size = 0;        // rows of the embedding (padded; may exceed the tokenizer's size)
  int64_t max_positions = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;   // q/k/v biases (always on for Qwen2)
  bool use_sliding_window = false;
  int64_t sliding_window = 0;
  int64_t max_window_layers = 0;
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "bfloat16";

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  int64_t parameter_count() const;
};

// Parses a Hugging Face config.json; errors name the file and the offending key.
ModelConfig parse_hf_config(const nlohmann::json& json, const std::string& source_name);
ModelConfig load_hf_config(const std::string& path);
nlohmann::json to_hf_config(const ModelConfig& config);
// Checks the numbers the forward pass relies on (divisibility, positivity).
void validate_model_config(const ModelConfig& config, const std::string& source_name);

}  // namespace retort
