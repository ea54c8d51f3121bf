#pragma once
// The online figures of `retort bench serve`, whatever server was driven: what one streamed request
// measured, each concurrency level summarised (latency percentiles, throughput, errors), and the
// report as Markdown, JSON and an SVG plot. The HTTP side is server/load_driver.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "eval/sample_stats.h"

namespace retort {

// What one streamed chat completion measured, from the moment its request was sent.
struct RequestOutcome {
  bool ok = false;
  std::string error;              // when !ok: what went wrong ("HTTP 500: ...", "Connection", ...)
  double ttft_ms = 0;             // to the first chunk that carried text; 0 when none did
  std::vector<double> gaps_ms;    // between consecutive chunks that carried text
  double end_to_end_ms = 0;       // to the end of the stream
  int64_t output_tokens = 0;      // the server's usage.completion_tokens, else the chunks with text
};

struct LevelFigures {
  int clients = 0;
  int64_t requests_planned = 0;
  int64_t requests_sent = 0;      // fewer than planned only when the time limit ended the level
  int64_t succeeded = 0;
  int64_t failed = 0;
  double seconds = 0;             // wall time of the level, first request sent to last answer
  LatencyPercentiles ttft_ms;     // over successful requests
  LatencyPercentiles itl_ms;      // over every gap of every successful request
  LatencyPercentiles end_to_end_ms;
  int64_t output_tokens = 0;
  double output_tokens_per_second = 0;
  double requests_per_second = 0;  // successful requests ÷ seconds
  std::vector<std::pair<std::string, int64_t>> errors;  // distinct messages, most frequent first
};

LevelFigures summarize_level(int clients, int64_t requests_planned, const std::vector<RequestOutcome>& sent,
                             double seconds);

struct ServeBenchReport {
  std::string url;
  std::string model;      // as sent in the requests; empty: none was sent
  int64_t max_tokens = 0;
  int64_t prompts = 0;    // distinct prompts the requests cycled through
  std::vector<LevelFigures> levels;
};

int64_t failed_requests(const ServeBenchReport& report);
int64_t unsent_requests(const ServeBenchReport& report);

std::string serve_bench_markdown(const ServeBenchReport& report);
std::string serve_bench_json(const ServeBenchReport& report);
// Output tokens/s and p50/p99 end-to-end and TTFT latency against the number of clients, two
// panels side by side; plain SVG 1.1 with no scripts or external references.
std::string serve_bench_svg(const ServeBenchReport& report);

// The prompts of a --prompt-file: one per line, or JSON Lines with a "prompt" string; blank lines
// are skipped. Throws naming the line when a line is neither.
std::vector<std::string> parse_bench_prompts(const std::string& text, const std::string& source_name);
// A few short prompts of mixed kinds, used when no file is given.
std::vector<std::string> builtin_bench_prompts();

}  // namespace retort
