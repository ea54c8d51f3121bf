#pragma once
// `retort tune distill CONFIG.yaml --trials N --steps S`: searches the distillation temperature,
// the hard/soft loss weights and the learning rate of a `retort distill` config by successive
// halving (train/successive_halving.h). Each trial is a real distillation run through
// run_distillation, in DIR/trial-NNN with its own config.yaml; a rung continues its survivors from
// their checkpoints with the schedule of the full S steps, so a trial at rung k is exactly an
// S-step run stopped early. Trials are scored on the student's validation loss as the trainer
// computes it. Results go to DIR/tune-state.json as they finish (train/tune_state.h), so a rerun of
// the same command continues; the table goes to DIR/tune.md and the winner's settings, in the
// user's config otherwise unchanged, to DIR/best.yaml.
#include <cstdint>
#include <string>
#include <vector>

namespace retort::train {

struct SearchRange {
  double low = 0, high = 0;
};

struct DistillSearchSpace {
  SearchRange temperature{1, 8};      // log-uniform
  SearchRange soft_weight{0.1, 0.9};  // uniform; the hard weight is 1 − soft
  SearchRange lr;                     // log-uniform; {0, 0}: one decade centred on the config's optimizer.lr
};

struct DistillTrialSetting {
  double temperature = 0, soft_weight = 0, hard_weight = 0, lr = 0;
};

// `trials` settings drawn from `seed` (mt19937_64, raw bits), each value rounded to 4 significant
// digits, so that a trial's config file, its run and the table all say the same number.
std::vector<DistillTrialSetting> sample_distill_settings(uint64_t seed, int64_t trials, const DistillSearchSpace& space);

struct DistillTuneOptions {
  std::string config_path;
  int64_t trials = 0;
  int64_t steps = 0;               // the last rung's steps, and the schedule's length in every rung
  uint64_t seed = 0;
  std::string out_dir;
  double time_limit_seconds = 0;   // > 0: no trial run starts after this long
  DistillSearchSpace space;
};

struct DistillTuneResult {
  std::string table_markdown;      // DIR/tune.md as written
  bool complete = false;           // false: the time limit stopped the search
  int64_t runs_done = 0, runs_planned = 0;
  int64_t best_trial = -1;         // -1: no trial run finished
  std::string best_config_path;    // DIR/best.yaml ("" with no best)
};

DistillTuneResult tune_distillation(const DistillTuneOptions& options);

}  // namespace retort::train
