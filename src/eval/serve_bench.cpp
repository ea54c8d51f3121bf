#include "eval/serve_bench.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/text.h"

namespace retort {

LevelFigures summarize_level(int clients, int64_t requests_planned, const std::vector<RequestOutcome>& sent,
                             double seconds) {
  LevelFigures level;
  level.clients = clients;
  level.requests_planned = requests_planned;
  level.requests_sent = static_cast<int64_t>(sent.size());
  level.seconds = seconds;
  std::vector<double> ttft, gaps, end_to_end;
  std::map<std::string, int64_t> error_counts;
  for (const RequestOutcome& outcome : sent) {
    if (!outcome.ok) {
      ++level.failed;
      ++error_counts[outcome.error];
      continue;
    }
    ++level.succeeded;
    level.output_tokens += outcome.output_tokens;
    end_to_end.push_back(outcome.end_to_end_ms);
    if (outcome.output_tokens > 0) ttft.push_back(outcome.ttft_ms);
    gaps.insert(gaps.end(), outcome.gaps_ms.begin(), outcome.gaps_ms.end());
  }
  level.ttft_ms = latency_percentiles(ttft);
  level.itl_ms = latency_percentiles(gaps);
  level.end_to_end_ms = latency_percentiles(end_to_end);
  const double wall = std::max(seconds, 1e-9);
  level.output_tokens_per_second = static_cast<double>(level.output_tokens) / wall;
  level.requests_per_second = static_cast<double>(level.succeeded) / wall;
  level.errors.assign(error_counts.begin(), error_counts.end());
  std::stable_sort(level.errors.begin(), level.errors.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return level;
}

int64_t failed_requests(const ServeBenchReport& report) {
  int64_t failed = 0;
  for (const LevelFigures& level : report.levels) failed += level.failed;
  return failed;
}

int64_t unsent_requests(const ServeBenchReport& report) {
  int64_t unsent = 0;
  for (const LevelFigures& level : report.levels) unsent += level.requests_planned - level.requests_sent;
  return unsent;
}

std::vector<std::string> parse_bench_prompts(const std::string& text, const std::string& source_name) {
  std::vector<std::string> prompts;
  size_t line_number = 0;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const std::string_view line = trim_ascii_whitespace(std::string_view(text).substr(begin, end - begin));
    begin = end + 1;
    ++line_number;
    if (line.empty()) continue;
    if (line.front() != '{') {
      prompts.emplace_back(line);
      continue;
    }
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    require(record.is_object() && record.contains("prompt") && record["prompt"].is_string(), ErrorKind::InvalidInput,
            "{} line {}: a line that starts with '{{' must be a JSON object with a \"prompt\" string; write plain "
            "prompts one per line, or JSON Lines such as {{\"prompt\": \"...\"}}", source_name, line_number);
    prompts.push_back(record["prompt"].get<std::string>());
  }
  require(!prompts.empty(), ErrorKind::InvalidInput, "{} holds no prompts; put one prompt on each line", source_name);
  return prompts;
}

std::vector<std::string> builtin_bench_prompts() {
  return {
      "Explain in two sentences why the sky is blue.",
      "Write a haiku about a lighthouse in winter.",
      "What is 17 multiplied by 23? Show your working.",
      "Summarize the plot of Romeo and Juliet in one paragraph.",
      "List three differences between a list and a tuple in Python.",
      "Translate 'good morning, how did you sleep?' into French.",
      "Give a short recipe for pancakes.",
      "Why do leaves change colour in autumn?",
  };
}

}  // namespace retort
