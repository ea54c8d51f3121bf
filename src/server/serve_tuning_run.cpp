#include "server/serve_tuning_run.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/load_driver.h"
#include "util/atomic_file.h"
#include "util/child_process.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/mapped_file.h"

namespace retort::server {
namespace {

using Clock = std::chrono::steady_clock;

// The search's one clock: no trial starts after the deadline, and a trial's server start and load
// are cut off at it.
class Deadline {
 public:
  explicit Deadline(double seconds)
      : end_(seconds > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(seconds))
                         : Clock::time_point::max()) {}
  bool passed() const { return Clock::now() >= end_; }
  // Seconds left, at most `cap`.
  double seconds_left(double cap) const {
    if (end_ == Clock::time_point::max()) return cap;
    return std::min(cap, std::chrono::duration<double>(end_ - Clock::now()).count());
  }

 private:
  Clock::time_point end_;
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The flags every trial shares: the user's fixed ones, and a queue that holds every client while
// the slots are busy (the server's default of 64 would turn more clients into 429s).
std::vector<ServeFlag> shared_flags(const TuneServeOptions& options) {
  std::vector<ServeFlag> flags = options.fixed_flags;
  if (options.clients > 64) flags.emplace_back("queue", std::to_string(options.clients));
  return flags;
}

std::vector<std::string> trial_command(const TuneServeOptions& options, const ServeSetting& setting) {
  std::vector<std::string> argv{options.retort_binary, "serve", options.model_path, "--host", "127.0.0.1",
                                "--port", "0", "--shutdown-grace", "1", "--no-web-ui"};
  for (const auto& [flag, value] : shared_flags(options)) {
    argv.push_back("--" + flag);
    argv.push_back(value);
  }
  for (const auto& [flag, value] : setting_flags(setting)) {
    argv.push_back("--" + flag);
    argv.push_back(value);
  }
  return argv;
}

// The last two lines of a trial's server log, for an error message: they say why a server stopped.
std::string log_tail(const std::string& log_path) {
  std::string text;
  try {
    text = read_text_file(log_path);
  } catch (const Error&) {
    return "(no log)";
  }
  std::vector<std::string> lines;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    if (end > begin) lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  std::string tail;
  for (size_t i = lines.size() > 2 ? lines.size() - 2 : 0; i < lines.size(); ++i)
    tail += (tail.empty() ? "" : " / ") + lines[i];
  return tail.empty() ? "(the log is empty)" : echo_excerpt(tail, 300);
}

// The port of "ready on http://HOST:PORT" in the server's log, once it is there; 0 before.
int ready_port(const std::string& log_path) {
  std::string text;
  try {
    text = read_text_file(log_path);
  } catch (const Error&) {
    return 0;
  }
  const std::string marker = "ready on http://";
  const size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  const size_t end = text.find_first_of(" \n", at + marker.size());
  const std::string authority = text.substr(at + marker.size(), end - at - marker.size());
  const size_t colon = authority.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(authority.c_str() + colon + 1);
}

bool health_ok(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(std::chrono::seconds(1));
  client.set_read_timeout(std::chrono::seconds(2));
  const auto response = client.Get("/health");
  return response && response->status == 200;
}

// Waits until the server says it is ready and /health answers 200; returns its port, or throws
// naming why not (the server exited, or it was not ready in time) with the end of its log.
int wait_until_ready(ChildProcess& server, const std::string& log_path, double timeout_seconds) {
  const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(std::max(timeout_seconds, 0.0)));
  for (;;) {
    if (const auto ended = server.exited())
      fail(ErrorKind::InvalidInput, "the server {} before it was ready: {} (log: {})", *ended, log_tail(log_path),
           log_path);
    if (const int port = ready_port(log_path); port > 0 && health_ok(port)) return port;
    require(Clock::now() < give_up, ErrorKind::InvalidInput,
            "the server was not ready after {:.0f} s (raise --startup-timeout-s or --time-limit-s): {} (log: {})",
            timeout_seconds, log_tail(log_path), log_path);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

ServeMeasurement measurement_of(const ServeBenchReport& report) {
  ServeMeasurement measurement;
  const LevelFigures& level = report.levels.at(0);
  measurement.output_tokens_per_second = level.output_tokens_per_second;
  measurement.end_to_end_p99_ms = level.end_to_end_ms.p99;
  measurement.succeeded = level.succeeded;
  measurement.failed = level.failed + (level.requests_planned - level.requests_sent);
  if (!level.errors.empty())
    measurement.error = fmt::format("{} requests failed, e.g. {}", level.failed, level.errors.front().first);
  else if (level.requests_sent < level.requests_planned)
    measurement.error = fmt::format("{} of {} requests not sent before --time-limit-s",
                                    level.requests_planned - level.requests_sent, level.requests_planned);
  return measurement;
}

LoadOptions trial_load(const TuneServeOptions& options, int port, const Deadline& deadline) {
  LoadOptions load;
  load.url = fmt::format("http://127.0.0.1:{}", port);
  load.clients = {options.clients};
  load.requests_per_level = options.requests;
  load.max_tokens = options.max_tokens;
  load.prompts = options.prompts;
  load.request_timeout_seconds = options.request_timeout_seconds;
  load.time_limit_seconds = std::max(1.0, deadline.seconds_left(7 * 86400.0));
  return load;
}

// One trial: a fresh server with the setting, driven by the load, then stopped. A server that does
// not start (after the first trial), or dies under the load, is a measurement with an error: the
// search goes on.
ServeMeasurement measure_trial(const TuneServeOptions& options, const ServeSetting& setting, int64_t number,
                               const Deadline& deadline, const ProgressLine& progress) {
  const auto started = Clock::now();
  const std::string log_path =
      (std::filesystem::path(options.out_dir) / fmt::format("trial-{:02}-serve.log", number)).string();
  ServeMeasurement measurement;
  ChildProcess server(trial_command(options, setting), log_path);
  int port = 0;
  try {
    port = wait_until_ready(server, log_path, deadline.seconds_left(options.startup_timeout_seconds));
  } catch (const Error& error) {
    // A server that cannot start with the first setting points at MODEL or the flags every trial
    // shares rather than at the setting: stop with its reason instead of trying the others in vain.
    if (number == 1)
      fail(ErrorKind::InvalidInput, "the first trial's server did not start, so the search stopped: {}; check that "
           "`retort serve MODEL` starts with the same --template and --ctx", error.what());
    measurement.error = error.what();
    measurement.end_to_end_p99_ms = std::numeric_limits<double>::quiet_NaN();
    measurement.seconds = seconds_since(started);
    return measurement;  // `server` is stopped on the way out
  }
  try {
    const auto forward = [&](const std::string& line) { progress(fmt::format("trial {}: {}", number, line)); };
    measurement = measurement_of(run_serve_bench(trial_load(options, port, deadline), forward));
    if (const auto ended = server.exited())
      measurement.error = fmt::format("the server {} during the trial: {} (log: {})", *ended, log_tail(log_path),
                                      log_path);
  } catch (const Error& error) {
    measurement.error = error.what();
    measurement.end_to_end_p99_ms = std::numeric_limits<double>::quiet_NaN();
  }
  server.stop(std::chrono::seconds(5));
  measurement.seconds = seconds_since(started);
  return measurement;
}

ServeTuningDescription describe(const TuneServeOptions& options) {
  return {options.model_path, options.clients,
          options.requests > 0 ? options.requests : 4 * int64_t{options.clients},
          options.max_tokens, options.target_p99_ms, options.max_trials, options.time_limit_seconds};
}

std::string trial_line(const ServeTrial& trial, const ServeSearchResult& so_far, double target_p99_ms) {
  const ServeMeasurement& m = trial.measurement;
  const bool best = so_far.best >= 0 && so_far.trials[static_cast<size_t>(so_far.best)].number == trial.number;
  std::string line = fmt::format("trial {}: {}: {:.1f} output tok/s, e2e p99 {} ({} ok, {} failed, {:.0f} s): ",
                                 trial.number, describe_setting(trial.setting), m.output_tokens_per_second,
                                 m.succeeded > 0 ? fmt::format("{:.0f} ms", m.end_to_end_p99_ms) : "–", m.succeeded,
                                 m.failed, m.seconds);
  if (!m.error.empty()) return line + "misses the target: " + m.error;
  if (!trial.meets_target) return line + fmt::format("misses p99 ≤ {:g} ms", target_p99_ms);
  return line + (best ? "meets the target, best so far" : "meets the target");
}

}  // namespace

std::vector<ServeFlag> setting_flags(const ServeSetting& setting) {
  return {{"threads", std::to_string(setting.threads)},
          {"parallel", std::to_string(setting.parallel)},
          {"batch-tokens", std::to_string(setting.batch_tokens)},
          {"kv-type", setting.kv_type}};
}

std::string best_serve_yaml(const TuneServeOptions& options, const ServeSetting& setting, const std::string& summary) {
  // JSON strings are YAML double-quoted scalars, so any path or value is written safely.
  const auto quoted = [](const std::string& value) { return nlohmann::json(value).dump(); };
  std::string yaml = fmt::format("# retort serve --config best-serve.yaml\n# retort tune serve, {}\n", summary);
  yaml += "model: " + quoted(std::filesystem::absolute(options.model_path).lexically_normal().string()) + "\n";
  for (const auto& [flag, value] : shared_flags(options)) yaml += flag + ": " + quoted(value) + "\n";
  for (const auto& [flag, value] : setting_flags(setting)) yaml += flag + ": " + quoted(value) + "\n";
  return yaml;
}

TuneServeResult tune_serving(const TuneServeOptions& options, const ProgressLine& progress) {
  require(!options.prompts.empty(), ErrorKind::InvalidInput, "no prompts to send");
  std::filesystem::create_directories(options.out_dir);
  // A winner of an earlier search in this directory must not pass for this one's, even when this
  // one is interrupted or finds none.
  std::filesystem::remove(std::filesystem::path(options.out_dir) / "best-serve.yaml");
  const std::string table_path = (std::filesystem::path(options.out_dir) / "tune.md").string();
  const ServeTuningDescription description = describe(options);
  const Deadline deadline(options.time_limit_seconds);
  ServeSearchCallbacks callbacks;
  callbacks.may_start = [&] { return !deadline.passed(); };
  callbacks.measure = [&](const ServeSetting& setting, int64_t number) {
    progress(fmt::format("trial {} (at most {}): starting the server with {}", number, options.max_trials,
                         describe_setting(setting)));
    return measure_trial(options, setting, number, deadline, progress);
  };
  callbacks.trial_done = [&](const ServeTrial& trial, const ServeSearchResult& so_far) {
    progress(trial_line(trial, so_far, options.target_p99_ms));
    // The table so far, so that an interrupted search still leaves what it measured.
    write_file_atomically(table_path, serve_tuning_markdown(description, so_far, SearchPhase::Running));
  };
  TuneServeResult result;
  result.search = search_serve_settings(options.space, options.target_p99_ms, options.max_trials, callbacks);
  result.table_markdown = serve_tuning_markdown(description, result.search, SearchPhase::Finished);
  write_file_atomically(table_path, result.table_markdown);
  if (result.search.best >= 0) {
    const ServeTrial& best = result.search.trials[static_cast<size_t>(result.search.best)];
    result.best_yaml_path = (std::filesystem::path(options.out_dir) / "best-serve.yaml").string();
    write_file_atomically(result.best_yaml_path,
                          best_serve_yaml(options, best.setting, winner_summary(best, description)));
  }
  return result;
}

}  // namespace retort::server
