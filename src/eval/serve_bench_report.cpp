// serve_bench_markdown and serve_bench_json (declared in serve_bench.h).
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "eval/serve_bench.h"

namespace retort {
namespace {

// "–" where there is nothing to summarise (every request of the level failed).
std::string milliseconds(double value) { return std::isnan(value) ? "–" : fmt::format("{:.0f}", value); }
std::string fine_milliseconds(double value) { return std::isnan(value) ? "–" : fmt::format("{:.1f}", value); }

std::string percentiles_cell(const LatencyPercentiles& latency, std::string (*format)(double)) {
  return format(latency.p50) + " / " + format(latency.p90) + " / " + format(latency.p99);
}

nlohmann::json percentiles_json(const LatencyPercentiles& latency) {
  return {{"count", latency.count}, {"p50", latency.p50}, {"p90", latency.p90}, {"p99", latency.p99},
          {"mean", latency.mean}};
}

}  // namespace

std::string serve_bench_markdown(const ServeBenchReport& report) {
  std::string text =
      "| clients | requests ok / sent / planned | errors | output tok/s | requests/s | TTFT ms p50 / p90 / p99 | "
      "inter-token ms p50 / p90 / p99 | end-to-end ms p50 / p90 / p99 |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const LevelFigures& level : report.levels)
    text += fmt::format("| {} | {} / {} / {} | {} | {:.1f} | {:.2f} | {} | {} | {} |\n", level.clients,
                        level.succeeded, level.requests_sent, level.requests_planned, level.failed,
                        level.output_tokens_per_second, level.requests_per_second,
                        percentiles_cell(level.ttft_ms, milliseconds), percentiles_cell(level.itl_ms, fine_milliseconds),
                        percentiles_cell(level.end_to_end_ms, milliseconds));
  text += fmt::format("\n{}, model {}, streaming chat completions of at most {} tokens, {} prompts in turn; "
                      "percentiles by nearest rank.\n",
                      report.url, report.model.empty() ? "(none sent)" : report.model, report.max_tokens,
                      report.prompts);
  for (const LevelFigures& level : report.levels)
    for (const auto& [message, count] : level.errors)
      text += fmt::format("- clients {}: {} × {}\n", level.clients, count, message);
  return text;
}

std::string serve_bench_json(const ServeBenchReport& report) {
  nlohmann::json levels = nlohmann::json::array();
  for (const LevelFigures& level : report.levels) {
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& [message, count] : level.errors) errors.push_back({{"message", message}, {"count", count}});
    levels.push_back({{"clients", level.clients},
                      {"requests_planned", level.requests_planned},
                      {"requests_sent", level.requests_sent},
                      {"succeeded", level.succeeded},
                      {"failed", level.failed},
                      {"seconds", level.seconds},
                      {"output_tokens", level.output_tokens},
                      {"output_tokens_per_second", level.output_tokens_per_second},
                      {"requests_per_second", level.requests_per_second},
                      {"ttft_ms", percentiles_json(level.ttft_ms)},
                      {"inter_token_ms", percentiles_json(level.itl_ms)},
                      {"end_to_end_ms", percentiles_json(level.end_to_end_ms)},
                      {"errors", errors}});
  }
  const nlohmann::json json = {{"url", report.url},
                               {"model", report.model},
                               {"max_tokens", report.max_tokens},
                               {"prompts", report.prompts},
                               {"failed_requests", failed_requests(report)},
                               {"unsent_requests", unsent_requests(report)},
                               {"levels", levels}};
  return json.dump(2) + "\n";
}

}  // namespace retort
