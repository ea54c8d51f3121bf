#include "eval/serve_tuning.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "util/error.h"

namespace retort {

std::string describe_setting(const ServeSetting& setting) {
  return fmt::format("threads {}, parallel {}, batch-tokens {}, kv-type {}", setting.threads, setting.parallel,
                     setting.batch_tokens, setting.kv_type);
}

namespace {

// 1, then `first`, doubling, while below `limit`; then `limit` itself.
template <typename T>
std::vector<T> doubling_up_to(T first, T limit) {
  std::vector<T> values{1};
  for (T value = first; value < limit; value *= 2)
    if (value > 1) values.push_back(value);
  if (limit > 1) values.push_back(limit);
  return values;
}

}  // namespace

ServeSearchSpace default_serve_search_space(int hardware_threads, int clients) {
  ServeSearchSpace space;
  space.threads = doubling_up_to(2, std::max(1, hardware_threads));
  space.parallel = doubling_up_to(4, std::max(1, clients));
  space.batch_tokens = {256, 512, 1024};
  space.kv_types = {"f16", "q8", "f32"};
  return space;
}

ServeSetting starting_setting(const ServeSearchSpace& space) {
  return {space.threads.back(), space.parallel[space.parallel.size() / 2],
          space.batch_tokens[space.batch_tokens.size() / 2], space.kv_types.front()};
}

bool meets_latency_target(const ServeMeasurement& measurement, double target_p99_ms) {
  return measurement.error.empty() && measurement.failed == 0 && measurement.succeeded > 0 &&
         measurement.end_to_end_p99_ms <= target_p99_ms;
}

namespace {

bool measured_cleanly(const ServeMeasurement& m) { return m.error.empty() && m.failed == 0 && m.succeeded > 0; }

// Strictly better for the search. Meeting the target beats missing it; among those that meet it,
// more tokens/s wins. Among those that miss it, a clean run beats one with errors and a lower p99
// beats a higher one, so that the search walks towards the target when it starts far from it.
// Ties keep the trial already held, so the outcome never depends on noise in the last digit.
bool better(const ServeTrial& a, const ServeTrial& b) {
  if (a.meets_target != b.meets_target) return a.meets_target;
  const ServeMeasurement &ma = a.measurement, &mb = b.measurement;
  if (a.meets_target) return ma.output_tokens_per_second > mb.output_tokens_per_second;
  if (measured_cleanly(ma) != measured_cleanly(mb)) return measured_cleanly(ma);
  return measured_cleanly(ma) && ma.end_to_end_p99_ms < mb.end_to_end_p99_ms;
}

template <typename T>
void vary(std::vector<ServeSetting>& out, const ServeSetting& base, const std::vector<T>& values,
          T ServeSetting::*field) {
  for (const T& value : values) {
    ServeSetting setting = base;
    setting.*field = value;
    out.push_back(setting);
  }
}

// The settings of one sweep's dimension `dimension` around `base`, in the order of the space's list.
std::vector<ServeSetting> along_dimension(const ServeSearchSpace& space, const ServeSetting& base, int dimension) {
  std::vector<ServeSetting> settings;
  switch (dimension) {
    case 0: vary(settings, base, space.threads, &ServeSetting::threads); break;
    case 1: vary(settings, base, space.parallel, &ServeSetting::parallel); break;
    case 2: vary(settings, base, space.batch_tokens, &ServeSetting::batch_tokens); break;
    default: vary(settings, base, space.kv_types, &ServeSetting::kv_type); break;
  }
  return settings;
}
constexpr int kDimensions = 4;

class CoordinateSearch {
 public:
  CoordinateSearch(double target_p99_ms, int64_t max_trials, const ServeSearchCallbacks& callbacks)
      : target_p99_ms_(target_p99_ms), max_trials_(max_trials), callbacks_(callbacks) {}

  // Measures `setting` unless an earlier trial did, and holds it when it is better than the
  // setting held. False once the search must stop (then nothing was measured).
  bool consider(const ServeSetting& setting) {
    for (size_t i = 0; i < result_.trials.size(); ++i)
      if (result_.trials[i].setting == setting) return true;
    if (static_cast<int64_t>(result_.trials.size()) >= max_trials_) return stop(SearchStop::MaxTrials);
    if (callbacks_.may_start && !callbacks_.may_start()) return stop(SearchStop::TimeLimit);
    ServeTrial trial;
    trial.number = static_cast<int64_t>(result_.trials.size()) + 1;
    trial.setting = setting;
    trial.measurement = callbacks_.measure(setting, trial.number);
    trial.meets_target = meets_latency_target(trial.measurement, target_p99_ms_);
    result_.trials.push_back(std::move(trial));
    const int64_t index = static_cast<int64_t>(result_.trials.size()) - 1;
    if (held_ < 0 || better(result_.trials.back(), result_.trials[static_cast<size_t>(held_)])) {
      held_ = index;
      moved_ = true;
    }
    result_.best = result_.trials[static_cast<size_t>(held_)].meets_target ? held_ : -1;
    if (callbacks_.trial_done) callbacks_.trial_done(result_.trials.back(), result_);
    return true;
  }

  const ServeSetting& held_setting() const { return result_.trials[static_cast<size_t>(held_)].setting; }
  // Whether the held setting changed since the last call.
  bool moved_since_asked() { return std::exchange(moved_, false); }
  ServeSearchResult finish() { return std::move(result_); }

 private:
  bool stop(SearchStop why) {
    result_.stop = why;
    return false;
  }

  double target_p99_ms_;
  int64_t max_trials_;
  const ServeSearchCallbacks& callbacks_;
  ServeSearchResult result_;
  int64_t held_ = -1;
  bool moved_ = false;
};

// One sweep: every dimension in turn, each value of it around the setting held. False once the
// search must stop.
bool sweep(CoordinateSearch& search, const ServeSearchSpace& space) {
  for (int dimension = 0; dimension < kDimensions; ++dimension)
    for (const ServeSetting& candidate : along_dimension(space, search.held_setting(), dimension))
      if (!search.consider(candidate)) return false;
  return true;
}

void check_search_inputs(const ServeSearchSpace& space, double target_p99_ms, int64_t max_trials) {
  require(!space.threads.empty() && !space.parallel.empty() && !space.batch_tokens.empty() &&
              !space.kv_types.empty(),
          ErrorKind::InvalidInput, "every dimension of the serving search needs at least one value");
  require(target_p99_ms > 0 && std::isfinite(target_p99_ms), ErrorKind::InvalidInput,
          "--target-p99-ms must be a positive number of milliseconds, got {}", target_p99_ms);
  require(max_trials >= 1, ErrorKind::InvalidInput, "--max-trials must be at least 1, got {}", max_trials);
}

}  // namespace

ServeSearchResult search_serve_settings(const ServeSearchSpace& space, double target_p99_ms, int64_t max_trials,
                                        const ServeSearchCallbacks& callbacks) {
  check_search_inputs(space, target_p99_ms, max_trials);
  CoordinateSearch search(target_p99_ms, max_trials, callbacks);
  if (!search.consider(starting_setting(space))) return search.finish();
  search.moved_since_asked();
  // Sweeps until one leaves the held setting where it was: converged (stop stays Converged).
  while (sweep(search, space) && search.moved_since_asked()) {
  }
  return search.finish();
}

}  // namespace retort
