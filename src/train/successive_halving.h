#pragma once
// Successive halving (Jamieson & Talwalkar, 2016): every trial gets a small budget of steps, the
// better half goes on to twice the budget, and so on until two are left, which train to the full
// budget; the better of those wins. Generic over what a trial is: the caller trains trial t to a
// rung's steps and returns its loss, or answers from the record of an earlier, interrupted run of
// the same search, so a search continues where it stopped. Used by `retort tune distill`.
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <vector>

namespace retort::train {

// One rung of the search: how many trials run in it and the steps each has at its end.
struct Rung {
  int64_t trials = 0;
  int64_t steps = 0;
};

// The trials halve (rounding up) from `trials` until two or fewer remain; the last rung trains to
// max_steps, each earlier one to half the next (rounded up, at least 1 step).
std::vector<Rung> plan_rungs(int64_t trials, int64_t max_steps);

struct TrialScore {
  int64_t trial = 0;
  int rung = 0;
  int64_t steps = 0;
  double loss = 0;        // lower is better; NaN (a diverged run) ranks last
  bool recalled = false;  // from the record of an earlier run, not trained now
};

struct HalvingCallbacks {
  // The loss an earlier run of the same search recorded for (trial, rung), if it finished it.
  std::function<std::optional<double>(int64_t trial, int rung)> recorded;
  // Asked before each evaluation that is not recorded: false stops the search (a time limit).
  std::function<bool()> may_start;
  // Trains `trial` to rung.steps and returns its loss; recording it is the caller's job.
  std::function<double(int64_t trial, int rung, const Rung& plan)> evaluate;
};

struct HalvingResult {
  std::vector<Rung> rungs;
  std::vector<TrialScore> scores;  // in the order evaluated
  bool complete = false;           // false: may_start stopped the search before the last rung ended
  int64_t best_trial = -1;         // the lowest loss in the highest rung reached; -1 when none ran
  int best_rung = -1;
};

HalvingResult run_successive_halving(int64_t trials, int64_t max_steps, const HalvingCallbacks& callbacks);

// A number in [0, 1) from the generator's raw 64 bits (the top 53 as the mantissa): the same on
// every platform and standard library, which std::uniform_real_distribution does not promise, so a
// search is reproducible from its seed anywhere.
double unit_interval(std::mt19937_64& generator);

}  // namespace retort::train
