#pragma once
// The search of `retort tune serve`: which serving setting (threads, parallel slots, batch tokens,
// KV cache type) gives the most output tokens/s while the end-to-end request latency p99 stays
// within a target. How a setting is measured is the caller's (server/serve_tuning_run starts a
// real server and drives it with the load driver; the tests plant a function), so the search is
// tested on its own. It is a coordinate search: a grid of every combination is far too many
// server starts, while the dimensions interact little, so it varies one dimension at a time
// around the best setting so far and sweeps again until a sweep changes nothing. Deterministic:
// the same measurements give the same trials in the same order.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace retort {

struct ServeSetting {
  int threads = 0;
  int parallel = 0;          // sequences decoded together (the server's --parallel)
  int64_t batch_tokens = 0;  // tokens in one batched forward (--batch-tokens)
  std::string kv_type;       // KV cache element type (--kv-type)
  bool operator==(const ServeSetting&) const = default;
};

// "threads 2, parallel 8, batch-tokens 512, kv-type f16"
std::string describe_setting(const ServeSetting& setting);

// The values each dimension may take, in the order they are tried.
struct ServeSearchSpace {
  std::vector<int> threads;
  std::vector<int> parallel;
  std::vector<int64_t> batch_tokens;
  std::vector<std::string> kv_types;
};

// Sized for this machine and load: threads 1, 2, 4, ... up to `hardware_threads` and it;
// parallel 1, 4, 8, 16, ... up to `clients` and it (more slots than clients stay idle);
// batch tokens 256, 512, 1024; KV f16 then f32.
ServeSearchSpace default_serve_search_space(int hardware_threads, int clients);

// Every dimension's middle value (threads: the most), so that the first sweep can move either way.
ServeSetting starting_setting(const ServeSearchSpace& space);

// What driving one setting measured.
struct ServeMeasurement {
  double output_tokens_per_second = 0;
  double end_to_end_p99_ms = 0;  // over the successful requests; NaN when none succeeded
  int64_t succeeded = 0;
  int64_t failed = 0;            // including requests not sent before the time limit
  std::string error;             // why the trial did not measure cleanly (server did not start, ...)
  double seconds = 0;            // the trial's wall time, server start and stop included
};

struct ServeTrial {
  int64_t number = 0;  // 1, 2, ... in the order run
  ServeSetting setting;
  ServeMeasurement measurement;
  bool meets_target = false;  // no failed request and p99 ≤ the target
};

enum class SearchStop { Converged, MaxTrials, TimeLimit };

struct ServeSearchResult {
  std::vector<ServeTrial> trials;  // in the order run
  int64_t best = -1;               // index into trials of the winner; -1: none met the target
  SearchStop stop = SearchStop::Converged;
};

struct ServeSearchCallbacks {
  std::function<ServeMeasurement(const ServeSetting&, int64_t trial_number)> measure;
  std::function<bool()> may_start;  // false stops the search (a time limit); may be empty
  // After each trial, with the search so far (best: the winner so far, -1 while none met the
  // target): progress lines and the table rewritten. May be empty.
  std::function<void(const ServeTrial&, const ServeSearchResult& so_far)> trial_done;
};

bool meets_latency_target(const ServeMeasurement& measurement, double target_p99_ms);

// Runs trials until the search converges or `max_trials` have run or may_start says stop.
ServeSearchResult search_serve_settings(const ServeSearchSpace& space, double target_p99_ms, int64_t max_trials,
                                        const ServeSearchCallbacks& callbacks);

// How `retort tune serve` reports a search: the Markdown of DIR/tune.md (the load, one row per
// trial with the winner marked, the outcome) and the figures of a winner in one line.
struct ServeTuningDescription {
  std::string model;
  int clients = 0;
  int64_t requests = 0;
  int64_t max_tokens = 0;
  double target_p99_ms = 0;
  int64_t max_trials = 0;
  double time_limit_seconds = 0;
};
// Running: the table so far, written after each trial (the outcome says "so far").
enum class SearchPhase { Running, Finished };
std::string serve_tuning_markdown(const ServeTuningDescription& description, const ServeSearchResult& result,
                                  SearchPhase phase);
std::string winner_summary(const ServeTrial& trial, const ServeTuningDescription& description);

}  // namespace retort
