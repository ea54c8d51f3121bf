// The server's request parser and metrics under hostile input (issue 17): /metrics labels come from
// a fixed set, never from the client (class 4), and request fields of the wrong JSON type are 400s
// naming the field, not 500s from a json type_error (class 6). tests/node/hardening.test.mjs does
// the same through a running server.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_request.h"

namespace retort {
namespace {

using nlohmann::json;

// Class 4: label values only from the route templates and status codes.
TEST(MetricsLabels, ComeFromAFixedSetNeverFromTheClient) {
  EXPECT_EQ(server::endpoint_label("/v1/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(server::endpoint_label("/v1/models/some-model"), "/v1/models/{model}");
  EXPECT_EQ(server::endpoint_label("/v1/chat/completions/x"), "other");
  server::ServerMetrics metrics;
  metrics.count_request("/x\"} 1\nretort_running_sequences 42\n#", 404);
  const std::string one = metrics.render({}, true);
  EXPECT_EQ(one.find("42"), std::string::npos) << one;
  EXPECT_NE(one.find("retort_requests_total{endpoint=\"other\",status=\"404\"} 1\n"), std::string::npos) << one;
  for (int i = 0; i < 2000; ++i) metrics.count_request("/unknown-" + std::to_string(i), 404);
  metrics.count_request("/", 99999);
  const std::string many = metrics.render({}, true);
  EXPECT_NE(many.find("endpoint=\"other\",status=\"404\"} 2001\n"), std::string::npos) << many;
  EXPECT_LT(many.size(), one.size() + 80);  // one more series (status 0) and wider counts
}

// Class 6: fields of the wrong JSON type are 400s naming the field (json::value threw type_error).
TEST(RequestFieldTypes, WrongTypesAre400sNamingTheField) {
  auto status_of = [](const json& body) -> std::pair<int, std::string> {
    try {
      server::parse_chat_request(body, server::RequestLimits{}, 1);
    } catch (const server::ApiError& error) {
      return {error.status(), error.param()};
    }
    return {0, ""};
  };
  auto chat = [](json message) { return json{{"messages", json::array({std::move(message)})}}; };
  EXPECT_EQ(status_of(chat({{"role", 5}, {"content", "hi"}})), std::make_pair(400, std::string("messages[0].role")));
  EXPECT_EQ(status_of(chat({{"role", nullptr}, {"content", "hi"}})),
            std::make_pair(400, std::string("messages[0].role")));
  EXPECT_EQ(status_of(chat({{"content", "hi"}})), std::make_pair(400, std::string("messages[0].role")));
  EXPECT_EQ(status_of(chat({{"role", "user"}, {"content", {{{"type", 7}, {"text", "hi"}}}}})),
            std::make_pair(400, std::string("messages[0].content")));
  json format = chat({{"role", "user"}, {"content", "hi"}});
  format["response_format"] = {{"type", 3}};
  EXPECT_EQ(status_of(format), std::make_pair(400, std::string("response_format.type")));
  format["response_format"] = {{"type", "text"}};
  EXPECT_EQ(status_of(format).first, 0);
  // A long role is quoted only in part.
  try {
    server::parse_chat_request(chat({{"role", std::string(100000, 'r')}, {"content", "hi"}}), server::RequestLimits{},
                               1);
    ADD_FAILURE() << "accepted";
  } catch (const server::ApiError& error) {
    EXPECT_LT(std::string(error.what()).size(), 600u);
  }
}

}  // namespace
}  // namespace retort
