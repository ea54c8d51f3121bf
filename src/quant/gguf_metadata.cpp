#include "quant/gguf_metadata.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tokenizer/known_patterns.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/mapped_file.h"

namespace retort {

namespace {

// llama.cpp token types.
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

std::string pre_tokenizer_name(const nlohmann::json& tokenizer, const std::string& chat_template, const std::string& file) {
  const std::string text = tokenizer.value("pre_tokenizer", nlohmann::json()).dump();
  // The patterns appear JSON-escaped inside the dump; compare on the escaped form.
  auto contains = [&](std::string_view pattern) { return text.find(nlohmann::json(std::string(pattern)).dump()) != std::string::npos; };
  if (contains(kQwen2SplitPattern)) {
    return chat_template.find("<｜Assistant｜>") != std::string::npos ? "deepseek-r1-qwen" : "qwen2";
  }
  if (contains(kLlama3SplitPattern)) return "llama-bpe";
  fail(ErrorKind::Unsupported, "{}: its pre-tokenizer is neither the Qwen2 nor the Llama 3 one; retort cannot name it "
       "for llama.cpp", file);
}

std::string token_content(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value["content"].get<std::string>();
  return {};
}

}  // namespace

void write_model_metadata(GgufWriter& writer, const ModelConfig& config, const std::string& name, uint32_t file_type) {
  const std::string arch(architecture_name(config.arch));
  writer.add_string("general.architecture", arch);
  writer.add_string("general.name", name);
  writer.add_u32("general.file_type", file_type);
  writer.add_u32(arch + ".context_length", static_cast<uint32_t>(config.max_positions));
  writer.add_u32(arch + ".embedding_length", static_cast<uint32_t>(config.hidden_size));
  writer.add_u32(arch + ".block_count", static_cast<uint32_t>(config.num_layers));
  writer.add_u32(arch + ".feed_forward_length", static_cast<uint32_t>(config.intermediate_size));
  writer.add_u32(arch + ".attention.head_count", static_cast<uint32_t>(config.num_heads));
  writer.add_u32(arch + ".attention.head_count_kv", static_cast<uint32_t>(config.num_kv_heads));
  writer.add_f32(arch + ".rope.freq_base", static_cast<float>(config.rope.theta));
  writer.add_f32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(config.rms_norm_eps));
  writer.add_u32(arch + ".rope.dimension_count", static_cast<uint32_t>(config.head_dim));
  if (config.head_dim * config.num_heads != config.hidden_size) {
    writer.add_u32(arch + ".attention.key_length", static_cast<uint32_t>(config.head_dim));
    writer.add_u32(arch + ".attention.value_length", static_cast<uint32_t>(config.head_dim));
  }
}

void write_tokenizer_metadata(GgufWriter& writer, const std::string& hf_dir, int64_t vocab_size) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(hf_dir) / "tokenizer.json").string();
  require(fs::exists(path), ErrorKind::NotFound, "{} is missing: a GGUF file embeds the tokenizer, so the checkpoint "
          "directory needs its tokenizer.json", path);
  const nlohmann::json tokenizer = parse_json_bounded(read_text_file(path), path);
  nlohmann::json config = nlohmann::json::object();
  const std::string config_path = (fs::path(hf_dir) / "tokenizer_config.json").string();
  if (fs::exists(config_path)) config = parse_json_bounded(read_text_file(config_path), config_path);

  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(tokens.size(), kUnused);
  for (size_t id = 0; id < tokens.size(); ++id) tokens[id] = "[PAD" + std::to_string(id) + "]";
  for (const auto& [text, id] : tokenizer.at("model").at("vocab").items()) {
    const auto index = id.get<int64_t>();
    require(index >= 0 && index < vocab_size, ErrorKind::InvalidInput, "{}: token id {} exceeds the model's vocabulary {}",
            path, index, vocab_size);
    tokens[static_cast<size_t>(index)] = text;
    types[static_cast<size_t>(index)] = kNormal;
  }
  std::map<std::string, int32_t> id_of;
  for (const auto& added : tokenizer.value("added_tokens", nlohmann::json::array())) {
    const auto index = added.at("id").get<int64_t>();
    require(index >= 0 && index < vocab_size, ErrorKind::InvalidInput, "{}: added token id {} exceeds the vocabulary {}",
            path, index, vocab_size);
    tokens[static_cast<size_t>(index)] = added.at("content").get<std::string>();
    types[static_cast<size_t>(index)] = added.value("special", false) ? kControl : kUserDefined;
  }
  for (size_t id = 0; id < tokens.size(); ++id) id_of[tokens[id]] = static_cast<int32_t>(id);
  std::vector<std::string> merges;
  for (const auto& merge : tokenizer.at("model").at("merges")) {
    merges.push_back(merge.is_string() ? merge.get<std::string>()
                                       : merge.at(0).get<std::string>() + " " + merge.at(1).get<std::string>());
  }
  const std::string chat_template = config.value("chat_template", nlohmann::json("")).is_string()
                                        ? config.value("chat_template", std::string()) : std::string();
  writer.add_string("tokenizer.ggml.model", "gpt2");
  writer.add_string("tokenizer.ggml.pre", pre_tokenizer_name(tokenizer, chat_template, path));
  writer.add_string_array("tokenizer.ggml.tokens", tokens);
  writer.add_i32_array("tokenizer.ggml.token_type", types);
  writer.add_string_array("tokenizer.ggml.merges", merges);
  for (const auto& [key, gguf_key] : {std::pair{"bos_token", "tokenizer.ggml.bos_token_id"},
                                      std::pair{"eos_token", "tokenizer.ggml.eos_token_id"},
                                      std::pair{"pad_token", "tokenizer.ggml.padding_token_id"}}) {
    auto it = id_of.find(token_content(config.value(key, nlohmann::json())));
    if (it != id_of.end() && config.contains(key)) writer.add_u32(gguf_key, static_cast<uint32_t>(it->second));
  }
  writer.add_bool("tokenizer.ggml.add_bos_token", config.value("add_bos_token", false));
  if (!chat_template.empty()) writer.add_string("tokenizer.chat_template", chat_template);
}

}  // namespace retort
