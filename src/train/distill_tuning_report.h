#pragma once
// What `retort tune distill` shows of a search: the Markdown table of its trials (stdout and
// DIR/tune.md) and the comment that heads DIR/best.yaml.
#include <cstdint>
#include <string>
#include <vector>

#include "train/distill_tuning.h"
#include "train/successive_halving.h"
#include "train/tune_state.h"

namespace retort::train {

struct TuneReportInput {
  std::string config_path;
  std::string out_dir;
  int64_t trials = 0, steps = 0;
  uint64_t seed = 0;
  const DistillSearchSpace& space;
  const std::vector<DistillTrialSetting>& settings;
  const HalvingResult& halving;
  const TuneState& state;
  int64_t best_trial = -1;       // -1: no trial finished with a finite validation loss
  int best_rung = -1;
  std::string best_config_path;  // DIR/best.yaml, written when there is a best trial
};

// One row per trial (its highest rung reached; the best first), the search's settings above it
// and the outcome below: the best trial, or how to continue a search the time limit stopped.
std::string tune_report_markdown(const TuneReportInput& input);

// YAML comment lines: where the config came from and what the search measured for it.
std::string best_config_header(const TuneReportInput& input);

}  // namespace retort::train
