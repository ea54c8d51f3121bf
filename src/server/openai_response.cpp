#include "server/openai_response.h"

#include "server/api_error.h"

namespace retort::server {

using nlohmann::json;

std::string to_wire(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_data(const json& value) { return "data: " + to_wire(value) + "\n\n"; }

namespace {

json byte_list(const std::string& text) {
  json bytes = json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

}  // namespace

ResponseBuilder::ResponseBuilder(ResponseContext context) : context_(std::move(context)) {}

json ResponseBuilder::chunk(json choice) const {
  const bool chat = context_.endpoint == Endpoint::ChatCompletions;
  json body = {{"id", context_.id},
               {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", context_.created},
               {"model", context_.model},
               {"system_fingerprint", nullptr},
               {"choices", choice.is_null() ? json::array() : json::array({std::move(choice)})}};
  if (context_.include_usage) body["usage"] = nullptr;
  return body;
}

json ResponseBuilder::usage() const {
  return {{"prompt_tokens", prompt_tokens_},
          {"completion_tokens", generated_tokens_},
          {"total_tokens", prompt_tokens_ + generated_tokens_}};
}

json ResponseBuilder::logprobs_json(const std::vector<TokenLogprob>& entries, size_t text_offset) const {
  if (!context_.logprobs) return nullptr;
  if (context_.endpoint == Endpoint::ChatCompletions) {
    json content = json::array();
    for (const auto& entry : entries) {
      json top = json::array();
      for (const auto& [token, logprob] : entry.top) {
        top.push_back({{"token", token}, {"logprob", logprob}, {"bytes", byte_list(token)}});
      }
      content.push_back({{"token", entry.token}, {"logprob", entry.logprob}, {"bytes", byte_list(entry.token)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  // The legacy completions shape: parallel arrays.
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const auto& entry : entries) {
    tokens.push_back(entry.token);
    token_logprobs.push_back(entry.logprob);
    json alternatives = json::object();
    for (const auto& [token, logprob] : entry.top) alternatives[token] = logprob;
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset);
    text_offset += entry.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

void ResponseBuilder::note_finish(const GenerationEvent& event) {
  if (!event.finished) return;
  finished_ = true;
  reason_ = event.reason;
  error_ = event.error;
  prompt_tokens_ = event.prompt_tokens;
  generated_tokens_ = event.generated_tokens;
}

std::string ResponseBuilder::stream_start() const {
  if (context_.endpoint != Endpoint::ChatCompletions) return {};
  return sse_data(chunk({{"index", 0},
                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                         {"logprobs", nullptr},
                         {"finish_reason", nullptr}}));
}

std::string ResponseBuilder::stream_event(const GenerationEvent& event) {
  std::string out;
  const bool chat = context_.endpoint == Endpoint::ChatCompletions;
  const bool has_text = !event.content.empty() || !event.reasoning.empty() || !event.logprobs.empty();
  if (has_text) {
    json choice = {{"index", 0}, {"logprobs", logprobs_json(event.logprobs, streamed_text_bytes_)}, {"finish_reason", nullptr}};
    if (chat) {
      json delta = json::object();
      if (!event.reasoning.empty()) delta["reasoning_content"] = event.reasoning;
      if (!event.content.empty() || event.reasoning.empty()) delta["content"] = event.content;
      choice["delta"] = std::move(delta);
    } else {
      choice["text"] = event.content;
    }
    streamed_text_bytes_ += event.content.size();
    out += sse_data(chunk(std::move(choice)));
  }
  note_finish(event);
  if (!event.finished) return out;
  if (reason_ == FinishReason::Error) {
    out += sse_data(json::parse(error_body(500, "generation failed: " + error_)));
  } else {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(reason_)}};
    if (chat) {
      choice["delta"] = json::object();
    } else {
      choice["text"] = "";
    }
    out += sse_data(chunk(std::move(choice)));
    if (context_.include_usage) {
      json last = chunk(nullptr);
      last["usage"] = usage();
      out += sse_data(last);
    }
  }
  out += "data: [DONE]\n\n";
  return out;
}

void ResponseBuilder::add(const GenerationEvent& event) {
  content_ += event.content;
  reasoning_ += event.reasoning;
  logprobs_.insert(logprobs_.end(), event.logprobs.begin(), event.logprobs.end());
  note_finish(event);
}

std::string ResponseBuilder::final_body() const {
  if (reason_ == FinishReason::Error) return error_body(500, "generation failed: " + error_);
  const bool chat = context_.endpoint == Endpoint::ChatCompletions;
  json choice = {{"index", 0}, {"logprobs", logprobs_json(logprobs_, 0)}, {"finish_reason", openai_finish_reason(reason_)}};
  if (chat) {
    json message = {{"role", "assistant"}, {"content", content_}, {"refusal", nullptr}};
    message["reasoning_content"] = context_.split_reasoning && !reasoning_.empty() ? json(reasoning_) : json(nullptr);
    choice["message"] = std::move(message);
  } else {
    choice["text"] = content_;
  }
  json body = {{"id", context_.id},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", context_.created},
               {"model", context_.model},
               {"system_fingerprint", nullptr},
               {"choices", json::array({std::move(choice)})},
               {"usage", usage()}};
  return to_wire(body);
}

}  // namespace retort::server
