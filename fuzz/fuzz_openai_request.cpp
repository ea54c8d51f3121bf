// Feeds arbitrary bytes as an OpenAI request body, as the HTTP threads receive it: parsed as JSON
// (400 when it is not an object), then validated as a chat and as a completion request. A client
// may send anything, so everything wrong must come back as ApiError (the 4xx) or retort::Error;
// anything else escaping (an nlohmann type error from a careless get<>, a crash) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json json;
  try {
    json = retort::server::parse_json_body(body);
  } catch (const retort::server::ApiError&) {
    return 0;
  }
  const retort::server::RequestLimits limits;
  try {
    (void)retort::server::parse_chat_request(json, limits, 1);
  } catch (const retort::server::ApiError&) {
  } catch (const retort::Error&) {
  }
  try {
    (void)retort::server::parse_completion_request(json, limits, 1);
  } catch (const retort::server::ApiError&) {
  } catch (const retort::Error&) {
  }
  return 0;
}
