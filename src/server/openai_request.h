#pragma once
// OpenAI request bodies validated into typed structs on the HTTP threads. Anything a client can get
// wrong throws ApiError(400) naming the field, so the engine only ever sees well-formed requests.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/output_grammar.h"
#include "engine/sampler.h"
#include "tokenizer/chat_template.h"

namespace retort::server {

// Server-side limits and defaults the parser applies.
struct RequestLimits {
  int max_tokens_cap = 4096;    // max_tokens above this is refused (400)
  int max_stop_strings = 4;     // as OpenAI
  int max_top_logprobs = 20;
  SamplingParams default_sampling;  // for fields the request leaves out
};

// Fields /v1/chat/completions and /v1/completions share.
struct GenerationSettings {
  std::string model;
  SamplingParams sampling;
  std::optional<int> max_tokens;  // absent: as many as the context allows (capped)
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  int top_logprobs = -1;          // -1: no logprobs; 0: only the sampled token's
  // response_format json_object / json_schema, or guided_choice: the reply's grammar (null: free text).
  std::shared_ptr<const OutputGrammar> grammar;
};

struct ChatCompletionRequest {
  GenerationSettings settings;
  std::vector<ChatMessage> messages;
};

struct CompletionRequest {
  GenerationSettings settings;
  std::string prompt;                      // text prompt, or
  std::optional<std::vector<int32_t>> prompt_tokens;  // a prompt given as token ids
};

// `random_seed` fills in the seed when the request has none (so each such request differs).
ChatCompletionRequest parse_chat_request(const nlohmann::json& body, const RequestLimits& limits,
                                         uint64_t random_seed);
CompletionRequest parse_completion_request(const nlohmann::json& body, const RequestLimits& limits,
                                           uint64_t random_seed);

// Parses the request body as a JSON object (400 when it is not one).
nlohmann::json parse_json_body(const std::string& body);

}  // namespace retort::server
