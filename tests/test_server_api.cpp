// The server's request validation, response shapes, auth comparison and metrics text (no sockets;
// the real-client tests in tests/node/ drive a running `retort serve`).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace retort::server {
namespace {

using nlohmann::json;

json chat_body() { return {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}; }

// The ApiError a body provokes: status and the offending parameter.
std::pair<int, std::string> chat_error(const json& body) {
  try {
    parse_chat_request(body, RequestLimits{}, 7);
  } catch (const ApiError& error) {
    return {error.status(), error.param()};
  }
  return {0, ""};
}

TEST(ServerRequest, ParsesEveryOpenAiSamplingField) {
  json body = chat_body();
  body.update({{"temperature", 0.3}, {"top_p", 0.9}, {"top_k", 40}, {"min_p", 0.05}, {"seed", 1234},
               {"frequency_penalty", 0.5}, {"presence_penalty", -0.25}, {"max_tokens", 99},
               {"max_completion_tokens", 50}, {"stop", "END"}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}, {"logprobs", true}, {"top_logprobs", 3}});
  ChatCompletionRequest request = parse_chat_request(body, RequestLimits{}, 7);
  const SamplingParams& s = request.settings.sampling;
  EXPECT_FLOAT_EQ(s.temperature, 0.3f);
  EXPECT_FLOAT_EQ(s.top_p, 0.9f);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_FLOAT_EQ(s.min_p, 0.05f);
  EXPECT_EQ(s.seed, 1234u);
  EXPECT_FLOAT_EQ(s.frequency_penalty, 0.5f);
  EXPECT_FLOAT_EQ(s.presence_penalty, -0.25f);
  EXPECT_EQ(request.settings.max_tokens, 50);  // the smaller of the two names
  EXPECT_EQ(request.settings.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(request.settings.stream);
  EXPECT_TRUE(request.settings.include_usage);
  EXPECT_EQ(request.settings.top_logprobs, 3);
  ASSERT_EQ(request.messages.size(), 1u);
  EXPECT_EQ(request.messages[0].content, "hi");
}

TEST(ServerRequest, DefaultsComeFromTheServerAndTheSeedFromTheCaller) {
  RequestLimits limits;
  limits.default_sampling.temperature = 0.42f;
  ChatCompletionRequest request = parse_chat_request(chat_body(), limits, 99);
  EXPECT_FLOAT_EQ(request.settings.sampling.temperature, 0.42f);
  EXPECT_EQ(request.settings.sampling.seed, 99u);
  EXPECT_FALSE(request.settings.max_tokens.has_value());
  EXPECT_EQ(request.settings.top_logprobs, -1);
}

TEST(ServerRequest, TextPartsAndDeveloperRoleAreAccepted) {
  json body = chat_body();
  body["messages"] = {{{"role", "developer"}, {"content", "be brief"}},
                      {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}};
  ChatCompletionRequest request = parse_chat_request(body, RequestLimits{}, 1);
  EXPECT_EQ(request.messages[0].role, "system");
  EXPECT_EQ(request.messages[1].content, "ab");
}

TEST(ServerRequest, BadFieldsAre400sNamingTheField) {
  auto with = [](const char* key, json value) {
    json body = chat_body();
    body[key] = std::move(value);
    return body;
  };
  EXPECT_EQ(chat_error(with("temperature", 3.5)), std::make_pair(400, std::string("temperature")));
  EXPECT_EQ(chat_error(with("temperature", "hot")), std::make_pair(400, std::string("temperature")));
  EXPECT_EQ(chat_error(with("max_tokens", 0)), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(chat_error(with("max_tokens", 1 << 20)), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(chat_error(with("n", 2)), std::make_pair(400, std::string("n")));
  EXPECT_EQ(chat_error(with("stop", json::array({"a", "b", "c", "d", "e"}))), std::make_pair(400, std::string("stop")));
  EXPECT_EQ(chat_error(with("stream_options", {{"include_usage", true}})),
            std::make_pair(400, std::string("stream_options")));
  EXPECT_EQ(chat_error(with("top_logprobs", 2)), std::make_pair(400, std::string("top_logprobs")));
  EXPECT_EQ(chat_error(with("tools", json::array())), std::make_pair(400, std::string("tools")));
  EXPECT_EQ(chat_error(with("messages", json::array())), std::make_pair(400, std::string("messages")));
  EXPECT_EQ(chat_error(with("messages", {{{"role", "robot"}, {"content", "x"}}})),
            std::make_pair(400, std::string("messages[0].role")));
  EXPECT_EQ(chat_error(with("messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}})),
            std::make_pair(400, std::string("messages[0].content")));
  EXPECT_THROW(parse_json_body("{not json"), ApiError);
  EXPECT_THROW(parse_json_body("[1, 2]"), ApiError);
}

TEST(ServerRequest, CompletionPromptsAsTextOrTokenIds) {
  CompletionRequest text = parse_completion_request({{"prompt", "once"}, {"logprobs", 2}}, RequestLimits{}, 1);
  EXPECT_EQ(text.prompt, "once");
  EXPECT_EQ(text.settings.top_logprobs, 2);
  CompletionRequest ids = parse_completion_request({{"prompt", {1, 2, 3}}}, RequestLimits{}, 1);
  EXPECT_EQ(*ids.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_THROW(parse_completion_request({{"prompt", {"a", "b"}}}, RequestLimits{}, 1), ApiError);
  EXPECT_THROW(parse_completion_request({{"max_tokens", 3}}, RequestLimits{}, 1), ApiError);
  EXPECT_THROW(parse_completion_request({{"prompt", "x"}, {"logprobs", 6}}, RequestLimits{}, 1), ApiError);
}

std::vector<json> sse_payloads(const std::string& text, bool& saw_done) {
  std::vector<json> payloads;
  saw_done = false;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find("\n\n", begin);
    EXPECT_NE(end, std::string::npos) << "an SSE event must end with a blank line";
    std::string line = text.substr(begin, end - begin);
    EXPECT_EQ(line.rfind("data: ", 0), 0u) << line;
    line = line.substr(6);
    if (line == "[DONE]") {
      saw_done = true;
    } else {
      payloads.push_back(json::parse(line));
    }
    begin = end + 2;
  }
  return payloads;
}

TEST(ServerResponse, ChatStreamSplitsReasoningAndEndsWithUsageAndDone) {
  ResponseContext context{Endpoint::ChatCompletions, "chatcmpl-x", 1, "m", true, true, true};
  ResponseBuilder builder(context);
  GenerationEvent thinking;
  thinking.reasoning = "hmm";
  thinking.logprobs = {{"h", -0.5f, {{"h", -0.5f}, {"x", -2.0f}}}};
  GenerationEvent answer;
  answer.content = "42";
  answer.finished = true;
  answer.reason = FinishReason::Length;
  answer.prompt_tokens = 7;
  answer.generated_tokens = 2;
  std::string text = builder.stream_start() + builder.stream_event(thinking) + builder.stream_event(answer);
  bool done = false;
  auto chunks = sse_payloads(text, done);
  EXPECT_TRUE(done);
  ASSERT_EQ(chunks.size(), 5u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[1]["choices"][0]["delta"]["reasoning_content"], "hmm");
  EXPECT_FALSE(chunks[1]["choices"][0]["delta"].contains("content"));
  EXPECT_EQ(chunks[1]["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["token"], "x");
  EXPECT_EQ(chunks[2]["choices"][0]["delta"]["content"], "42");
  EXPECT_EQ(chunks[3]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(chunks[3]["usage"].is_null());
  EXPECT_TRUE(chunks[4]["choices"].empty());
  EXPECT_EQ(chunks[4]["usage"]["total_tokens"], 9);
  for (const auto& chunk : chunks) EXPECT_EQ(chunk["object"], "chat.completion.chunk");
}

TEST(ServerResponse, NonStreamingBodiesCarryMessageUsageAndLegacyLogprobs) {
  ResponseBuilder chat({Endpoint::ChatCompletions, "chatcmpl-y", 1, "m", false, false, true});
  GenerationEvent event;
  event.reasoning = "think";
  event.content = "answer";
  event.finished = true;
  event.prompt_tokens = 3;
  event.generated_tokens = 4;
  chat.add(event);
  json body = json::parse(chat.final_body());
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "answer");
  EXPECT_EQ(body["choices"][0]["message"]["reasoning_content"], "think");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);

  ResponseBuilder completion({Endpoint::Completions, "cmpl-z", 1, "m", false, true, false});
  GenerationEvent tokens;
  tokens.content = "ab\xff";  // a token may end inside a character: the wire text stays valid UTF-8
  tokens.logprobs = {{"a", -0.1f, {}}, {"b\xff", -0.2f, {}}};
  tokens.finished = true;
  completion.add(tokens);
  body = json::parse(completion.final_body());
  EXPECT_EQ(body["choices"][0]["text"], "ab\xef\xbf\xbd");
  EXPECT_EQ(body["choices"][0]["logprobs"]["text_offset"], json({0, 1}));
}

TEST(ServerAuth, ConstantTimeCompareMatchesOnlyTheSameKey) {
  EXPECT_TRUE(constant_time_equal("secret-key", "secret-key"));
  EXPECT_FALSE(constant_time_equal("secret-kez", "secret-key"));
  EXPECT_FALSE(constant_time_equal("secret", "secret-key"));
  EXPECT_FALSE(constant_time_equal("secret-key-longer", "secret-key"));
  EXPECT_FALSE(constant_time_equal("", "secret-key"));
  EXPECT_FALSE(constant_time_equal("x", ""));
}

TEST(ServerErrors, BodiesHaveTheOpenAiShape) {
  json body = json::parse(error_body(ApiError(429, "busy", "", "queue_full")));
  EXPECT_EQ(body["error"]["type"], "rate_limit_error");
  EXPECT_EQ(body["error"]["code"], "queue_full");
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_EQ(json::parse(error_body(401, "no"))["error"]["type"], "authentication_error");
}

TEST(ServerMetricsText, CountsHistogramsAndEngineGauges) {
  ServerMetrics metrics;
  metrics.count_request("/v1/chat/completions", 200);
  metrics.count_request("/v1/chat/completions", 200);
  metrics.count_request("/v1/chat/completions", 429);
  metrics.observe_time_to_first_token(0.03);
  metrics.observe_inter_token(0.007);
  SchedulerStats engine;
  engine.queued = 3;
  engine.running = 2;
  engine.kv_blocks_used = 5;
  engine.kv_blocks_total = 20;
  const std::string text = metrics.render(engine, true);
  EXPECT_NE(text.find("retort_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("status=\"429\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("retort_queue_depth 3\n"), std::string::npos);
  EXPECT_NE(text.find("retort_running_sequences 2\n"), std::string::npos);
  EXPECT_NE(text.find("retort_kv_cache_usage_ratio 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("retort_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("retort_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("retort_inter_token_latency_seconds_count 1\n"), std::string::npos);
}

}  // namespace
}  // namespace retort::server
