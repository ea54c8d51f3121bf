#include "tokenizer/gguf_vocab.h"

#include <nlohmann/json.hpp>

#include "tokenizer/known_patterns.h"
#include "util/error.h"

namespace retort {

namespace {

// GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
constexpr int kControl = 3;
constexpr int kUserDefined = 4;

std::string split_pattern(const GgufFile& gguf) {
  const GgufMetadata* pre = gguf.find("tokenizer.ggml.pre");
  const std::string name = pre && pre->value.is_string() ? pre->value.get<std::string>() : "default";
  if (name == "qwen2" || name == "deepseek-r1-qwen") return std::string(kQwen2SplitPattern);
  if (name == "llama-bpe" || name == "llama3" || name == "default") return std::string(kLlama3SplitPattern);
  fail(ErrorKind::Unsupported, "{}: pre-tokenizer '{}' is not supported; retort knows qwen2, deepseek-r1-qwen, llama-bpe",
       gguf.path(), name);
}

// The array under `key`, whose elements must all be strings (or all integers).
nlohmann::json array_of(const GgufFile& gguf, const std::string& key, bool required, bool of_strings) {
  const GgufMetadata* entry = gguf.find(key);
  require(entry != nullptr || !required, ErrorKind::InvalidInput, "{}: '{}' is missing; the file embeds no tokenizer",
          gguf.path(), key);
  if (entry == nullptr) return nlohmann::json::array();
  require(entry->value.is_array(), ErrorKind::InvalidInput, "{}: '{}' should be an array", gguf.path(), key);
  for (const auto& item : entry->value) {
    require(of_strings ? item.is_string() : item.is_number_integer(), ErrorKind::InvalidInput,
            "{}: '{}' should be an array of {}", gguf.path(), key, of_strings ? "strings" : "integers");
  }
  return entry->value;
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& gguf) {
  const GgufMetadata* model = gguf.find("tokenizer.ggml.model");
  require(model != nullptr && model->value == "gpt2", ErrorKind::Unsupported,
          "{}: tokenizer.ggml.model is {}; retort reads byte-level BPE ('gpt2') tokenizers", gguf.path(),
          model ? model->value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : "missing");
  const nlohmann::json tokens = array_of(gguf, "tokenizer.ggml.tokens", true, true);
  const nlohmann::json types = array_of(gguf, "tokenizer.ggml.token_type", false, false);
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& text = tokens[id].get_ref<const std::string&>();
    const int type = id < types.size() ? types[id].get<int>() : 1;
    if (type == kControl || type == kUserDefined) {
      added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", type == kControl}});
    }
    vocab[text] = id;
  }
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                                     {"use_regex", false}};
  nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", split_pattern(gguf)}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level}}}},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", array_of(gguf, "tokenizer.ggml.merges", true, true)}}},
  };
  nlohmann::json config = nlohmann::json::object();
  auto token_text = [&](const char* key) -> nlohmann::json {
    auto id = gguf.find_int(key);
    if (!id || *id < 0 || static_cast<size_t>(*id) >= tokens.size()) return nullptr;
    return tokens[static_cast<size_t>(*id)];
  };
  config["bos_token"] = token_text("tokenizer.ggml.bos_token_id");
  config["eos_token"] = token_text("tokenizer.ggml.eos_token_id");
  const GgufMetadata* add_bos = gguf.find("tokenizer.ggml.add_bos_token");
  config["add_bos_token"] = add_bos != nullptr && add_bos->value.is_boolean() && add_bos->value.get<bool>();
  if (const GgufMetadata* chat = gguf.find("tokenizer.chat_template"); chat && chat->value.is_string()) {
    config["chat_template"] = chat->value;
  }
  // GGUF strings need not be valid UTF-8; invalid bytes become U+FFFD rather than an exception.
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  return Tokenizer::from_json_text(tokenizer.dump(-1, ' ', false, kReplace), config.dump(-1, ' ', false, kReplace),
                                   gguf.path());
}

}  // namespace retort
