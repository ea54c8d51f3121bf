#include "train/successive_halving.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace retort::train {

std::vector<Rung> plan_rungs(int64_t trials, int64_t max_steps) {
  require(trials >= 1 && max_steps >= 1, ErrorKind::InvalidInput,
          "successive halving needs at least 1 trial and 1 step, got {} trials and {} steps", trials, max_steps);
  std::vector<Rung> rungs;
  for (int64_t n = trials;; n = (n + 1) / 2) {
    rungs.push_back({n, 0});
    if (n <= 2) break;
  }
  int64_t steps = max_steps;
  for (auto rung = rungs.rbegin(); rung != rungs.rend(); ++rung) {
    rung->steps = steps;
    steps = std::max<int64_t>(1, (steps + 1) / 2);
  }
  return rungs;
}

namespace {

// Lower loss first; a NaN loss (diverged) after every number; ties by trial number so that the
// order never depends on the sort's stability.
bool ranks_before(const TrialScore& a, const TrialScore& b) {
  const bool a_nan = std::isnan(a.loss), b_nan = std::isnan(b.loss);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a.loss != b.loss) return a.loss < b.loss;
  return a.trial < b.trial;
}

}  // namespace

HalvingResult run_successive_halving(int64_t trials, int64_t max_steps, const HalvingCallbacks& callbacks) {
  HalvingResult result;
  result.rungs = plan_rungs(trials, max_steps);
  std::vector<int64_t> survivors(static_cast<size_t>(trials));
  for (int64_t t = 0; t < trials; ++t) survivors[size_t(t)] = t;

  for (int rung = 0; rung < int(result.rungs.size()); ++rung) {
    const Rung& plan = result.rungs[size_t(rung)];
    std::vector<TrialScore> scored;
    for (int64_t trial : survivors) {
      TrialScore score{trial, rung, plan.steps, 0, false};
      if (const std::optional<double> loss = callbacks.recorded(trial, rung)) {
        score.loss = *loss;
        score.recalled = true;
      } else if (!callbacks.may_start()) {
        break;
      } else {
        score.loss = callbacks.evaluate(trial, rung, plan);
      }
      scored.push_back(score);
      result.scores.push_back(score);
    }
    std::sort(scored.begin(), scored.end(), ranks_before);
    if (!scored.empty()) {
      result.best_trial = scored.front().trial;
      result.best_rung = rung;
    }
    if (scored.size() < survivors.size()) return result;  // stopped inside this rung
    const bool last = rung + 1 == int(result.rungs.size());
    if (last) break;
    survivors.clear();
    for (size_t i = 0; i < size_t(result.rungs[size_t(rung) + 1].trials); ++i) survivors.push_back(scored[i].trial);
    std::sort(survivors.begin(), survivors.end());  // trained in trial order, whatever their ranks
  }
  result.complete = true;
  return result;
}

double unit_interval(std::mt19937_64& generator) {
  return double(generator() >> 11) * 0x1.0p-53;
}

}  // namespace retort::train
