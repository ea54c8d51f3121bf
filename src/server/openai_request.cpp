#include "server/openai_request.h"

#include <fmt/format.h>

#include <cmath>

#include "server/api_error.h"
#include "util/error.h"
#include "util/input_limits.h"

namespace retort::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const char* json_type_name(const json& value) { return value.type_name(); }

// A field that is absent or null counts as not given.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// A member that must be a string when given (json::value() would throw a type_error, a 500, for a
// number or null); nullopt when absent or null.
std::optional<std::string> string_member(const json& object, const char* name, const std::string& param) {
  const json* value = field(object, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) bad(param, fmt::format("'{}' must be a string, got {}", param, json_type_name(*value)));
  return value->get<std::string>();
}

std::optional<double> number_field(const json& body, const char* name, double low, double high) {
  const json* value = field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) bad(name, fmt::format("'{}' must be a number, got {}", name, json_type_name(*value)));
  const double x = value->get<double>();
  if (!std::isfinite(x) || x < low || x > high) {
    bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, low, high, x));
  }
  return x;
}

std::optional<int64_t> integer_field(const json& body, const char* name, int64_t low, int64_t high) {
  const json* value = field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number_integer()) bad(name, fmt::format("'{}' must be an integer, got {}", name, json_type_name(*value)));
  const int64_t x = value->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(value->get<uint64_t>(), INT64_MAX))
                                                : value->get<int64_t>();
  if (x < low || x > high) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, low, high, x));
  return x;
}

std::optional<bool> bool_field(const json& body, const char* name) {
  const json* value = field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) bad(name, fmt::format("'{}' must be true or false, got {}", name, json_type_name(*value)));
  return value->get<bool>();
}

std::vector<std::string> stop_field(const json& body, int max_count) {
  const json* value = field(body, "stop");
  if (value == nullptr) return {};
  std::vector<std::string> stops;
  if (value->is_string()) {
    stops.push_back(value->get<std::string>());
  } else if (value->is_array()) {
    for (const auto& item : *value) {
      if (!item.is_string()) bad("stop", "'stop' must be a string or an array of strings");
      stops.push_back(item.get<std::string>());
    }
  } else {
    bad("stop", fmt::format("'stop' must be a string or an array of strings, got {}", json_type_name(*value)));
  }
  if (static_cast<int>(stops.size()) > max_count) {
    bad("stop", fmt::format("'stop' may hold at most {} strings, got {}", max_count, stops.size()));
  }
  return stops;
}

void check_unsupported(const json& body) {
  if (auto n = integer_field(body, "n", 1, 128); n && *n != 1) bad("n", "only n = 1 is supported");
  for (const char* name : {"tools", "functions", "tool_choice", "function_call"}) {
    if (field(body, name) != nullptr) bad(name, fmt::format("'{}' (tool calling) is not supported by this server", name));
  }
}

// response_format {"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": …}}, and
// vLLM's guided_choice: ["label", …] (one of the strings, as plain text).
std::shared_ptr<const OutputGrammar> parse_output_grammar(const json& body) {
  const json* format = field(body, "response_format");
  const json* choice = field(body, "guided_choice");
  if (format != nullptr && choice != nullptr) bad("guided_choice", "give either response_format or guided_choice");
  try {
    if (choice != nullptr) {
      if (!choice->is_array() || choice->empty()) bad("guided_choice", "'guided_choice' must be a non-empty array of strings");
      std::vector<std::string> strings;
      for (const auto& item : *choice) {
        if (!item.is_string()) bad("guided_choice", "'guided_choice' must be a non-empty array of strings");
        strings.push_back(item.get<std::string>());
      }
      return OutputGrammar::choice(strings);
    }
    if (format == nullptr) return nullptr;
    if (!format->is_object()) bad("response_format", "'response_format' must be an object with a 'type'");
    const json* type = field(*format, "type");
    if (type == nullptr || !type->is_string()) {
      bad("response_format.type", "response_format.type must be a string: text, json_object or json_schema");
    }
    const std::string name = type->get<std::string>();
    if (name == "text") return nullptr;
    if (name == "json_object") return OutputGrammar::any_json_object();
    if (name == "json_schema") {
      const json* spec = field(*format, "json_schema");
      const json* schema = spec != nullptr && spec->is_object() ? field(*spec, "schema") : nullptr;
      if (schema == nullptr) bad("response_format", "response_format json_schema needs json_schema.schema (a JSON schema)");
      return OutputGrammar::json_schema(*schema);
    }
    bad("response_format", fmt::format("response_format type '{}' is not supported; use text, json_object or json_schema",
                                       name.substr(0, 64)));
  } catch (const Error& error) {
    bad(choice != nullptr ? "guided_choice" : "response_format", error.what());
  }
}

GenerationSettings parse_settings(const json& body, const RequestLimits& limits, uint64_t random_seed) {
  check_unsupported(body);
  GenerationSettings settings;
  if (const json* model = field(body, "model")) {
    if (!model->is_string()) bad("model", "'model' must be a string");
    settings.model = model->get<std::string>();
  }
  SamplingParams& s = settings.sampling;
  s = limits.default_sampling;
  if (auto t = number_field(body, "temperature", 0, 2)) s.temperature = static_cast<float>(*t);
  if (auto p = number_field(body, "top_p", 0, 1)) s.top_p = static_cast<float>(*p);
  if (auto k = integer_field(body, "top_k", -1, 1 << 20)) s.top_k = static_cast<int>(std::max<int64_t>(*k, 0));
  if (auto m = number_field(body, "min_p", 0, 1)) s.min_p = static_cast<float>(*m);
  if (auto f = number_field(body, "frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*f);
  if (auto p = number_field(body, "presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*p);
  if (auto r = number_field(body, "repetition_penalty", 0.01, 10)) s.repetition_penalty = static_cast<float>(*r);
  auto seed = integer_field(body, "seed", INT64_MIN, INT64_MAX);
  s.seed = seed ? static_cast<uint64_t>(*seed) : random_seed;
  try {
    s.validate();
  } catch (const Error& error) {
    bad("", error.what());
  }

  // max_completion_tokens is the newer name; either may be given, the smaller wins.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (auto n = integer_field(body, name, 1, INT32_MAX)) {
      if (*n > limits.max_tokens_cap) {
        bad(name, fmt::format("'{}' is {} but this server allows at most {}", name, *n, limits.max_tokens_cap));
      }
      settings.max_tokens = settings.max_tokens ? std::min<int>(*settings.max_tokens, static_cast<int>(*n))
                                                : static_cast<int>(*n);
    }
  }
  settings.stop = stop_field(body, limits.max_stop_strings);
  settings.grammar = parse_output_grammar(body);
  settings.stream = bool_field(body, "stream").value_or(false);
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!settings.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    settings.include_usage = bool_field(*options, "include_usage").value_or(false);
  }
  return settings;
}

std::string message_content(const json& content, size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(param, fmt::format("'{}' must be a string or an array of text parts", param));
  std::string text;
  for (const auto& part : content) {
    const bool text_part = part.is_object() && field(part, "type") != nullptr && part["type"].is_string() &&
                           part["type"].get<std::string>() == "text";
    if (!text_part || !part.contains("text") || !part["text"].is_string()) {
      bad(param, fmt::format("'{}' parts must be {{\"type\": \"text\", \"text\": …}}; this model reads text only", param));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

json parse_json_body(const std::string& body) {
  json parsed;
  try {
    parsed = parse_json_bounded(body, "the request body");
  } catch (const Error& error) {
    throw ApiError(400, error.what());
  } catch (const json::exception& error) {
    throw ApiError(400, "the request body is not valid JSON: " + echo_excerpt(error.what()));
  }
  if (!parsed.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return parsed;
}

ChatCompletionRequest parse_chat_request(const json& body, const RequestLimits& limits, uint64_t random_seed) {
  ChatCompletionRequest request;
  request.settings = parse_settings(body, limits, random_seed);
  const json* messages = field(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    bad("messages", "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!message.is_object()) bad(param, fmt::format("'{}' must be an object", param));
    const std::optional<std::string> role = string_member(message, "role", param + ".role");
    if (!role) bad(param + ".role", fmt::format("'{}' has no role; give system, developer, user or assistant", param));
    std::string mapped = *role == "developer" ? "system" : *role;
    if (mapped != "system" && mapped != "user" && mapped != "assistant") {
      bad(param + ".role", fmt::format("'{}.role' must be system, developer, user or assistant, got '{}'", param,
                                       echo_excerpt(*role)));
    }
    if (!message.contains("content")) bad(param + ".content", fmt::format("'{}' has no content", param));
    request.messages.push_back({mapped, message_content(message["content"], i)});
  }
  if (bool_field(body, "logprobs").value_or(false)) {
    request.settings.top_logprobs =
        static_cast<int>(integer_field(body, "top_logprobs", 0, limits.max_top_logprobs).value_or(0));
  } else if (field(body, "top_logprobs") != nullptr) {
    bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  }
  return request;
}

CompletionRequest parse_completion_request(const json& body, const RequestLimits& limits, uint64_t random_seed) {
  CompletionRequest request;
  request.settings = parse_settings(body, limits, random_seed);
  if (bool_field(body, "echo").value_or(false)) bad("echo", "'echo' is not supported");
  if (field(body, "suffix") != nullptr) bad("suffix", "'suffix' is not supported");
  const json* prompt = field(body, "prompt");
  if (prompt == nullptr) bad("prompt", "'prompt' is required (a string, or an array of token ids)");
  if (prompt->is_string()) {
    request.prompt = prompt->get<std::string>();
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    request.prompt = (*prompt)[0].get<std::string>();
  } else if (prompt->is_array() && !prompt->empty() && std::all_of(prompt->begin(), prompt->end(), [](const json& t) {
               return t.is_number_integer();
             })) {
    std::vector<int32_t> tokens;
    for (const auto& t : *prompt) {
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id > INT32_MAX) bad("prompt", fmt::format("token id {} is out of range", id));
      tokens.push_back(static_cast<int32_t>(id));
    }
    request.prompt_tokens = std::move(tokens);
  } else {
    bad("prompt", "'prompt' must be a string, a one-string array or an array of token ids (batches are not supported)");
  }
  if (auto n = integer_field(body, "logprobs", 0, 5)) request.settings.top_logprobs = static_cast<int>(*n);
  return request;
}

}  // namespace retort::server
