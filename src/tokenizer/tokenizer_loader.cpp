// Reads tokenizer.json (+ tokenizer_config.json) into a Tokenizer, checking each part and saying
// which one is wrong or unsupported.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/mapped_file.h"

namespace retort {

using nlohmann::json;

class TokenizerLoader {
 public:
  TokenizerLoader(const json& tokenizer, const json& config, std::string origin)
      : tokenizer_json_(tokenizer), config_(config), origin_(std::move(origin)), result_(new Tokenizer()) {}

  std::unique_ptr<Tokenizer> build() {
    require(tokenizer_json_.is_object(), ErrorKind::InvalidInput,
            "{}: expected a JSON object (a Hugging Face tokenizer.json), found {}", origin_, tokenizer_json_.type_name());
    require(tokenizer_json_.contains("model") && tokenizer_json_["model"].is_object(), ErrorKind::InvalidInput,
            "{}: has no \"model\" object; expected a Hugging Face tokenizer.json", origin_);
    check_model_type(tokenizer_json_["model"]);
    result_->normalizer_ = Normalizer::from_json(tokenizer_json_.value("normalizer", json()));
    result_->pre_tokenizer_ = PreTokenizer::from_json(tokenizer_json_.value("pre_tokenizer", json()));
    require(result_->pre_tokenizer_.has_byte_level(), ErrorKind::Unsupported,
            "{}: the pre_tokenizer has no ByteLevel step, so this is not a byte-level BPE tokenizer (GPT-2, Qwen2, "
            "Llama 3, DeepSeek style); retort supports only those",
            origin_);
    check_decoder(tokenizer_json_.value("decoder", json()));
    load_bpe(tokenizer_json_["model"]);
    load_added_tokens(tokenizer_json_.value("added_tokens", json::array()));
    load_special_sequence(tokenizer_json_.value("post_processor", json()));
    load_config();
    return std::move(result_);
  }

 private:
  void check_model_type(const json& model) {
    // Old files leave out "type"; the Hugging Face library then recognises BPE by its merges.
    std::string type = model.contains("type") && model["type"].is_string() ? model["type"].get<std::string>()
                       : model.contains("merges")                          ? "BPE"
                                                                           : "(none)";
    require(type == "BPE", ErrorKind::Unsupported,
            "{}: model type \"{}\" is not supported; retort implements byte-level BPE (the model of Qwen2, Llama 3 "
            "and DeepSeek tokenizers), not Unigram, WordPiece or WordLevel",
            origin_, type);
    const auto non_empty_string = [&](const char* key) {
      return model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty();
    };
    require(!non_empty_string("continuing_subword_prefix") && !non_empty_string("end_of_word_suffix"),
            ErrorKind::Unsupported,
            "{}: BPE with a continuing_subword_prefix or end_of_word_suffix is not supported (byte-level BPE has none)",
            origin_);
    require(!model.value("byte_fallback", false), ErrorKind::Unsupported,
            "{}: BPE with byte_fallback (SentencePiece style, e.g. Llama 2) is not supported; retort implements "
            "byte-level BPE",
            origin_);
    const json dropout = model.value("dropout", json());
    require(dropout.is_null() || (dropout.is_number() && dropout.get<double>() == 0.0), ErrorKind::Unsupported,
            "{}: BPE dropout is a training-time option; expected \"dropout\": null", origin_);
  }

  void check_decoder(const json& decoder) {
    if (decoder.is_null()) return;
    const std::string type = decoder.value("type", std::string());
    if (type == "ByteLevel") return;
    if (type == "Sequence" && decoder.contains("decoders") && decoder["decoders"].is_array()) {
      for (const auto& step : decoder["decoders"]) check_decoder(step);
      return;
    }
    fail(ErrorKind::Unsupported,
         "{}: decoder type \"{}\" is not supported; byte-level BPE tokenizers use the ByteLevel decoder", origin_,
         type);
  }

  // Vocabulary entries keep their tokenizer.json spelling here, which is what merges refer to.
  void load_bpe(const json& model) {
    require(model.contains("vocab") && model["vocab"].is_object(), ErrorKind::InvalidInput,
            "{}: model.vocab must be an object of token -> id", origin_);
    auto& id_of_spelling = id_of_spelling_;
    std::unordered_map<std::string, int32_t> id_of_bytes;
    id_of_spelling.reserve(model["vocab"].size());
    int32_t max_id = -1;
    for (const auto& [spelling, id_json] : model["vocab"].items()) {
      require(id_json.is_number_integer() && id_json.get<int64_t>() >= 0 && id_json.get<int64_t>() < INT32_MAX,
              ErrorKind::InvalidInput, "{}: vocab entry \"{}\" has id {}; expected a non-negative integer", origin_,
              spelling, id_json.dump());
      const auto id = id_json.get<int32_t>();
      id_of_spelling.emplace(spelling, id);
      id_of_bytes.emplace(byte_level::decode_token(spelling), id);
      max_id = std::max(max_id, id);
    }
    // Ids the model defines; added tokens are filled in afterwards.
    result_->id_bytes_.assign(static_cast<size_t>(max_id + 1), std::string());
    result_->id_kinds_.assign(static_cast<size_t>(max_id + 1), Tokenizer::IdKind::Unassigned);
    for (const auto& [bytes, id] : id_of_bytes) {
      result_->id_bytes_[id] = bytes;
      result_->id_kinds_[id] = Tokenizer::IdKind::Vocabulary;
    }

    std::vector<BpeModel::Merge> merges = read_merges(model.value("merges", json::array()), id_of_spelling);
    BpeOptions options;
    options.ignore_merges = model.value("ignore_merges", false);
    options.fuse_unk = model.value("fuse_unk", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = id_of_spelling.find(model["unk_token"].get_ref<const std::string&>());
      if (it != id_of_spelling.end()) options.unk_id = it->second;
    }
    result_->bpe_ = BpeModel(std::move(id_of_bytes), merges, options);
  }

  std::vector<BpeModel::Merge> read_merges(const json& merges_json,
                                           const std::unordered_map<std::string_view, int32_t>& id_of_spelling) {
    require(merges_json.is_array(), ErrorKind::InvalidInput, "{}: model.merges must be an array", origin_);
    std::vector<BpeModel::Merge> merges;
    merges.reserve(merges_json.size());
    const auto id_of = [&](const std::string& spelling, size_t rank) {
      auto it = id_of_spelling.find(spelling);
      require(it != id_of_spelling.end(), ErrorKind::InvalidInput,
              "{}: merge #{} uses \"{}\", which is not in the vocabulary", origin_, rank, spelling);
      return it->second;
    };
    std::string left, right;
    for (size_t rank = 0; rank < merges_json.size(); ++rank) {
      const json& merge = merges_json[rank];
      // Two encodings exist: "left right" (older files) and ["left", "right"].
      if (merge.is_string()) {
        const std::string& text = merge.get_ref<const std::string&>();
        const size_t space = text.find(' ');
        require(space != std::string::npos && text.find(' ', space + 1) == std::string::npos, ErrorKind::InvalidInput,
                "{}: merge #{} is \"{}\"; expected two tokens separated by one space", origin_, rank, text);
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      } else {
        fail(ErrorKind::InvalidInput, "{}: merge #{} is {}; expected \"a b\" or [\"a\", \"b\"]", origin_, rank,
             merge.dump().substr(0, 100));
      }
      merges.push_back({id_of(left, rank), id_of(right, rank), id_of(left + right, rank)});
    }
    return merges;
  }

  void load_added_tokens(const json& list) {
    require(list.is_array(), ErrorKind::InvalidInput, "{}: added_tokens must be an array", origin_);
    std::vector<AddedToken> raw, normalized;
    std::vector<std::string> raw_patterns, normalized_patterns;
    for (const json& entry : list) {
      require(entry.is_object() && entry.contains("id") && entry["id"].is_number_integer() &&
                  entry["id"].get<int64_t>() >= 0 && entry["id"].get<int64_t>() < INT32_MAX &&
                  entry.contains("content") && entry["content"].is_string(),
              ErrorKind::InvalidInput, "{}: added token {} needs a non-negative integer \"id\" and a string \"content\"",
              origin_, entry.dump().substr(0, 200));
      AddedToken token;
      token.content = entry["content"].get<std::string>();
      // Like the Hugging Face library, a token whose text is already in the vocabulary keeps that id.
      auto in_vocabulary = id_of_spelling_.find(token.content);
      token.id = in_vocabulary != id_of_spelling_.end() ? in_vocabulary->second : entry["id"].get<int32_t>();
      token.special = entry.value("special", false);
      token.single_word = entry.value("single_word", false);
      token.lstrip = entry.value("lstrip", false);
      token.rstrip = entry.value("rstrip", false);
      token.normalized = entry.value("normalized", !token.special);
      register_added_token(token);
      result_->added_tokens_.push_back(token);
      if (token.normalized && utf8::is_valid(token.content)) {
        normalized_patterns.push_back(result_->normalizer_.normalize(token.content));
        normalized.push_back(token);
      } else {
        raw_patterns.push_back(token.content);
        raw.push_back(token);
      }
    }
    result_->raw_added_tokens_ = AddedTokenMatcher(std::move(raw), raw_patterns);
    result_->normalized_added_tokens_ = AddedTokenMatcher(std::move(normalized), normalized_patterns);
  }

  void register_added_token(const AddedToken& token) {
    auto& bytes = result_->id_bytes_;
    auto& kinds = result_->id_kinds_;
    if (static_cast<size_t>(token.id) >= bytes.size()) {
      bytes.resize(static_cast<size_t>(token.id) + 1);
      kinds.resize(static_cast<size_t>(token.id) + 1, Tokenizer::IdKind::Unassigned);
    }
    // An added token decodes to its content, also where its id is in the model's vocabulary.
    bytes[token.id] = token.content;
    kinds[token.id] = token.special ? Tokenizer::IdKind::AddedSpecial : Tokenizer::IdKind::Added;
  }

  // The tokens TemplateProcessing puts around a single sequence (e.g. BOS for Llama 3).
  void load_special_sequence(const json& processor) {
    if (processor.is_null()) return;
    const std::string type = processor.value("type", std::string());
    if (type == "Sequence" && processor.contains("processors") && processor["processors"].is_array()) {
      for (const auto& step : processor["processors"]) load_special_sequence(step);
      return;
    }
    if (type == "ByteLevel") return;  // only adjusts offsets, never ids
    require(type == "TemplateProcessing", ErrorKind::Unsupported,
            "{}: post_processor type \"{}\" is not supported; retort implements TemplateProcessing and ByteLevel",
            origin_, type);
    require(processor.contains("single") && processor["single"].is_array(), ErrorKind::InvalidInput,
            "{}: TemplateProcessing needs a \"single\" array", origin_);
    bool after_sequence = false;
    for (const json& item : processor["single"]) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      require(item.contains("SpecialToken") && item["SpecialToken"].contains("id"), ErrorKind::InvalidInput,
              "{}: TemplateProcessing item {} is neither a Sequence nor a SpecialToken", origin_, item.dump());
      for (int32_t id : special_token_ids(processor, item["SpecialToken"]["id"].get<std::string>())) {
        (after_sequence ? result_->suffix_ids_ : result_->prefix_ids_).push_back(id);
      }
    }
  }

  std::vector<int32_t> special_token_ids(const json& processor, const std::string& name) {
    const json specials = processor.value("special_tokens", json::object());
    if (specials.contains(name) && specials[name].contains("ids")) {
      std::vector<int32_t> ids = specials[name]["ids"].get<std::vector<int32_t>>();
      for (int32_t id : ids) {
        require(result_->is_token(id), ErrorKind::InvalidInput,
                "{}: TemplateProcessing special token \"{}\" has id {}, which is not a token", origin_, name, id);
      }
      return ids;
    }
    auto id = result_->token_id(name);
    require(id.has_value(), ErrorKind::InvalidInput,
            "{}: TemplateProcessing uses special token \"{}\", which is not in the vocabulary", origin_, name);
    return {*id};
  }

  // tokenizer_config.json writes tokens either as a string or as {"content": ...}.
  std::optional<std::string> config_token(const char* key) {
    if (!config_.contains(key)) return std::nullopt;
    const json& value = config_[key];
    if (value.is_string()) return value.get<std::string>();
    if (value.is_object() && value.contains("content") && value["content"].is_string()) {
      return value["content"].get<std::string>();
    }
    require(value.is_null(), ErrorKind::InvalidInput,
            "tokenizer_config.json: \"{}\" is {}; expected a string, {{\"content\": ...}} or null", key,
            value.dump().substr(0, 100));
    return std::nullopt;
  }

  int32_t config_token_id(const char* key, const std::string& content) {
    auto id = result_->token_id(content);
    require(id.has_value(), ErrorKind::InvalidInput,
            "tokenizer_config.json: {} \"{}\" is not a token of {}; the two files do not belong together", key,
            content, origin_);
    return *id;
  }

  void load_config() {
    if (config_.is_null()) {
      if (!result_->prefix_ids_.empty()) result_->bos_id_ = result_->prefix_ids_.front();
      return;
    }
    require(config_.is_object(), ErrorKind::InvalidInput, "tokenizer_config.json: expected a JSON object, found {}",
            config_.type_name());
    const auto bos = config_token("bos_token");
    const auto eos = config_token("eos_token");
    if (bos) result_->bos_id_ = config_token_id("bos_token", *bos);
    if (eos) result_->eos_ids_.push_back(config_token_id("eos_token", *eos));
    if (!config_.contains("bos_token") && !result_->prefix_ids_.empty()) {
      result_->bos_id_ = result_->prefix_ids_.front();
    }
    load_bos_eos_flags(bos, eos);
    load_chat_template();
  }

  // transformers' LlamaTokenizerFast rebuilds the post-processor from add_bos_token/add_eos_token
  // (defaults true/false); other classes keep tokenizer.json's post_processor and only fall back to
  // the flags when it adds nothing.
  void load_bos_eos_flags(const std::optional<std::string>& bos, const std::optional<std::string>& eos) {
    const bool llama_class = config_.value("tokenizer_class", std::string()) == "LlamaTokenizerFast";
    const bool has_template = !result_->prefix_ids_.empty() || !result_->suffix_ids_.empty();
    if (!llama_class && has_template) return;
    const bool add_bos = config_.contains("add_bos_token") && config_["add_bos_token"].is_boolean()
                             ? config_["add_bos_token"].get<bool>()
                             : llama_class;
    const bool add_eos = config_.contains("add_eos_token") && config_["add_eos_token"].is_boolean()
                             ? config_["add_eos_token"].get<bool>()
                             : false;
    result_->prefix_ids_.clear();
    result_->suffix_ids_.clear();
    if (add_bos && bos) result_->prefix_ids_.push_back(*result_->bos_id_);
    if (add_eos && eos) result_->suffix_ids_.push_back(result_->eos_ids_.front());
  }

  // chat_template is a string, or (newer files) a list of {"name", "template"} where "default" is used.
  void load_chat_template() {
    const json chat_template = config_.value("chat_template", json());
    if (chat_template.is_string()) {
      result_->chat_template_ = chat_template.get<std::string>();
    } else if (chat_template.is_array()) {
      for (const json& entry : chat_template) {
        if (!entry.is_object() || !entry.contains("template") || !entry["template"].is_string()) continue;
        if (result_->chat_template_.empty() || entry.value("name", std::string()) == "default") {
          result_->chat_template_ = entry["template"].get<std::string>();
        }
      }
    }
  }

  const json& tokenizer_json_;
  const json& config_;
  std::unordered_map<std::string_view, int32_t> id_of_spelling_;  // views into tokenizer_json_
  std::string origin_;
  std::unique_ptr<Tokenizer> result_;
};

namespace {

json parse_json(std::string_view text, const std::string& origin) {
  try {
    return parse_json_bounded(text, origin);
  } catch (const json::exception& error) {
    fail(ErrorKind::InvalidInput, "{} is not valid JSON ({}); expected a Hugging Face tokenizer file", origin,
         echo_excerpt(error.what()));
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                                     const std::string& origin) {
  const json tokenizer = parse_json(tokenizer_json, origin);
  const json config = config_json.empty() ? json() : parse_json(config_json, "tokenizer_config.json beside " + origin);
  try {
    return TokenizerLoader(tokenizer, config, origin).build();
  } catch (const json::exception& error) {
    // A field of the wrong JSON type somewhere the checks above did not look.
    fail(ErrorKind::InvalidInput, "{}: unexpected content ({}); expected a Hugging Face tokenizer.json", origin,
         echo_excerpt(error.what()));
  }
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& tokenizer_json_or_dir) {
  namespace fs = std::filesystem;
  fs::path path(tokenizer_json_or_dir);
  std::error_code error;
  if (fs::is_directory(path, error)) {
    path /= "tokenizer.json";
    require(fs::exists(path, error), ErrorKind::NotFound,
            "no tokenizer.json in '{}'; expected a Hugging Face model directory or the path of a tokenizer.json",
            tokenizer_json_or_dir);
  }
  require(fs::is_regular_file(path, error), ErrorKind::NotFound,
          "tokenizer file '{}' does not exist; pass a tokenizer.json path or a model directory holding one",
          path.string());
  const std::string tokenizer_text = read_text_file(path.string());
  const fs::path config_path = path.parent_path() / "tokenizer_config.json";
  const std::string config_text = fs::is_regular_file(config_path, error) ? read_text_file(config_path.string()) : "";
  return from_json_text(tokenizer_text, config_text, path.string());
}

}  // namespace retort
