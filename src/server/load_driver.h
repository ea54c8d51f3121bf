#pragma once
// The client side of `retort bench serve`: real concurrent HTTP clients (one thread and one
// keep-alive connection each) sending streaming /v1/chat/completions requests to any
// OpenAI-compatible server (retort's, llama.cpp's llama-server, vLLM), timing each token as its
// SSE chunk arrives. Bounded: a set number of requests per concurrency level, a timeout per request
// and an overall time limit. eval/serve_bench summarises and reports what it measures.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "eval/serve_bench.h"

namespace retort::server {

struct LoadOptions {
  std::string url;                      // http://127.0.0.1:8080, optionally ending in /v1
  std::string model;                    // empty: the first id of GET /v1/models, else none is sent
  std::vector<int> clients{1, 4, 16, 32};
  int64_t requests_per_level = 0;       // 0: 4 × clients at each level
  int64_t max_tokens = 64;
  std::vector<std::string> prompts;     // request i sends prompts[i % size]
  std::string api_key;                  // sent as "Authorization: Bearer KEY" when set
  double request_timeout_seconds = 120;
  double time_limit_seconds = 600;      // no request starts after this; running ones are cut off
  bool allow_remote = false;            // a host other than this machine's loopback
};

// Where a --url points: "http://host:port" for the connection and the path prefix before /v1.
struct BenchTarget {
  std::string scheme_host_port;
  std::string host;
  std::string chat_path;    // .../v1/chat/completions
  std::string models_path;  // .../v1/models
};

// Parses --url and refuses a host that is not loopback (127.0.0.0/8, ::1, localhost) unless
// allow_remote: a load test is a burst of requests that should only go where the user means.
BenchTarget parse_bench_target(const std::string& url, bool allow_remote);

// Reads an OpenAI chat-completion SSE stream fed in pieces as they arrive, noting when each chunk
// that carries text (content or reasoning_content) completes.
class ChatStreamReader {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ChatStreamReader(Clock::time_point sent) : sent_(sent) {}
  void feed(std::string_view bytes, Clock::time_point arrived);
  // Fills ttft, gaps, tokens and ok/error from what was read (call at the end of the stream).
  RequestOutcome finish(Clock::time_point ended) const;

 private:
  void read_event(std::string_view event, Clock::time_point arrived);
  void read_chunk(const std::string& data, Clock::time_point arrived);

  Clock::time_point sent_;
  std::string pending_;
  std::vector<double> text_arrivals_ms_;
  int64_t usage_tokens_ = -1;
  bool done_ = false;
  std::string error_;
};

// Runs every level in order and returns their figures; `progress` gets a line per level and per
// completed request batch.
ServeBenchReport run_serve_bench(const LoadOptions& options, const std::function<void(const std::string&)>& progress);

}  // namespace retort::server
