// serve_tuning_markdown and winner_summary (declared in serve_tuning.h).
#include <cmath>

#include <fmt/format.h>

#include "eval/serve_tuning.h"

namespace retort {
namespace {

std::string milliseconds(double value) { return std::isnan(value) ? "–" : fmt::format("{:.0f}", value); }

std::string stop_sentence(const ServeSearchResult& result, const ServeTuningDescription& description) {
  switch (result.stop) {
    case SearchStop::Converged:
      return "The search converged: a sweep over every dimension around the best setting found nothing better.";
    case SearchStop::MaxTrials:
      return fmt::format("--max-trials ({}) stopped the search before it converged; raise it to search further.",
                         description.max_trials);
    case SearchStop::TimeLimit:
      return fmt::format("--time-limit-s ({:g} s) stopped the search before it converged; raise it to search "
                         "further.", description.time_limit_seconds);
  }
  return {};
}

// The trial nearest to the target when none met it: the lowest p99 among those that measured at all.
const ServeTrial* nearest_miss(const ServeSearchResult& result) {
  const ServeTrial* nearest = nullptr;
  for (const ServeTrial& trial : result.trials) {
    const ServeMeasurement& m = trial.measurement;
    if (m.succeeded == 0 || std::isnan(m.end_to_end_p99_ms)) continue;
    if (nearest == nullptr || m.end_to_end_p99_ms < nearest->measurement.end_to_end_p99_ms) nearest = &trial;
  }
  return nearest;
}

std::string outcome(const ServeSearchResult& result, const ServeTuningDescription& description, SearchPhase phase) {
  const bool running = phase == SearchPhase::Running;
  if (result.best >= 0)
    return (running ? "**Best so far:** " : "**Best:** ") +
           winner_summary(result.trials[static_cast<size_t>(result.best)], description) + "\n";
  std::string text = fmt::format("**No setting {}** end-to-end p99 ≤ {:g} ms at {} clients",
                                 running ? "has met so far" : "met", description.target_p99_ms, description.clients);
  if (const ServeTrial* nearest = nearest_miss(result))
    text += fmt::format("; the nearest was trial {} ({}) at {} ms", nearest->number,
                        describe_setting(nearest->setting), milliseconds(nearest->measurement.end_to_end_p99_ms));
  return text + ". Raise --target-p99-ms, or lower --clients or --max-tokens.\n";
}

std::string table(const ServeSearchResult& result, const ServeTuningDescription& description) {
  std::string text = fmt::format(
      "| trial | threads | parallel | batch tokens | KV | output tok/s | e2e p99 ms | requests ok / failed | "
      "meets p99 ≤ {:g} ms | seconds |\n"
      "|---:|---:|---:|---:|:--|---:|---:|---:|:--|---:|\n",
      description.target_p99_ms);
  for (size_t i = 0; i < result.trials.size(); ++i) {
    const ServeTrial& trial = result.trials[i];
    const ServeMeasurement& m = trial.measurement;
    const bool best = static_cast<int64_t>(i) == result.best;
    text += fmt::format("| {} | {} | {} | {} | {} | {:.1f} | {} | {} / {} | {} | {:.0f} |\n",
                        best ? fmt::format("**{}**", trial.number) : std::to_string(trial.number),
                        trial.setting.threads, trial.setting.parallel, trial.setting.batch_tokens,
                        trial.setting.kv_type, m.output_tokens_per_second, milliseconds(m.end_to_end_p99_ms),
                        m.succeeded, m.failed, best ? "**yes, best**" : trial.meets_target ? "yes" : "no", m.seconds);
  }
  return text;
}

}  // namespace

std::string winner_summary(const ServeTrial& trial, const ServeTuningDescription& description) {
  return fmt::format("trial {}: {}: {:.1f} output tok/s, end-to-end p99 {} ms ≤ {:g} ms at {} clients",
                     trial.number, describe_setting(trial.setting), trial.measurement.output_tokens_per_second,
                     milliseconds(trial.measurement.end_to_end_p99_ms), description.target_p99_ms,
                     description.clients);
}

std::string serve_tuning_markdown(const ServeTuningDescription& description, const ServeSearchResult& result,
                                  SearchPhase phase) {
  std::string text = fmt::format(
      "# retort tune serve\n\nModel `{}`. Each trial starts `retort serve` with the setting and sends {} streaming "
      "chat requests of at most {} tokens from {} concurrent clients (after one warm-up request). Target: "
      "end-to-end request latency p99 ≤ {:g} ms, with no failed request; among the settings that meet it, the most "
      "output tokens/s wins. Coordinate search, at most {} trials{}.\n\n",
      description.model, description.requests, description.max_tokens, description.clients,
      description.target_p99_ms, description.max_trials,
      description.time_limit_seconds > 0 ? fmt::format(", {:g} s", description.time_limit_seconds) : "");
  text += table(result, description);
  text += '\n';  // appended on its own: "\n" + string trips GCC 12's false -Wrestrict
  text += outcome(result, description, phase);
  text += (phase == SearchPhase::Running
               ? fmt::format("The search was still running after trial {} when this was written.",
                             result.trials.size())
               : stop_sentence(result, description)) +
          "\n";
  bool heading = false;
  for (const ServeTrial& trial : result.trials) {
    if (trial.measurement.error.empty()) continue;
    if (!heading) text += "\nErrors:\n";
    heading = true;
    text += fmt::format("- trial {}: {}\n", trial.number, trial.measurement.error);
  }
  return text;
}

}  // namespace retort
