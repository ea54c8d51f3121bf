#include "io/gguf_config.h"

#include <cstring>

#include "util/error.h"

namespace retort {

namespace {

const GgufTensorInfo* find_tensor(const GgufFile& gguf, const std::string& name) {
  for (const auto& info : gguf.tensor_infos())
    if (info.name == name) return &info;
  return nullptr;
}

std::vector<int64_t> token_ids(const GgufFile& gguf, const std::string& key) {
  std::vector<int64_t> ids;
  if (auto id = gguf.find_int(key)) ids.push_back(*id);
  return ids;
}

std::vector<float> read_rope_freq_factors(const GgufFile& gguf, int64_t head_dim) {
  const GgufTensorInfo* info = find_tensor(gguf, "rope_freqs.weight");
  if (info == nullptr) return {};
  require(info->type == GgmlType::F32 && info->dims.size() == 1 && static_cast<int64_t>(info->dims[0]) == head_dim / 2,
          ErrorKind::InvalidInput, "{}: rope_freqs.weight should be f32 [{}]", gguf.path(), head_dim / 2);
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  std::memcpy(factors.data(), gguf.tensor_data(*info), factors.size() * sizeof(float));
  return factors;
}

}  // namespace

ModelConfig model_config_from_gguf(const GgufFile& gguf) {
  ModelConfig config;
  const std::string arch = gguf.get_string("general.architecture");
  if (arch == "qwen2") {
    config.arch = Architecture::Qwen2;
    config.hf_architecture = "Qwen2ForCausalLM";
  } else if (arch == "llama") {
    config.arch = Architecture::Llama;
    config.hf_architecture = "LlamaForCausalLM";
  } else {
    fail(ErrorKind::Unsupported, "{}: architecture '{}' is not supported; retort runs qwen2 and llama GGUF files",
         gguf.path(), arch);
  }
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  config.hidden_size = gguf.get_int(key("embedding_length"));
  config.intermediate_size = gguf.get_int(key("feed_forward_length"));
  config.num_layers = gguf.get_int(key("block_count"));
  config.num_heads = gguf.get_int(key("attention.head_count"));
  config.num_kv_heads = gguf.find_int(key("attention.head_count_kv")).value_or(config.num_heads);
  require(config.num_heads > 0, ErrorKind::InvalidInput, "{}: attention.head_count must be positive", gguf.path());
  config.head_dim = gguf.find_int(key("attention.key_length")).value_or(config.hidden_size / config.num_heads);
  config.max_positions = gguf.get_int(key("context_length"));
  config.rms_norm_eps = gguf.get_float(key("attention.layer_norm_rms_epsilon"));
  config.rope.theta = gguf.find(key("rope.freq_base")) ? gguf.get_float(key("rope.freq_base")) : 10000.0;
  config.rope.freq_factors = read_rope_freq_factors(gguf, config.head_dim);
  const GgufTensorInfo* embedding = find_tensor(gguf, "token_embd.weight");
  require(embedding != nullptr && embedding->dims.size() == 2, ErrorKind::InvalidInput,
          "{}: token_embd.weight is missing or not a matrix", gguf.path());
  config.vocab_size = static_cast<int64_t>(embedding->dims[1]);
  config.tie_word_embeddings = find_tensor(gguf, "output.weight") == nullptr;
  config.attention_bias = find_tensor(gguf, "blk.0.attn_q.bias") != nullptr;
  config.bos_token_ids = token_ids(gguf, "tokenizer.ggml.bos_token_id");
  config.eos_token_ids = token_ids(gguf, "tokenizer.ggml.eos_token_id");
  config.torch_dtype = "float32";
  return config;
}

}  // namespace retort
