#pragma once
// Maps engine events to OpenAI response JSON: chat.completion / text_completion bodies, and their
// streaming chunks as Server-Sent Events ("data: {…}\n\n", ending with "data: [DONE]\n\n").
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/scheduler.h"

namespace retort::server {

enum class Endpoint { ChatCompletions, Completions };

struct ResponseContext {
  Endpoint endpoint = Endpoint::ChatCompletions;
  std::string id;       // "chatcmpl-…" / "cmpl-…"
  int64_t created = 0;  // unix seconds
  std::string model;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  bool split_reasoning = false;  // message carries reasoning_content
};

class ResponseBuilder {
 public:
  explicit ResponseBuilder(ResponseContext context);

  // Streaming: the SSE text to send for the start of the stream and for each event. The finishing
  // event's text includes the finish chunk, the usage chunk when asked for, and "data: [DONE]".
  std::string stream_start() const;
  std::string stream_event(const GenerationEvent& event);

  // Non-streaming: collects events; the body once the finishing event has been added.
  void add(const GenerationEvent& event);
  std::string final_body() const;

  bool finished() const { return finished_; }
  FinishReason finish_reason() const { return reason_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t generated_tokens() const { return generated_tokens_; }

 private:
  nlohmann::json chunk(nlohmann::json choice) const;
  nlohmann::json logprobs_json(const std::vector<TokenLogprob>& entries, size_t text_offset) const;
  nlohmann::json usage() const;
  void note_finish(const GenerationEvent& event);

  ResponseContext context_;
  std::string content_;
  std::string reasoning_;
  std::vector<TokenLogprob> logprobs_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::Stop;
  std::string error_;
  int64_t prompt_tokens_ = 0;
  int64_t generated_tokens_ = 0;
  size_t streamed_text_bytes_ = 0;  // for the completions text_offset
};

// JSON text as sent on the wire: invalid UTF-8 (a token can end mid-character) becomes U+FFFD.
std::string to_wire(const nlohmann::json& value);
std::string sse_data(const nlohmann::json& value);

}  // namespace retort::server
