#include "io/model_config.h"

#include <array>
#include <cmath>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/input_limits.h"
#include "util/mapped_file.h"

namespace retort {

using nlohmann::json;

namespace {

// The one table of supported families: HF class name, model_type, and our enum.
struct ArchitectureInfo {
  Architecture arch;
  std::string_view model_type;
  std::string_view hf_class;
  int64_t default_max_positions;  // what transformers assumes when config.json omits it
};

constexpr std::array<ArchitectureInfo, 2> kArchitectures{{
    {Architecture::Qwen2, "qwen2", "Qwen2ForCausalLM", 32768},
    {Architecture::Llama, "llama", "LlamaForCausalLM", 2048},
}};

const ArchitectureInfo& info(Architecture arch) {
  for (const auto& entry : kArchitectures) {
    if (entry.arch == arch) return entry;
  }
  fail(ErrorKind::Internal, "unknown architecture {}", static_cast<int>(arch));
}

std::string supported_architectures() {
  std::vector<std::string> names;
  for (const auto& entry : kArchitectures) {
    names.push_back(fmt::format("{} (model_type \"{}\")", entry.hf_class, entry.model_type));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

// Limits far above any published model, there so that arithmetic on the sizes (parameter counts,
// buffer sizes) cannot overflow whatever a config file says.
constexpr int64_t kMaxWidth = int64_t{1} << 20;       // hidden, intermediate, head sizes
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 30;

// Typed access to config.json keys; every complaint names the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {
    require(root.is_object(), ErrorKind::InvalidInput,
            "'{}': a config.json should be a JSON object, found a JSON {}", source, root.type_name());
  }

  const json* find(const char* key) const {
    auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* value = find(key);
    if (value == nullptr) {
      require(fallback.has_value(), ErrorKind::InvalidInput,
              "'{}' has no '{}'; a Hugging Face config.json of this architecture needs it", source_,
              key);
      return *fallback;
    }
    return as_integer(*value, key);
  }

  double number(const char* key, double fallback) const {
    const json* value = find(key);
    if (value == nullptr) return fallback;
    require(value->is_number(), ErrorKind::InvalidInput,
            "'{}': '{}' should be a number, found {}; fix config.json", source_, key, value->dump());
    return value->get<double>();
  }

  bool boolean(const char* key, bool fallback) const {
    const json* value = find(key);
    if (value == nullptr) return fallback;
    require(value->is_boolean(), ErrorKind::InvalidInput,
            "'{}': '{}' should be true or false, found {}; fix config.json", source_, key,
            value->dump());
    return value->get<bool>();
  }

  std::optional<std::string> string(const char* key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    require(value->is_string(), ErrorKind::InvalidInput,
            "'{}': '{}' should be a string, found {}; fix config.json", source_, key, value->dump());
    return value->get<std::string>();
  }

  // bos/eos ids: one integer, a list of them, or null.
  std::vector<int64_t> token_ids(const char* key) const {
    const json* value = find(key);
    if (value == nullptr) return {};
    if (!value->is_array()) return {as_integer(*value, key)};
    std::vector<int64_t> ids;
    for (const json& id : *value) ids.push_back(as_integer(id, key));
    return ids;
  }

  int64_t as_integer(const json& value, const char* key) const {
    require(value.is_number_integer() &&
                (!value.is_number_unsigned() || value.get<uint64_t>() <= uint64_t{INT64_MAX}),
            ErrorKind::InvalidInput, "'{}': '{}' should be an integer, found {}; fix config.json",
            source_, key, value.dump());
    return value.get<int64_t>();
  }

  const std::string& source() const { return source_; }

 private:
  const json& root_;
  const std::string& source_;
};

const ArchitectureInfo& detect_architecture(const ConfigReader& reader, std::string* hf_class) {
  const json* classes = reader.find("architectures");
  std::optional<std::string> class_name;
  if (classes != nullptr) {
    require(classes->is_array() && !classes->empty() && (*classes)[0].is_string(),
            ErrorKind::InvalidInput,
            "'{}': 'architectures' should be a list of class names like [\"Qwen2ForCausalLM\"], "
            "found {}",
            reader.source(), classes->dump());
    class_name = (*classes)[0].get<std::string>();
  }
  const auto model_type = reader.string("model_type");
  require(class_name || model_type, ErrorKind::InvalidInput,
          "'{}' has neither 'architectures' nor 'model_type'; retort supports {}", reader.source(),
          supported_architectures());
  for (const auto& entry : kArchitectures) {
    const bool class_matches = class_name && *class_name == entry.hf_class;
    const bool type_matches = model_type && *model_type == entry.model_type;
    if (!class_matches && !type_matches) continue;
    require((!class_name || class_matches) && (!model_type || type_matches), ErrorKind::InvalidInput,
            "'{}': 'architectures' says \"{}\" but 'model_type' says \"{}\"; they must agree",
            reader.source(), class_name.value_or(""), model_type.value_or(""));
    *hf_class = class_name.value_or(std::string(entry.hf_class));
    return entry;
  }
  fail(ErrorKind::Unsupported, "'{}' describes architecture \"{}\", retort supports {}",
       reader.source(), class_name ? *class_name : *model_type, supported_architectures());
}

RopeConfig parse_rope(const ConfigReader& reader) {
  RopeConfig rope;
  rope.theta = reader.number("rope_theta", rope.theta);
  const json* scaling = reader.find("rope_scaling");
  if (scaling == nullptr) return rope;
  require(scaling->is_object(), ErrorKind::InvalidInput,
          "'{}': 'rope_scaling' should be an object like {{\"rope_type\": \"llama3\", ...}} or null, "
          "found {}",
          reader.source(), scaling->dump());
  ConfigReader fields(*scaling, reader.source());
  // transformers renamed "type" to "rope_type"; checkpoints carry either.
  auto type = fields.string("rope_type");
  if (!type) type = fields.string("type");
  require(type.has_value(), ErrorKind::InvalidInput,
          "'{}': 'rope_scaling' has neither 'rope_type' nor 'type'", reader.source());
  if (*type == "default") return rope;
  require(*type == "llama3", ErrorKind::Unsupported,
          "'{}': rope_scaling type \"{}\" is not supported; retort implements \"llama3\" (and none)",
          reader.source(), *type);
  rope.scaling = RopeScaling::Llama3;
  rope.factor = fields.number("factor", rope.factor);
  rope.low_freq_factor = fields.number("low_freq_factor", rope.low_freq_factor);
  rope.high_freq_factor = fields.number("high_freq_factor", rope.high_freq_factor);
  rope.original_max_positions =
      fields.integer("original_max_position_embeddings", rope.original_max_positions);
  return rope;
}

// Features whose weights or math retort's forward does not have: refuse rather than run wrongly.
void reject_unsupported_features(const ConfigReader& reader) {
  const auto activation = reader.string("hidden_act");
  require(!activation || *activation == "silu", ErrorKind::Unsupported,
          "'{}': hidden_act \"{}\" is not supported; retort implements \"silu\"", reader.source(),
          activation.value_or(""));
  require(!reader.boolean("mlp_bias", false), ErrorKind::Unsupported,
          "'{}': mlp_bias true is not supported; retort's MLP has no biases", reader.source());
}

void check_positive(int64_t value, int64_t limit, const char* key, const std::string& source) {
  require(value > 0 && value <= limit, ErrorKind::InvalidInput,
          "'{}': {} is {}, expected 1 to {}", source, key, value, limit);
}

}  // namespace

std::string_view architecture_name(Architecture arch) { return info(arch).model_type; }

ModelConfig parse_hf_config(const json& root, const std::string& source_name) {
  ConfigReader reader(root, source_name);
  ModelConfig config;
  const ArchitectureInfo& arch = detect_architecture(reader, &config.hf_architecture);
  config.arch = arch.arch;
  reject_unsupported_features(reader);

  config.hidden_size = reader.integer("hidden_size");
  config.intermediate_size = reader.integer("intermediate_size");
  config.num_layers = reader.integer("num_hidden_layers");
  config.num_heads = reader.integer("num_attention_heads");
  config.num_kv_heads = reader.integer("num_key_value_heads", config.num_heads);
  config.vocab_size = reader.integer("vocab_size");
  config.max_positions = reader.integer("max_position_embeddings", arch.default_max_positions);
  if (reader.find("head_dim") != nullptr) {
    config.head_dim = reader.integer("head_dim");
  } else if (config.num_heads > 0) {
    require(config.hidden_size % config.num_heads == 0, ErrorKind::InvalidInput,
            "'{}': hidden_size {} is not a multiple of num_attention_heads {} and there is no "
            "'head_dim' to say the head size",
            source_name, config.hidden_size, config.num_heads);
    config.head_dim = config.hidden_size / config.num_heads;
  }
  config.rms_norm_eps = reader.number("rms_norm_eps", config.rms_norm_eps);
  config.rope = parse_rope(reader);
  config.tie_word_embeddings = reader.boolean("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases (transformers hard-codes them); Llama says so in the config.
  config.attention_bias =
      config.arch == Architecture::Qwen2 ? true : reader.boolean("attention_bias", false);
  config.use_sliding_window = reader.boolean("use_sliding_window", false);
  config.sliding_window = reader.integer("sliding_window", 0);
  config.max_window_layers = reader.integer("max_window_layers", 0);
  config.bos_token_ids = reader.token_ids("bos_token_id");
  config.eos_token_ids = reader.token_ids("eos_token_id");
  // Newer transformers write "dtype" where older ones wrote "torch_dtype".
  auto dtype = reader.string("torch_dtype");
  if (!dtype) dtype = reader.string("dtype");
  if (dtype) config.torch_dtype = *dtype;
  return config;
}

ModelConfig load_hf_config(const std::string& path) {
  const std::string text = read_text_file(path);
  json root;
  try {
    root = parse_json_bounded(text, "'" + path + "'");
  } catch (const json::exception& error) {
    fail(ErrorKind::InvalidInput, "'{}' is not valid JSON ({}); fix or re-download config.json",
         path, echo_excerpt(error.what()));
  }
  ModelConfig config = parse_hf_config(root, path);
  validate_model_config(config, path);
  return config;
}

void validate_model_config(const ModelConfig& config, const std::string& source_name) {
  const std::string& source = source_name;
  check_positive(config.hidden_size, kMaxWidth, "hidden_size", source);
  check_positive(config.intermediate_size, kMaxWidth, "intermediate_size", source);
  check_positive(config.num_layers, kMaxLayers, "num_hidden_layers", source);
  check_positive(config.num_heads, kMaxHeads, "num_attention_heads", source);
  check_positive(config.num_kv_heads, kMaxHeads, "num_key_value_heads", source);
  check_positive(config.head_dim, kMaxWidth, "head_dim", source);
  check_positive(config.vocab_size, kMaxVocab, "vocab_size", source);
  check_positive(config.max_positions, kMaxPositions, "max_position_embeddings", source);
  require(config.num_heads % config.num_kv_heads == 0, ErrorKind::InvalidInput,
          "'{}': num_attention_heads {} is not a multiple of num_key_value_heads {}; grouped-query "
          "attention shares each KV head among a whole number of query heads",
          source, config.num_heads, config.num_kv_heads);
  require(config.head_dim % 2 == 0, ErrorKind::InvalidInput,
          "'{}': head_dim {} is odd; rotary embeddings rotate pairs of dimensions", source,
          config.head_dim);
  require(config.q_dim() <= kMaxWidth, ErrorKind::InvalidInput,
          "'{}': num_attention_heads × head_dim is {}, past retort's limit of {}", source,
          config.q_dim(), kMaxWidth);
  require(config.rms_norm_eps > 0 && config.rms_norm_eps < 1, ErrorKind::InvalidInput,
          "'{}': rms_norm_eps is {}, expected a small positive number such as 1e-6", source,
          config.rms_norm_eps);
  require(config.rope.theta > 0 && std::isfinite(config.rope.theta), ErrorKind::InvalidInput,
          "'{}': rope_theta is {}, expected a positive number such as 10000", source, config.rope.theta);
  if (config.rope.scaling == RopeScaling::Llama3) {
    const RopeConfig& rope = config.rope;
    require(rope.factor >= 1 && std::isfinite(rope.factor) && std::isfinite(rope.high_freq_factor) &&
                rope.low_freq_factor > 0 && rope.high_freq_factor > rope.low_freq_factor &&
                rope.original_max_positions > 0 && rope.original_max_positions <= kMaxPositions,
            ErrorKind::InvalidInput,
            "'{}': rope_scaling llama3 has factor {}, low_freq_factor {}, high_freq_factor {}, "
            "original_max_position_embeddings {}; expected factor >= 1, 0 < low < high, and a "
            "positive original length",
            source, rope.factor, rope.low_freq_factor, rope.high_freq_factor,
            rope.original_max_positions);
  }
  require(config.sliding_window >= 0 && config.max_window_layers >= 0 &&
              (!config.use_sliding_window || config.sliding_window > 0),
          ErrorKind::InvalidInput,
          "'{}': sliding_window {} / max_window_layers {} should be non-negative, and "
          "sliding_window positive when use_sliding_window is true",
          source, config.sliding_window, config.max_window_layers);
  for (const auto* ids : {&config.bos_token_ids, &config.eos_token_ids}) {
    for (int64_t id : *ids) {
      require(id >= 0 && id < config.vocab_size, ErrorKind::InvalidInput,
              "'{}': {} {} is outside the vocabulary [0, {})", source,
              ids == &config.bos_token_ids ? "bos_token_id" : "eos_token_id", id, config.vocab_size);
    }
  }
}

// Mirrors the tensor table in model/tensor_table.cpp, which this layer may not call; a test checks
// that the two agree for every shipped config. Meaningful (and overflow-free) for validated configs.
int64_t ModelConfig::parameter_count() const {
  const int64_t attention =
      2 * q_dim() * hidden_size + 2 * kv_dim() * hidden_size + (attention_bias ? q_dim() + 2 * kv_dim() : 0);
  const int64_t mlp = 3 * intermediate_size * hidden_size;
  const int64_t norms = 2 * hidden_size;
  const int64_t embedding = vocab_size * hidden_size;
  return embedding + num_layers * (attention + mlp + norms) + hidden_size +
         (tie_word_embeddings ? 0 : embedding);
}

namespace {
json token_ids_json(const std::vector<int64_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids.front();
  return ids;
}
}  // namespace

// Written with the keys transformers' save_pretrained writes for these classes (nlohmann::json
// sorts them, as save_pretrained does), so AutoConfig/AutoModelForCausalLM load it unchanged.
json to_hf_config(const ModelConfig& config) {
  const ArchitectureInfo& arch = info(config.arch);
  json out;
  out["architectures"] = {config.hf_architecture.empty() ? std::string(arch.hf_class)
                                                         : config.hf_architecture};
  out["attention_dropout"] = 0.0;
  if (config.arch == Architecture::Llama) out["attention_bias"] = config.attention_bias;
  out["bos_token_id"] = token_ids_json(config.bos_token_ids);
  out["eos_token_id"] = token_ids_json(config.eos_token_ids);
  if (config.num_heads <= 0 || config.head_dim * config.num_heads != config.hidden_size) {
    out["head_dim"] = config.head_dim;
  }
  out["hidden_act"] = "silu";
  out["hidden_size"] = config.hidden_size;
  out["initializer_range"] = 0.02;
  out["intermediate_size"] = config.intermediate_size;
  out["max_position_embeddings"] = config.max_positions;
  if (config.arch == Architecture::Qwen2) out["max_window_layers"] = config.max_window_layers;
  if (config.arch == Architecture::Llama) out["mlp_bias"] = false;
  out["model_type"] = arch.model_type;
  out["num_attention_heads"] = config.num_heads;
  out["num_hidden_layers"] = config.num_layers;
  out["num_key_value_heads"] = config.num_kv_heads;
  if (config.arch == Architecture::Llama) out["pretraining_tp"] = 1;
  out["rms_norm_eps"] = config.rms_norm_eps;
  if (config.rope.scaling == RopeScaling::Llama3) {
    out["rope_scaling"] = {{"factor", config.rope.factor},
                           {"high_freq_factor", config.rope.high_freq_factor},
                           {"low_freq_factor", config.rope.low_freq_factor},
                           {"original_max_position_embeddings", config.rope.original_max_positions},
                           {"rope_type", "llama3"}};
  } else {
    out["rope_scaling"] = nullptr;
  }
  out["rope_theta"] = config.rope.theta;
  if (config.arch == Architecture::Qwen2) {
    out["sliding_window"] = config.sliding_window > 0 ? json(config.sliding_window) : json(nullptr);
  }
  out["tie_word_embeddings"] = config.tie_word_embeddings;
  out["torch_dtype"] = config.torch_dtype;
  out["use_cache"] = true;
  if (config.arch == Architecture::Qwen2) out["use_sliding_window"] = config.use_sliding_window;
  out["vocab_size"] = config.vocab_size;
  return out;
}

}  // namespace retort
