#include "train/tune_state.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/input_limits.h"

namespace retort::train {

namespace fs = std::filesystem;
using nlohmann::json;

TuneState::TuneState(const std::string& dir, json settings)
    : path_((fs::path(dir) / "tune-state.json").string()), settings_(std::move(settings)) {
  std::ifstream in(path_);
  if (!in.good()) {
    state_ = {{"settings", settings_}, {"results", json::array()}};
    return;
  }
  try {
    state_ = json::parse(in);
  } catch (const json::exception& e) {
    fail(ErrorKind::InvalidInput, "{}: not valid JSON ({}); remove it (or the whole directory) to start the search over",
         path_, e.what());
  }
  require(state_.is_object() && state_.contains("settings") && state_.contains("results") &&
              state_["results"].is_array(),
          ErrorKind::InvalidInput,
          "{}: expected an object with \"settings\" and \"results\" (a file written by `retort tune distill`); "
          "remove it to start the search over", path_);
  // A search that never finished a run has nothing to protect: it takes this run's settings.
  if (state_["results"].empty()) state_["settings"] = settings_;
}

void TuneState::check_settings() const {
  const json& before = state_["settings"];
  if (before == settings_) return;
  std::string name, was = "(not set)", now = "(not set)";
  for (const auto& [key, value] : settings_.items())
    if (!before.contains(key) || before[key] != value) {
      name = key;
      now = value.dump();
      if (before.contains(key)) was = before[key].dump();
      break;
    }
  if (name.empty())
    for (const auto& [key, value] : before.items())
      if (!settings_.contains(key)) {
        name = key;
        was = value.dump();
        break;
      }
  fail(ErrorKind::InvalidInput,
       "{} holds {} finished trial runs of a search with other settings: {} was {}, now {}. Rerun with the settings "
       "it was started with to continue it, or give another --out (or delete that directory) to start a new "
       "search", path_, recorded_count(), name, was, now);
}

std::optional<TrialRecord> TuneState::recorded(int64_t trial, int rung) const {
  for (const json& r : state_["results"]) {
    if (json_integer<int64_t>(r, "trial") != trial || json_integer<int>(r, "rung") != rung) continue;
    const json& loss = r.at("val_loss");
    return TrialRecord{trial, rung, json_integer<int64_t>(r, "steps"), loss.is_null() ? std::nan("") : loss.get<double>(),
                       r.value("seconds", 0.0), r.value("error", std::string())};
  }
  return std::nullopt;
}

void TuneState::record(const TrialRecord& result) {
  state_["results"].push_back({{"trial", result.trial},
                               {"rung", result.rung},
                               {"steps", result.steps},
                               {"val_loss", std::isfinite(result.val_loss) ? json(result.val_loss) : json(nullptr)},
                               {"seconds", result.seconds}});
  if (!result.error.empty()) state_["results"].back()["error"] = result.error;
  save();
}

int64_t TuneState::recorded_count() const { return int64_t(state_["results"].size()); }

void TuneState::save() const { write_file_atomically(path_, state_.dump(2) + "\n"); }

}  // namespace retort::train
