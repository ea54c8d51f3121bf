#pragma once
// DIR/tune-state.json of `retort tune distill`: the settings the search was started with (the
// distillation config as parsed, and the search's own: trials, steps, seed, ranges) and each
// finished (trial, rung) result, rewritten atomically after every one. A rerun of the same command
// recalls the finished results instead of training them again; a rerun with other settings is
// refused, since its results would be ranked against ones from another search.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace retort::train {

struct TrialRecord {
  int64_t trial = 0;
  int rung = 0;
  int64_t steps = 0;
  double val_loss = 0;  // NaN: the run diverged (stored as null)
  double seconds = 0;
  std::string error;    // why the run failed, when it did (then val_loss is NaN)
};

class TuneState {
 public:
  // Reads DIR/tune-state.json when there is one. `settings` is a flat JSON object of this run's
  // settings (name → value as text), compared with the recorded ones by check_settings.
  TuneState(const std::string& dir, nlohmann::json settings);

  // Fails, naming the first setting that differs, when finished results were made with other settings.
  void check_settings() const;
  std::optional<TrialRecord> recorded(int64_t trial, int rung) const;
  void record(const TrialRecord& result);  // written to disk before this returns
  int64_t recorded_count() const;
  const std::string& path() const { return path_; }

 private:
  void save() const;
  std::string path_;
  nlohmann::json settings_;
  nlohmann::json state_;
};

}  // namespace retort::train
